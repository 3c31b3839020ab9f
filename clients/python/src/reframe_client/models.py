"""What the API answers, as frozen dataclasses with the same field names and types as
/openapi.json (each class names the schema it mirrors in `SCHEMA`).

They are written by hand to stay readable and dependency-free; tests/clients/test_models.py
diffs every field and type against the server's schema, so the two cannot drift apart
silently. Unknown fields in a response are ignored at run time, so a newer server that adds
one does not break an older client.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import datetime
from typing import Any, ClassVar, TypedDict, TypeVar, Union

__all__ = [
    "Account",
    "ApiKeyInfo",
    "Balance",
    "Band",
    "CreditPack",
    "CreditPool",
    "Download",
    "Estimate",
    "EstimateBody",
    "EstimateVideoBody",
    "FileInfo",
    "FileRole",
    "FileStatus",
    "FreeCreditPolicy",
    "Job",
    "JobCreateBody",
    "JobCreated",
    "JobEvent",
    "JobPage",
    "JobStatus",
    "JobSummary",
    "LedgerEntry",
    "LedgerKind",
    "LedgerPage",
    "Limits",
    "Me",
    "NewApiKey",
    "OptionQuote",
    "OutputBody",
    "OutputInfo",
    "PresignBody",
    "PresignedUpload",
    "PricingConfig",
    "Project",
    "ProjectPage",
    "Share",
    "SharedFile",
    "SharedProject",
    "VideoEstimate",
    "VideoInfo",
    "VideoOptionQuote",
    "parse",
]


class JobStatus(enum.StrEnum):
    """`live_status`: stable strings of the public contract."""

    PENDING = "pending"
    QUEUED = "queued"
    NO_WORKERS = "no_workers"
    COLD_START = "cold_start"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class CreditPool(enum.StrEnum):
    FREE = "free"
    PAID = "paid"


class LedgerKind(enum.StrEnum):
    """What a ledger entry was (`GET /me/ledger`)."""

    SIGNUP = "signup"
    GRANT = "grant"
    PURCHASE = "purchase"
    CHARGE = "charge"
    REFUND = "refund"
    CANCEL = "cancel"
    ADJUSTMENT = "adjustment"


class FileRole(enum.StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class FileStatus(enum.StrEnum):
    PENDING = "pending"
    READY = "ready"
    REJECTED = "rejected"
    EXPIRED = "expired"


# --- account ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Balance:
    SCHEMA: ClassVar[str] = "BalanceOut"
    free_xeconds: int
    paid_xeconds: int
    total_xeconds: int


@dataclasses.dataclass(frozen=True)
class ApiKeyInfo:
    SCHEMA: ClassVar[str] = "ApiKeyOut"
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


@dataclasses.dataclass(frozen=True)
class Account:
    SCHEMA: ClassVar[str] = "AccountOut"
    id: str
    email: str
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class Me:
    SCHEMA: ClassVar[str] = "MeOut"
    account: Account
    balance: Balance
    api_key: ApiKeyInfo | None
    webhook_secret: str | None = None


@dataclasses.dataclass(frozen=True)
class NewApiKey:
    SCHEMA: ClassVar[str] = "ApiKeyCreatedOut"
    api_key: str
    prefix: str
    created_at: datetime


# --- pricing ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Band:
    SCHEMA: ClassVar[str] = "BandOut"
    name: str
    label: str
    min_fps: int
    max_fps: int
    multiplier: int


@dataclasses.dataclass(frozen=True)
class CreditPack:
    SCHEMA: ClassVar[str] = "CreditPackOut"
    id: str
    name: str
    xeconds: int
    price_cents: int
    currency: str


@dataclasses.dataclass(frozen=True)
class Limits:
    SCHEMA: ClassVar[str] = "LimitsOut"
    max_upload_bytes: int
    max_duration_sec: float
    min_target_fps: int
    max_target_fps: int
    upload_url_ttl_sec: int
    download_url_ttl_sec: int
    source_fps_decimals: int
    source_fps_rule: str


@dataclasses.dataclass(frozen=True)
class FreeCreditPolicy:
    SCHEMA: ClassVar[str] = "FreeCreditPolicyOut"
    signup_xeconds: int
    free_renders_watermarked: bool
    paid_renders_clean: bool
    description: str


@dataclasses.dataclass(frozen=True)
class PreviewPolicy:
    SCHEMA: ClassVar[str] = "PreviewPolicyOut"
    free_per_day: int  # previews free per account per UTC day
    default_seconds: float
    max_seconds: float
    watermarked: bool
    formula: str
    description: str


@dataclasses.dataclass(frozen=True)
class PricingConfig:
    SCHEMA: ClassVar[str] = "PricingConfigOut"
    formula: str
    bands: list[Band]
    credit_packs: list[CreditPack]
    limits: Limits
    free_credits: FreeCreditPolicy
    previews: PreviewPolicy


@dataclasses.dataclass(frozen=True)
class OptionQuote:
    SCHEMA: ClassVar[str] = "OptionQuoteOut"
    target_fps: int
    allowed: bool
    band: str | None
    multiplier: int | None
    charged_xeconds: int | None
    reason: str | None


@dataclasses.dataclass(frozen=True)
class Estimate:
    SCHEMA: ClassVar[str] = "EstimateOut"
    duration_sec: float
    billable_seconds: int
    source_fps: float
    options: list[OptionQuote]
    preview_seconds: float | None = None  # quoted as a preview of this many seconds


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    SCHEMA: ClassVar[str] = "VideoInfoOut"
    duration_sec: float
    fps: float
    width: int
    height: int
    codec: str
    has_audio: bool
    audio_codec: str | None
    frame_count: int | None
    size_bytes: int | None
    fps_fraction: str | None = None
    variable_frame_rate: bool = False
    header_fps: float | None = None


@dataclasses.dataclass(frozen=True)
class VideoOptionQuote(OptionQuote):
    SCHEMA: ClassVar[str] = "VideoOptionQuoteOut"
    covered_by_balance: bool
    payment_kind: CreditPool | None
    watermarked: bool | None


@dataclasses.dataclass(frozen=True)
class VideoEstimate:
    SCHEMA: ClassVar[str] = "EstimateVideoOut"
    r2_key: str
    project_id: str
    video: VideoInfo
    probe: dict[str, Any]
    options: list[VideoOptionQuote]
    balance: Balance
    preview_seconds: float | None = None
    free_previews_left: int | None = None  # today's, when quoted as a preview

    def option(self, target_fps: int) -> VideoOptionQuote | None:
        return next((o for o in self.options if o.target_fps == target_fps), None)


# --- uploads, projects and files --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PresignedUpload:
    SCHEMA: ClassVar[str] = "PresignOut"
    upload_url: str
    key: str
    project_id: str
    expires_at: datetime | None
    method: str
    headers: dict[str, str]


@dataclasses.dataclass(frozen=True)
class FileInfo:
    SCHEMA: ClassVar[str] = "FileOut"
    file_id: str
    role: FileRole
    status: FileStatus
    filename: str
    content_type: str
    size_bytes: int | None
    key: str
    created_at: datetime
    duration_sec: float | None
    fps: float | None
    width: int | None
    height: int | None
    # When the service deletes the stored bytes (retention); None once they are gone.
    expires_at: datetime | None = None


@dataclasses.dataclass(frozen=True)
class JobSummary:
    SCHEMA: ClassVar[str] = "JobSummaryOut"
    job_id: str
    live_status: JobStatus
    target_fps: int
    charged_xeconds: int
    watermarked: bool
    output_file_id: str | None
    created_at: datetime
    preview: bool = False


@dataclasses.dataclass(frozen=True)
class Project:
    SCHEMA: ClassVar[str] = "ProjectOut"
    project_id: str
    name: str
    created_at: datetime
    inputs: list[FileInfo]
    outputs: list[FileInfo]
    jobs: list[JobSummary]
    share_url: str | None
    share_page_url: str | None = None


@dataclasses.dataclass(frozen=True)
class Download:
    SCHEMA: ClassVar[str] = "DownloadOut"
    file_id: str
    url: str
    expires_at: datetime
    filename: str
    file_expires_at: datetime | None = None


# --- jobs -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class JobEvent:
    SCHEMA: ClassVar[str] = "JobEventOut"
    status: JobStatus
    at: datetime
    message: str | None


@dataclasses.dataclass(frozen=True)
class Job:
    SCHEMA: ClassVar[str] = "JobOut"
    job_id: str
    project_id: str
    r2_key: str
    live_status: JobStatus
    progress: float
    frames_done: int | None
    frames_total: int | None
    eta_sec: float | None
    error: str | None
    output_file_id: str | None
    output_url: str | None
    target_fps: int
    source_fps: float
    duration_sec: float
    band: str
    multiplier: int
    charged_xeconds: int
    refunded_xeconds: int
    payment_kind: CreditPool
    watermarked: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    events: list[JobEvent]
    output: OutputInfo  # the output file's format, the server's defaults filled in
    source_variable_frame_rate: bool | None = None
    # Slow motion: the output plays at this rate; None when it plays at target_fps.
    playback_fps: int | None = None
    # What cancelling now would refund; None once the job has ended.
    cancel_refund_xeconds: int | None = None
    # A preview renders only the first preview_seconds, watermarked.
    preview: bool = False
    preview_seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class OutputInfo:
    """The output a job renders: container (mp4, mov, mkv), codec (h264, hevc, prores), the
    quality as chosen (a CRF number or a preset name), the encoder's CRF or ProRes profile,
    and audio (copy or none)."""

    SCHEMA: ClassVar[str] = "OutputOut"
    container: str
    codec: str
    quality: int | str
    crf: int | None
    prores_profile: str | None
    audio: str


@dataclasses.dataclass(frozen=True)
class JobCreated:
    SCHEMA: ClassVar[str] = "JobCreatedOut"
    job_id: str
    project_id: str
    live_status: JobStatus
    charged_xeconds: int
    band: str
    multiplier: int
    payment_kind: CreditPool
    watermarked: bool
    balance: Balance
    preview: bool = False
    preview_seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class _Page:
    total: int
    limit: int
    offset: int
    next_offset: int | None  # None on the last page


@dataclasses.dataclass(frozen=True)
class JobPage(_Page):
    SCHEMA: ClassVar[str] = "Page_JobOut_"
    items: list[Job]


@dataclasses.dataclass(frozen=True)
class ProjectPage(_Page):
    SCHEMA: ClassVar[str] = "Page_ProjectOut_"
    items: list[Project]


@dataclasses.dataclass(frozen=True)
class LedgerEntry:
    SCHEMA: ClassVar[str] = "LedgerEntryOut"
    entry_id: int
    kind: LedgerKind
    amount_xeconds: int  # signed: a charge is negative
    pool: CreditPool
    job_id: str | None
    description: str
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class LedgerPage(_Page):
    SCHEMA: ClassVar[str] = "LedgerPageOut"
    items: list[LedgerEntry]
    balance: Balance  # now; the sum of every entry on every page


# --- shares -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Share:
    SCHEMA: ClassVar[str] = "ShareOut"
    token: str
    url: str
    page_url: str
    project_id: str
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class SharedFile:
    SCHEMA: ClassVar[str] = "SharedFileOut"
    file_id: str
    role: FileRole
    filename: str
    content_type: str
    size_bytes: int | None
    duration_sec: float | None
    fps: float | None
    width: int | None
    height: int | None
    url: str


@dataclasses.dataclass(frozen=True)
class SharedProject:
    SCHEMA: ClassVar[str] = "SharedProjectOut"
    name: str
    created_at: datetime
    files: list[SharedFile]


# --- request bodies (checked against the schema's request bodies the same way) ----------------


# Required keys in a total base, optional ones in a total=False subclass: `typing.Required`
# is not seen inside the string annotations this module's __future__ import makes.


class _PresignRequired(TypedDict):
    filename: str
    content_type: str


class PresignBody(_PresignRequired, total=False):
    size_bytes: int | None


class _EstimateRequired(TypedDict):
    duration_sec: float
    source_fps: float


class EstimateBody(_EstimateRequired, total=False):
    target_fps: int | None
    target_fps_options: list[int] | None
    preview_seconds: float | None


class _EstimateVideoRequired(TypedDict):
    r2_key: str
    target_fps_options: list[int]


class EstimateVideoBody(_EstimateVideoRequired, total=False):
    preview_seconds: float | None


class _JobCreateRequired(TypedDict):
    r2_key: str
    project_id: str
    target_fps: int


class OutputBody(TypedDict, total=False):
    """`output` of POST /jobs; every key optional (mp4, h264, CRF 18, audio copied)."""

    container: str | None
    codec: str | None
    quality: int | str | None  # a CRF number, or standard / high / visually_lossless
    audio: str  # copy or none


class JobCreateBody(_JobCreateRequired, total=False):
    webhook_url: str | None
    preview: bool
    preview_seconds: float | None
    output: OutputBody | None
    playback_fps: int | None


# --- decoding ---------------------------------------------------------------------------------

M = TypeVar("M")


class ModelError(ValueError):
    """A response body that does not fit its model (reframe_client.errors wraps it)."""


def parse(model: type[M], data: object) -> M:
    """Build `model` (one of the dataclasses above) from decoded JSON, checking every type."""
    return typing.cast(M, _convert(model, data, model.__name__))


def _convert(tp: Any, value: object, where: str) -> object:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            if len(arms) == len(typing.get_args(tp)):
                raise ModelError(f"{where}: null is not allowed")
            return None
        if len(arms) == 1:
            return _convert(arms[0], value, where)
        # Several arms (`int | str`): the first that fits the value.
        for arm in arms:
            try:
                return _convert(arm, value, where)
            except ModelError:
                continue
        raise ModelError(f"{where}: {value!r} fits none of {tp}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ModelError(f"{where}: expected a list, got {type(value).__name__}")
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ModelError(f"{where}: expected an object, got {type(value).__name__}")
        return {str(k): _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError as exc:
            raise ModelError(f"{where}: {value!r} is not one of {[m.value for m in tp]}") from exc
    if tp is datetime:
        if not isinstance(value, str):
            raise ModelError(f"{where}: expected a date-time string")
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise ModelError(f"{where}: {value!r} is not an ISO 8601 date-time") from exc
    if tp is float:
        # JSON has one number type; a whole number is still a valid float field.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ModelError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ModelError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise TypeError(f"{where}: no decoder for {tp!r}")  # a bug in this module, not the server


def _dataclass(cls: type, value: object, where: str) -> object:
    if not isinstance(value, dict):
        raise ModelError(f"{where}: expected an object, got {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.name in value:
            kwargs[f.name] = _convert(hints[f.name], value[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING:
            raise ModelError(f"{where}: field {f.name!r} is missing")
    return cls(**kwargs)
