"""Service configuration: one `Settings` object, read from `REFRAME_*` environment variables.

Nothing is read at import time: call `Settings()` (or `get_settings()` in the app factory) when
a process starts, and pass the object down. Tests build their own `Settings(...)`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from reframe.logs import LogSetup

# A well-known value so that a development install works out of the box; `Settings` refuses
# it as soon as the service is reachable from anywhere but this machine.
DEV_SECRET = "reframe-dev-secret-change-me"  # noqa: S105

MIB = 1024 * 1024


def _default_model_dir() -> Path:
    # Imported lazily: platformdirs reads the environment, which must not happen at import.
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("reframe")) / "models"


def checkout_root() -> Path | None:
    """The source checkout this package runs from (an editable install), or None.

    A checkout is recognised by the files `scripts/run` needs beside the package; an installed
    wheel lives in site-packages, where they are not.
    """
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "scripts" / "run").is_file():
        return root
    return None


def default_home() -> Path:
    """Where the service keeps its data when REFRAME_HOME is unset.

    The checkout's `var/` when running from one (where `scripts/run` puts it), else the user's
    data directory. Never the working directory: an operator command run from elsewhere must
    find the same database as the running service, not create an empty one beside it.
    """
    root = checkout_root()
    if root is not None:
        return root / "var"
    # Imported lazily: platformdirs reads the environment, which must not happen at import.
    from platformdirs import user_data_dir

    return Path(user_data_dir("reframe"))


def _is_loopback_url(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CreditPack(BaseModel):
    """A purchasable bundle of paid xeconds, listed by GET /pricing/config."""

    id: str
    name: str
    xeconds: int = Field(gt=0)
    price_cents: int = Field(ge=0)
    currency: str = "usd"


def _default_credit_packs() -> list[CreditPack]:
    return [
        CreditPack(id="starter", name="Starter", xeconds=300, price_cents=500),
        CreditPack(id="creator", name="Creator", xeconds=1500, price_cents=2000),
        CreditPack(id="studio", name="Studio", xeconds=6000, price_cents=6000),
    ]


class Settings(BaseSettings):
    """Every knob of the service. Field names map to `REFRAME_<NAME>` variables."""

    # populate_by_name: code passes `data_dir=...` while the environment says REFRAME_HOME.
    model_config = SettingsConfigDict(env_prefix="REFRAME_", extra="ignore", populate_by_name=True)

    env: Literal["development", "production"] = "development"
    # The service's home: the SQLite database, local storage and metrics files. REFRAME_HOME,
    # or the older REFRAME_DATA_DIR; default `default_home()`. Always absolute once read, so a
    # child process (a Ray worker, a render driver) with another working directory agrees.
    data_dir: Path = Field(
        default_factory=default_home,
        validation_alias=AliasChoices("REFRAME_HOME", "REFRAME_DATA_DIR", "data_dir"),
    )

    # Persistence: SQLite under data_dir when unset; any SQLAlchemy URL otherwise
    # (postgresql+psycopg://user@host/db in production).
    database_url: str | None = None

    # Object storage.
    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None  # local backend; defaults to data_dir/storage
    s3_bucket: str = "reframe"
    s3_endpoint_url: str | None = None  # R2 / MinIO / loopback; None means AWS
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None

    # Optional Redis (live progress, rate limits, pub/sub); embedded mode works without it.
    redis_url: str | None = None

    public_base_url: str = "http://127.0.0.1:8000"
    # API replicas behind Ray Serve: each is one Python process (one GIL), so polling load
    # spreads over cores only with more than one.
    api_replicas: int = Field(default=2, ge=1)
    # On a machine that serves and renders, the API takes CPU priority over renders
    # (reframe.sched); off leaves every Ray worker at Ray's own niceness.
    process_priority: bool = True
    secret_key: str = DEV_SECRET

    # Launch limits from the public reference.
    max_upload_bytes: int = 250 * MIB
    max_duration_sec: float = 120.0
    min_target_fps: int = 24
    max_target_fps: int = 240
    upload_url_ttl_sec: int = 900
    download_url_ttl_sec: int = 3600

    # Probe limits: a hostile file must not hang or exhaust the API.
    probe_timeout_sec: float = 10.0
    probe_max_pixels: int = 4096 * 2304
    probe_max_frames: int = 120 * 240
    probe_max_bytes_read: int = 32 * MIB

    # Credits.
    free_xeconds_on_signup: int = 30
    # Operator-configurable packs, as JSON in REFRAME_CREDIT_PACKS, e.g.
    # '[{"id":"small","name":"Small","xeconds":100,"price_cents":200}]'.
    credit_packs: list[CreditPack] = Field(default_factory=_default_credit_packs)

    # Job lifecycle (reframe/jobs). Redis keys are namespaced so one server can host several
    # installs (and tests) side by side.
    redis_prefix: str = "reframe:"
    # Per-API-key token buckets: sustained requests per second and burst size. Reads (GET) are
    # cheap and polled; writes (POST/PUT/DELETE) start work, so they get a tighter bucket.
    # A rate of 0 switches that bucket off.
    rate_limit_read_per_sec: float = 20.0
    rate_limit_read_burst: int = 60
    rate_limit_write_per_sec: float = 2.0
    rate_limit_write_burst: int = 20
    # Webhooks: destinations that resolve to private, loopback or link-local addresses are
    # refused (SSRF) unless an operator allows them (a self-hosted install on a LAN).
    webhook_allow_private: bool = False
    webhook_timeout_sec: float = 5.0
    webhook_max_attempts: int = 6
    webhook_backoff_base_sec: float = 5.0
    # Dispatcher: renders running at once (None = cluster GPUs, else CPUs), lease length and
    # renewal, attempts per job, and the reaper's time budget per job.
    max_concurrent_renders: int | None = None
    lease_sec: float = 30.0
    heartbeat_sec: float = 5.0
    dispatch_poll_sec: float = 1.0
    max_attempts: int = 2
    job_time_base_sec: float = 300.0
    job_time_per_frame_sec: float = 2.0
    # A job still waiting for render capacity this long after it was accepted is failed and
    # refunded, so no credit is held for ever by a cluster that never takes it (0 = wait on).
    max_queue_wait_sec: float = Field(default=24 * 3600.0, ge=0)
    idempotency_ttl_sec: int = 24 * 3600

    # How the service renders its jobs (reframe.options.RenderOptions.from_settings).
    render_codec: Literal["h264", "hevc"] = "h264"
    render_crf: int = Field(default=18, ge=0, le=51)
    render_preset: str = "medium"
    render_precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    render_chunk_frames: int = Field(default=48, ge=2)
    render_actor_memory_gb: float | None = Field(default=None, gt=0)

    # Engine.
    model_dir: Path = Field(default_factory=_default_model_dir)
    rife_weights: Path | None = None  # offline override for the RIFE 4.26 state dict

    # Operations (reframe.logs, reframe.metrics). `auto` logs text to a terminal and JSON
    # lines anywhere else (Ray's log files, a container's stdout, a pipe to a shipper).
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # prometheus-client's multiprocess directory, shared by the API replicas and the
    # dispatcher on one machine; default <data_dir>/metrics.
    metrics_dir: Path | None = None
    # When set, GET /metrics wants `Authorization: Bearer <token>` (Prometheus'
    # `authorization` / `bearer_token_file`); unset, it answers anyone who can reach it.
    metrics_token: str | None = None

    @field_validator("data_dir", "storage_dir", "metrics_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        exposed = self.env == "production" or not _is_loopback_url(self.public_base_url)
        if exposed and self.secret_key == DEV_SECRET:
            raise ValueError(
                "REFRAME_SECRET_KEY is still the development secret while the service is "
                f"reachable at {self.public_base_url!r}; set REFRAME_SECRET_KEY to a long "
                "random value (for example: python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')"
            )
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("REFRAME_S3_BUCKET is required when REFRAME_STORAGE_BACKEND=s3")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'reframe.db').resolve()}"

    @property
    def resolved_storage_dir(self) -> Path:
        return (self.storage_dir or self.data_dir / "storage").resolve()

    @property
    def resolved_metrics_dir(self) -> Path:
        return self.metrics_dir or self.data_dir / "metrics"

    def log_setup(self) -> LogSetup:
        """How this service's processes log (reframe.logs): `settings.log_setup().apply(name)`."""
        from reframe.logs import LogSetup

        return LogSetup(self.log_format, self.log_level, {}, tuple(self.secret_values()))

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log redaction filter (reframe.logs)."""
        values = [self.secret_key, self.s3_secret_access_key, self.metrics_token]
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            password = make_url(self.resolved_database_url).password
        except ArgumentError:  # an unparsable URL fails elsewhere, with its own message
            password = None
        values.append(str(password) if password else None)
        return [v for v in values if v]


def get_settings() -> Settings:
    """Read settings from the environment of the calling process."""
    return Settings()
