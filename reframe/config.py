"""Service configuration: one `Settings` object, read from `REFRAME_*` environment variables.

Nothing is read at import time: call `Settings()` (or `get_settings()` in the app factory) when
a process starts, and pass the object down. Tests build their own `Settings(...)`.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reframe.errors import ReframeError
from reframe.logs import LogSetup

if TYPE_CHECKING:
    from reframe.api.client_address import TrustedProxies

# A well-known value so that a development install works out of the box; `Settings` refuses
# it as soon as the service is reachable from anywhere but this machine.
DEV_SECRET = "reframe-dev-secret-change-me"  # noqa: S105
# The secret signs storage URLs, sessions and CSRF tokens: whoever guesses it can forge them.
# 32 characters of token_urlsafe carry 192 bits; anything shorter is likely typed by hand.
MIN_SECRET_LENGTH = 32
_MAKE_A_SECRET = (
    "set REFRAME_SECRET_KEY to a random value of at least "
    f"{MIN_SECRET_LENGTH} characters, for example the output of: "
    "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
)

MIB = 1024 * 1024


class ConfigurationError(ReframeError):
    """The REFRAME_* settings cannot be used as they are; the message says which and why."""


class UnsafeConfiguration(ConfigurationError):
    """The service would be reachable by others with a secret they can know or guess."""


def weak_secret_reason(secret: str) -> str | None:
    """Why `secret` must not protect a service others can reach; None when it may."""
    if secret == DEV_SECRET:
        return "REFRAME_SECRET_KEY is still the development secret"
    if len(secret) < MIN_SECRET_LENGTH:
        return (
            f"REFRAME_SECRET_KEY is {len(secret)} characters long; it must be at least "
            f"{MIN_SECRET_LENGTH} characters"
        )
    return None


def is_loopback_host(host: str) -> bool:
    """True for addresses only this machine can reach: localhost, 127.0.0.0/8 and ::1.

    Wildcards ("0.0.0.0", "::", "") and every other name count as reachable from elsewhere:
    a name that resolves to loopback today may not tomorrow.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refuse_weak_secret_on(settings: Settings, bind_host: str) -> None:
    """Raise UnsafeConfiguration when listening on `bind_host` would expose a weak secret.

    `Settings` alone cannot know where the service listens (`reframe serve --host`): binding
    0.0.0.0 with a loopback public URL is still reachable from the network.
    """
    if is_loopback_host(bind_host):
        return
    reason = weak_secret_reason(settings.secret_key)
    if reason is not None:
        raise UnsafeConfiguration(
            f"refusing to listen on {bind_host or 'every interface'!r}: {reason}, and anyone "
            f"who knows it can forge storage URLs and sessions; {_MAKE_A_SECRET}, or listen on "
            "127.0.0.1 for development."
        )


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
    return is_loopback_host(urlparse(url).hostname or "")


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
    # Ray Serve's HAProxy stats page and Prometheus exporter (reframe serve): off unless a
    # port is given, and then bound to the API's host only (reframe.cli.haproxy).
    haproxy_stats_port: int | None = Field(default=None, ge=1, le=65535)
    haproxy_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    # Launch limits from the public reference.
    max_upload_bytes: int = 250 * MIB
    max_duration_sec: float = 120.0
    min_target_fps: int = 24
    max_target_fps: int = 240
    upload_url_ttl_sec: int = 900
    # Request bodies of the JSON (and studio form) endpoints: none needs more than a few KiB,
    # so anything larger is refused with 413 before it is read. The local storage PUT route is
    # exempt: its signed URL carries its own size limit.
    max_json_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Upload URLs an account may hold at once that were neither verified nor expired: each is
    # a project row and a writable key, so an unlimited number is a cheap way to fill storage.
    max_pending_uploads: int = Field(default=20, ge=1)
    # A pending upload still unverified this long after its presign is abandoned: the sweeper
    # (reframe.services.sweep) deletes its bytes and marks it expired. At least the URL's life.
    upload_abandon_after_sec: int = Field(default=6 * 3600, gt=0)
    # Retention: a verified input or a render output is deleted (bytes and all, by the
    # sweeper) this many days after it was stored; the inputs of jobs still waiting or running
    # are kept until the job ends.
    retention_days: float = Field(default=7.0, gt=0)
    # How often the dispatcher runs the sweeper, and how many rows one run handles at most.
    sweep_interval_sec: float = Field(default=300.0, gt=0)
    sweep_batch: int = Field(default=200, ge=1)
    download_url_ttl_sec: int = 3600
    # URLs a share link hands to anyone who opens it. The local backend also stops them when
    # the share is revoked; S3 cannot be asked, so their short life is the whole bound there.
    share_url_ttl_sec: int = Field(default=300, gt=0)

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
    # Previews (the first seconds of a clip, always watermarked) an account gets free per UTC
    # day; later ones that day are priced like a render of those seconds (0 = none free).
    preview_free_per_day: int = Field(default=3, ge=0)

    # Job lifecycle (reframe/jobs). Redis keys are namespaced so one server can host several
    # installs (and tests) side by side.
    redis_prefix: str = "reframe:"
    # Token buckets per account or client address: sustained requests per second and burst
    # size. Reads (GET) are cheap and polled; writes (POST/PUT/DELETE) start work, so they get
    # a tighter bucket.
    # A rate of 0 switches that bucket off.
    rate_limit_read_per_sec: float = 20.0
    rate_limit_read_burst: int = 60
    rate_limit_write_per_sec: float = 2.0
    rate_limit_write_burst: int = 20
    # Buckets belong to a verified account, or else to the client's address (IPv6: its /64).
    # Behind a load balancer or HAProxy every peer is the proxy: list the proxies' addresses
    # or CIDRs (comma-separated) and X-Forwarded-For is read from them, and only from them.
    trusted_proxies: str = ""
    # The in-process limiter's table (no Redis): past this many buckets the least recently
    # used is dropped, in constant time. With Redis each bucket expires once full again.
    rate_limit_max_keys: int = Field(default=100_000, ge=1)
    # Studio log-ins per email, from any address: this many attempts in a row are free, then
    # each waits base * 2^n seconds, never more than the max, so a guesser is slowed to a
    # crawl while the owner of the address always gets a turn within the max. A success, or
    # a window without attempts, forgets them.
    login_free_attempts: int = Field(default=5, ge=1)
    login_backoff_base_sec: float = Field(default=1.0, gt=0)
    login_backoff_max_sec: float = Field(default=300.0, gt=0)
    login_failure_window_sec: float = Field(default=3600.0, gt=0)
    # Webhooks: destinations that resolve to private, loopback or link-local addresses are
    # refused (SSRF) unless an operator allows them (a self-hosted install on a LAN).
    webhook_allow_private: bool = False
    webhook_timeout_sec: float = 5.0  # each socket operation of a delivery
    # A whole delivery attempt, DNS to the answer's last byte; deliveries run on this many
    # threads beside the dispatcher loop (reframe.jobs.webhooks.WebhookPool).
    webhook_deadline_sec: float = Field(default=15.0, gt=0)
    webhook_workers: int = Field(default=4, ge=1, le=64)
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
    # GPUs each interpolator actor asks for when the cluster has or can get GPUs (fractions pack
    # several actors on one GPU; 0 never asks for GPUs), and the most actors one job may use.
    render_gpus_per_actor: float = Field(default=1.0, ge=0)
    render_max_actors_per_job: int = Field(default=8, ge=1)
    # Test clusters only: actors given a logical GPU on a node without CUDA render on the CPU
    # instead of failing the attempt.
    render_allow_cpu_fallback: bool = False
    # The autoscaler's config file, to learn what the cluster can grow to when the autoscaler
    # does not publish it (autoscaler v1); default: the cluster launcher's file on the head.
    autoscaler_config: Path | None = None

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

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _proxies(cls, value: str) -> str:
        # client_address imports this module (ConfigurationError): importing it at the top
        # would be a cycle.
        from reframe.api.client_address import TrustedProxies

        try:
            TrustedProxies.parse(value)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None
        return value

    @property
    def trusted_proxy_networks(self) -> TrustedProxies:
        from reframe.api.client_address import TrustedProxies  # a cycle at the top, as above

        return TrustedProxies.parse(self.trusted_proxies)

    @property
    def exposed(self) -> bool:
        """Reachable from beyond this machine, or declared production."""
        return self.env == "production" or not _is_loopback_url(self.public_base_url)

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        exposed = self.exposed
        reason = weak_secret_reason(self.secret_key) if exposed else None
        if reason is not None:
            where = "in production" if self.env == "production" else "while the service is"
            if self.env != "production":
                where += f" reachable at {self.public_base_url!r}"
            raise ValueError(f"{reason} {where}; {_MAKE_A_SECRET}")
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("REFRAME_S3_BUCKET is required when REFRAME_STORAGE_BACKEND=s3")
        if self.upload_abandon_after_sec < self.upload_url_ttl_sec:
            # Sweeping before the URL expires would delete bytes a client may still be sending.
            raise ValueError(
                f"REFRAME_UPLOAD_ABANDON_AFTER_SEC ({self.upload_abandon_after_sec}) must be at "
                f"least REFRAME_UPLOAD_URL_TTL_SEC ({self.upload_url_ttl_sec})"
            )
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


# Settings that must never travel through Ray: not in a job's runtime_env (shown in the
# dashboard), not in a deployment's or actor's arguments (kept in the GCS). Processes started
# through Ray read them from their own environment or from REFRAME_SECRETS_DIR.
SECRET_FIELDS = frozenset(
    {"secret_key", "s3_access_key_id", "s3_secret_access_key", "metrics_token"}
)
# URLs are secrets only when they carry credentials (a PostgreSQL password, a Redis AUTH).
_URL_FIELDS = ("database_url", "redis_url")
SECRETS_DIR_ENV = "REFRAME_SECRETS_DIR"


def secret_fields(settings: Settings) -> frozenset[str]:
    """The fields of `settings` whose values are secret."""
    names = set(SECRET_FIELDS)
    for name in _URL_FIELDS:
        value = getattr(settings, name)
        if value and urlparse(value).password:
            names.add(name)
    return frozenset(names)


def public_values(settings: Settings) -> dict[str, Any]:
    """`settings` as JSON-able values without its secrets (for Serve deployment arguments)."""
    values: dict[str, Any] = settings.model_dump(mode="json", exclude=set(secret_fields(settings)))
    return values


def write_secrets(settings: Settings, directory: Path) -> Path:
    """Write the secrets `settings` holds into `directory`, one file per field as pydantic's
    secrets_dir reads them (`reframe_<field>`), readable by this user only."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    for name in sorted(secret_fields(settings)):
        value = getattr(settings, name)
        path = directory / f"reframe_{name}"
        if value is None:
            path.unlink(missing_ok=True)
            continue
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(str(value))
    return directory


def load_settings(values: dict[str, Any] | None = None) -> Settings:
    """Settings in a process started through Ray: explicit `values` first, then REFRAME_*
    variables, then the secret files in REFRAME_SECRETS_DIR when that folder exists here."""
    secrets = os.environ.get(SECRETS_DIR_ENV)
    if secrets and Path(secrets).is_dir():
        return Settings(_secrets_dir=secrets, **(values or {}))
    return Settings(**(values or {}))


def read_settings(**overrides: object) -> Settings:
    """`Settings(**overrides)` over the environment, with problems as one ConfigurationError.

    For commands: pydantic's ValidationError is a wall of text with a traceback; this says
    which variable is wrong and what to do, in the validators' own words.
    """
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
            field = ".".join(str(part) for part in error.get("loc", ()))
            problems.append(f"REFRAME_{field.upper()}: {message}" if field else message)
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from exc
