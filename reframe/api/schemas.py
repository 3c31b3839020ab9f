"""Request and response bodies, named by role (`JobCreateIn` in, `JobOut` out)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import AfterValidator, AliasPath, BaseModel, ConfigDict, Field, model_validator

from reframe.db.models import CreditPool, FileRole, FileStatus, JobStatus
from reframe.services.ledger import LedgerKind
from reframe.services.pagination import PageSlice
from reframe.services.previews import DEFAULT_SECONDS as PREVIEW_DEFAULT_SECONDS
from reframe.services.previews import MAX_SECONDS as PREVIEW_MAX_SECONDS
from reframe.video.formats import Container, OutputCodec, QualityPreset

T = TypeVar("T")

_KEY_EXAMPLE = "uploads/3f2a.../9c1e.../clip.mp4"

# Every float a client sends. Python's JSON parser reads `Infinity`, `NaN` and `1e999` as
# floats; none is a duration or a frame rate, and an infinite one overflowed the price
# (math.ceil) into a 500. Refused here, they are a 400 that names the field.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _preview_length(seconds: float) -> float:
    if not 0 < seconds <= PREVIEW_MAX_SECONDS:
        raise ValueError(
            f"a preview covers more than 0 and at most {PREVIEW_MAX_SECONDS:g} seconds; got "
            f"{seconds:g}. Ask for a shorter preview, or render the whole clip without preview"
        )
    return seconds


# How long a preview is (POST /jobs, the estimates): (0, 5] seconds.
PreviewSeconds = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_preview_length)]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control_characters(value: str) -> str:
    # NUL cannot even be stored by PostgreSQL (the driver raised, a 500), and no file name,
    # key, id or URL a client sends has any reason to hold a line break or another control.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (NUL, line breaks, tabs...)")
    return value


# Every string a client sends in a body.
Text = Annotated[
    str,
    AfterValidator(_no_control_characters),
    Field(json_schema_extra={"pattern": "^[^\\u0000-\\u001f\\u007f]*$"}),
]


class RequestModel(BaseModel):
    """Base of every request body: values are taken as the types the schema says.

    Strict: JSON `true` or `"60"` for an integer is refused instead of being read as 1 or 60
    (pydantic's lax mode), so what the API accepts is what /openapi.json documents.
    """

    model_config = ConfigDict(strict=True)


class ErrorOut(BaseModel):
    """Every error body: one readable sentence."""

    detail: str = Field(
        examples=["Launch limit is 120s per video. Longer video chunking is coming."]
    )


class RowModel(BaseModel):
    """A response read off a database row or a service's dataclass (`model_validate(row)`).

    A field whose name differs from the attribute it comes from names that attribute in
    `validation_alias`; construction by field name keeps working (`populate_by_name`).
    """

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page; null on the last one")

    @classmethod
    def of(cls, page: PageSlice[Any], items: list[T], **extra: Any) -> Self:
        """The response for `page` (services.pagination), its rows presented as `items`."""
        return cls(
            items=items,
            total=page.total,
            limit=page.window.limit,
            offset=page.window.offset,
            next_offset=page.next_offset,
            **extra,
        )


# --- account ----------------------------------------------------------------------------------


class BalanceOut(RowModel):
    free_xeconds: int = Field(
        validation_alias="free", description="Free credit; renders paid with it are watermarked"
    )
    paid_xeconds: int = Field(
        validation_alias="paid", description="Paid credit; renders paid with it are clean"
    )
    total_xeconds: int = Field(validation_alias="total")


class LedgerEntryOut(RowModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "entry_id": 42,
                    "kind": "charge",
                    "amount_xeconds": -2,
                    "pool": "paid",
                    "job_id": "5b7d0c0e3f8a4c7f9d1e2a3b4c5d6e7f",
                    "description": "Charge for a render at 120 fps (slomo, x2)",
                    "created_at": "2026-12-03T16:20:00Z",
                }
            ]
        }
    )

    entry_id: int = Field(description="Increases with every entry; newer entries have larger ids")
    kind: LedgerKind = Field(
        description=(
            "signup: the signup credit; grant: credit added by the operator; purchase: a "
            "credit pack; charge: a render accepted; refund: a failed render given back, or an "
            "operator's refund; cancel: what your cancel gave back; adjustment: an operator's "
            "correction"
        )
    )
    amount_xeconds: int = Field(
        validation_alias="amount",
        description="Signed: negative takes xeconds from the pool, positive gives them",
    )
    pool: CreditPool = Field(description="The pool it moved: free (watermarked) or paid")
    job_id: str | None = Field(description="The render it belongs to; null for credit")
    description: str = Field(description="One line for people")
    created_at: datetime


class LedgerPageOut(Page[LedgerEntryOut]):
    """Entries newest first. The balance is the sum of every entry on every page."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "entry_id": 43,
                            "kind": "cancel",
                            "amount_xeconds": 2,
                            "pool": "paid",
                            "job_id": "5b7d0c0e3f8a4c7f9d1e2a3b4c5d6e7f",
                            "description": (
                                "Refund of the whole charge: you cancelled a render at 120 fps "
                                "(slomo, x2)"
                            ),
                            "created_at": "2026-12-03T16:21:00Z",
                        },
                        {
                            "entry_id": 42,
                            "kind": "charge",
                            "amount_xeconds": -2,
                            "pool": "paid",
                            "job_id": "5b7d0c0e3f8a4c7f9d1e2a3b4c5d6e7f",
                            "description": "Charge for a render at 120 fps (slomo, x2)",
                            "created_at": "2026-12-03T16:20:00Z",
                        },
                        {
                            "entry_id": 7,
                            "kind": "signup",
                            "amount_xeconds": 30,
                            "pool": "free",
                            "job_id": None,
                            "description": "Signup credit",
                            "created_at": "2026-12-01T09:00:00Z",
                        },
                    ],
                    "total": 3,
                    "limit": 20,
                    "offset": 0,
                    "next_offset": None,
                    "balance": {"free_xeconds": 30, "paid_xeconds": 0, "total_xeconds": 30},
                }
            ]
        }
    )

    balance: BalanceOut = Field(description="Now: the sum of all entries, per pool")


class ApiKeyOut(BaseModel):
    prefix: str = Field(description="The first characters of the key, to recognise it")
    created_at: datetime
    last_used_at: datetime | None


class AccountOut(BaseModel):
    id: str
    email: str
    created_at: datetime


class MeOut(BaseModel):
    account: AccountOut
    balance: BalanceOut
    api_key: ApiKeyOut | None = Field(description="The live key's metadata; never the key")
    webhook_secret: str | None = Field(
        default=None, description="Signs your job webhooks (Reframe-Signature header)"
    )


class ApiKeyCreatedOut(BaseModel):
    api_key: str = Field(
        description="The new key. Shown once: store it now. The previous key stops working.",
        examples=["rf_live_Qm9vZ2xlIGlzIG5vdCBhIGtleSwgaXQgaXMgYW4gZXhhbXBsZQ"],
    )
    prefix: str
    created_at: datetime


# --- pricing ----------------------------------------------------------------------------------


class BandOut(RowModel):
    name: str = Field(examples=["smooth"])
    label: str
    min_fps: int
    max_fps: int
    multiplier: int


class CreditPackOut(BaseModel):
    id: str
    name: str
    xeconds: int
    price_cents: int
    currency: str


class LimitsOut(RowModel):
    max_upload_bytes: int = Field(examples=[262144000])
    max_duration_sec: float = Field(examples=[120.0])
    min_target_fps: int
    max_target_fps: int
    upload_url_ttl_sec: int
    download_url_ttl_sec: int
    source_fps_decimals: int = Field(
        description="target_fps must exceed the source frame rate rounded to this many decimals"
    )
    source_fps_rule: str = Field(description="How the source frame rate is measured and compared")


class FreeCreditPolicyOut(BaseModel):
    signup_xeconds: int
    free_renders_watermarked: bool
    paid_renders_clean: bool
    description: str


class PreviewPolicyOut(BaseModel):
    free_per_day: int = Field(
        description="Previews free per account per UTC day (reset at midnight UTC)", examples=[3]
    )
    default_seconds: float = Field(examples=[3.0])
    max_seconds: float = Field(examples=[5.0])
    watermarked: bool = Field(description="Previews are always watermarked")
    formula: str = Field(description="The price of a preview after the free ones")
    description: str


class PricingConfigOut(BaseModel):
    formula: str
    bands: list[BandOut]
    credit_packs: list[CreditPackOut]
    limits: LimitsOut
    free_credits: FreeCreditPolicyOut
    previews: PreviewPolicyOut


class EstimateIn(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"duration_sec": 12.4, "source_fps": 24, "target_fps_options": [60, 120]}]
        }
    )

    duration_sec: FiniteFloat = Field(gt=0)
    source_fps: FiniteFloat = Field(gt=0)
    target_fps: int | None = None
    target_fps_options: list[int] | None = Field(default=None, min_length=1, max_length=16)
    preview_seconds: PreviewSeconds | None = Field(
        default=None,
        description=(
            "Quote a preview of this many seconds (POST /jobs with preview: true) instead of "
            "the whole clip: its price once the day's free previews are used"
        ),
    )

    @model_validator(mode="after")
    def _one_target(self) -> EstimateIn:
        if self.target_fps is None and not self.target_fps_options:
            raise ValueError("give target_fps or target_fps_options")
        return self

    def options(self) -> list[int]:
        opts = list(self.target_fps_options or [])
        if self.target_fps is not None and self.target_fps not in opts:
            opts.insert(0, self.target_fps)
        return opts


class OptionQuoteOut(BaseModel):
    target_fps: int
    allowed: bool
    band: str | None
    multiplier: int | None
    charged_xeconds: int | None
    reason: str | None = Field(description="Why this option cannot be rendered, when it cannot")


class EstimateOut(BaseModel):
    duration_sec: float
    billable_seconds: int = Field(description="Of the preview when preview_seconds is given")
    source_fps: float
    options: list[OptionQuoteOut]
    preview_seconds: float | None = Field(default=None, description="Null: the whole clip")


class EstimateVideoIn(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"r2_key": _KEY_EXAMPLE, "target_fps_options": [60, 120]}]}
    )

    r2_key: Text = Field(min_length=1, max_length=512, description="`key` from /upload/presign")
    target_fps_options: list[int] = Field(min_length=1, max_length=16)
    preview_seconds: PreviewSeconds | None = Field(
        default=None,
        description=(
            "Quote a preview of this many seconds (POST /jobs with preview: true): free while "
            "the account has free previews left today, watermarked either way"
        ),
    )


class VideoInfoOut(BaseModel):
    duration_sec: float = Field(
        description="The frames' span, or the header's duration when longer (never shorter)"
    )
    fps: float = Field(
        description="Measured from the frames' timestamps: the mean over all frames (exact "
        "ratio at a constant rate); the header's rate is only a hint"
    )
    fps_fraction: str | None = Field(default=None, examples=["30000/1001"])
    variable_frame_rate: bool = Field(
        default=False, description="True when frame intervals vary (phones, screen recorders)"
    )
    header_fps: float | None = Field(
        default=None, description="The rate the container states, when it states one"
    )
    width: int
    height: int
    codec: str
    has_audio: bool
    audio_codec: str | None
    frame_count: int | None
    size_bytes: int | None


class VideoOptionQuoteOut(OptionQuoteOut):
    covered_by_balance: bool
    payment_kind: CreditPool | None = Field(description="Which credit would pay: paid or free")
    watermarked: bool | None


class EstimateVideoOut(BaseModel):
    r2_key: str
    project_id: str
    video: VideoInfoOut
    probe: dict[str, Any] = Field(description="Everything the probe learned about the file")
    options: list[VideoOptionQuoteOut]
    balance: BalanceOut
    preview_seconds: float | None = Field(default=None, description="Null: the whole clip")
    free_previews_left: int | None = Field(
        default=None, description="Free previews the account has left today; null without preview"
    )


# --- uploads ----------------------------------------------------------------------------------


class PresignIn(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"filename": "clip.mp4", "content_type": "video/mp4"}]}
    )

    filename: Text = Field(min_length=1, max_length=255)
    content_type: Text = Field(min_length=1, max_length=255)
    size_bytes: int | None = Field(default=None, description="Declared size; over the limit is 413")


class PresignOut(BaseModel):
    upload_url: str
    key: str = Field(description="Pass as r2_key to /pricing/estimate-video and /jobs")
    project_id: str
    expires_at: datetime | None
    method: str = Field(examples=["PUT"])
    headers: dict[str, str] = Field(description="Send these headers with the upload")


# --- projects and files -----------------------------------------------------------------------


class FileOut(RowModel):
    file_id: str = Field(validation_alias="id")
    role: FileRole
    status: FileStatus
    filename: str
    content_type: str
    size_bytes: int | None
    key: str = Field(validation_alias="storage_key")
    created_at: datetime
    duration_sec: float | None
    fps: float | None
    width: int | None
    height: int | None
    expires_at: datetime | None = Field(
        default=None,
        description=(
            "When the stored bytes are deleted (REFRAME_RETENTION_DAYS after a file is stored; "
            "an upload left unverified is deleted sooner). Afterwards the file's status is "
            "`expired` and its URLs answer 410."
        ),
    )


class JobOut(RowModel):
    job_id: str = Field(validation_alias="id")
    project_id: str
    r2_key: str = Field(validation_alias=AliasPath("input_file", "storage_key"))
    live_status: JobStatus = Field(validation_alias="status")
    progress: float = Field(description="0.0 to 1.0")
    frames_done: int | None
    frames_total: int | None
    eta_sec: float | None
    error: str | None
    output_file_id: str | None
    output_url: str | None = Field(description="Fresh download URL, only when done")
    target_fps: int
    output: OutputOut = Field(description="The output file's format, defaults filled in")
    playback_fps: int | None = Field(
        default=None,
        description="Slow motion: the output plays at this rate (null: it plays at target_fps)",
    )
    source_fps: float = Field(description="Measured from the source's frame timestamps")
    source_variable_frame_rate: bool | None = Field(
        default=None,
        description="True when the source has a variable frame rate (source_fps is its mean)",
    )
    duration_sec: float
    band: str
    multiplier: int
    charged_xeconds: int
    refunded_xeconds: int
    payment_kind: CreditPool
    watermarked: bool
    preview: bool = Field(
        default=False,
        description=(
            "A preview: only the first preview_seconds are rendered, watermarked; "
            "charged_xeconds is its price (0 inside the daily free allowance)"
        ),
    )
    preview_seconds: float | None = Field(default=None, description="Null for a full render")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    events: list[JobEventOut]
    cancel_refund_xeconds: int | None = Field(
        default=None,
        description=(
            "What POST /jobs/{id}/cancel would refund now: the whole charge before frames "
            "flow, the share of the frames not yet rendered while processing; null once the "
            "job has ended (it can no longer be cancelled)"
        ),
        examples=[2],
    )


class JobEventOut(RowModel):
    status: JobStatus
    at: datetime
    message: str | None


class ProjectOut(RowModel):
    project_id: str = Field(validation_alias="id")
    name: str
    created_at: datetime
    inputs: list[FileOut]
    outputs: list[FileOut]
    jobs: list[JobSummaryOut]
    share_url: str | None = Field(
        description="JSON view of the live share link (GET /share/{token})"
    )
    share_page_url: str | None = Field(
        default=None, description="HTML review page of the live share link, for people"
    )


class JobSummaryOut(RowModel):
    job_id: str = Field(validation_alias="id")
    live_status: JobStatus = Field(validation_alias="status")
    target_fps: int
    charged_xeconds: int
    watermarked: bool
    output_file_id: str | None
    created_at: datetime
    preview: bool = Field(default=False, description="Only the clip's first seconds rendered")


class DownloadOut(BaseModel):
    file_id: str
    url: str
    expires_at: datetime = Field(description="When this download URL stops working")
    filename: str
    file_expires_at: datetime | None = Field(
        default=None, description="When the file itself is deleted (retention)"
    )


# --- jobs -------------------------------------------------------------------------------------

_QUALITY_DOC = (
    "A CRF number (1 best and largest .. 51 smallest; h264 and hevc only) or a preset: "
    "`standard`, `high`, `visually_lossless`. Presets as CRF: h264 23 / 18 / 14, hevc "
    "28 / 23 / 19; for prores they pick the profile: ProRes 422 / 422 HQ / 4444. "
    "Default: CRF 18 for h264 (the service's default), `high` otherwise."
)
_AUDIO_DOC = (
    "`copy` (default) keeps the source's sound (re-encoded to AAC only where the container "
    "cannot hold its codec); `none` drops it. Slow motion (playback_fps below target_fps) "
    "always drops the sound."
)


class OutputIn(RequestModel):
    """The output file: container, codec, quality and sound. Every field is optional."""

    container: Container | None = Field(
        default=None,
        description=(
            "`mp4` (default; `mov` when codec is prores), `mov` or `mkv`. Codecs per "
            "container: mp4 h264/hevc, mov h264/hevc/prores, mkv h264/hevc"
        ),
    )
    codec: OutputCodec | None = Field(
        default=None, description="`h264` (default), `hevc`, or `prores` (mov only)"
    )
    quality: int | QualityPreset | None = Field(
        default=None, description=_QUALITY_DOC, examples=["high", 20]
    )
    audio: Literal["copy", "none"] = Field(default="copy", description=_AUDIO_DOC)


class OutputOut(RowModel):
    """The output a job renders: what was chosen, with the defaults filled in."""

    container: Container
    codec: OutputCodec
    quality: int | QualityPreset = Field(description="As chosen: a CRF number or a preset")
    crf: int | None = Field(description="The encoder's CRF; null for prores")
    prores_profile: Literal["standard", "hq", "4444"] | None = Field(
        description="The ProRes profile; null for h264 and hevc"
    )
    audio: Literal["copy", "none"] = Field(
        description="Whether the source's sound is in the output (`none` for slow motion)"
    )


class JobCreateIn(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"r2_key": _KEY_EXAMPLE, "project_id": "9c1e...", "target_fps": 60},
                {
                    "r2_key": _KEY_EXAMPLE,
                    "project_id": "9c1e...",
                    "target_fps": 240,
                    "playback_fps": 30,
                    "output": {"container": "mov", "codec": "prores", "quality": "high"},
                },
                {
                    "r2_key": _KEY_EXAMPLE,
                    "project_id": "9c1e...",
                    "target_fps": 120,
                    "preview": True,
                    "preview_seconds": 3,
                },
            ]
        }
    )

    r2_key: Text = Field(min_length=1, max_length=512)
    project_id: Text = Field(min_length=1, max_length=64)
    target_fps: int
    webhook_url: Text | None = Field(
        default=None,
        max_length=2048,
        description=(
            "Optional http(s) URL that receives a signed JSON POST on every status change "
            "(header Reframe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of '<t>.<body>' with the "
            "webhook_secret from GET /me>). Private, loopback and link-local hosts are refused."
        ),
    )
    preview: bool = Field(
        default=False,
        description=(
            "Render only the first preview_seconds of the clip with the same settings, always "
            "watermarked: free for the first previews of each UTC day (GET /pricing/config, "
            "previews), then priced like a render of those seconds"
        ),
    )
    preview_seconds: PreviewSeconds | None = Field(
        default=None,
        description=(
            f"Seconds a preview covers, more than 0 and at most {PREVIEW_MAX_SECONDS:g} "
            f"(default {PREVIEW_DEFAULT_SECONDS:g}); a shorter clip is previewed whole. "
            "Only with preview: true"
        ),
        examples=[3],
    )

    @model_validator(mode="after")
    def _preview_seconds_needs_preview(self) -> JobCreateIn:
        if self.preview_seconds is not None and not self.preview:
            raise ValueError("preview_seconds is only for a preview; send preview: true with it")
        return self

    def preview_length(self) -> float | None:
        """The seconds to preview, None for a full render."""
        if not self.preview:
            return None
        return PREVIEW_DEFAULT_SECONDS if self.preview_seconds is None else self.preview_seconds

    output: OutputIn | None = Field(
        default=None,
        description="Output container, codec, quality and sound; omitted: mp4, h264, CRF 18, "
        "sound copied",
    )
    playback_fps: int | None = Field(
        default=None,
        ge=24,
        le=60,
        description=(
            "Slow motion: the frames synthesized at target_fps play back at this rate "
            "(24-60, at most target_fps), so 4 s rendered at 240 and played at 30 lasts 32 s. "
            "The price still follows target_fps and the source's length. Slow motion has no "
            "sound: the source's audio is dropped. Equal to target_fps: normal speed, with sound."
        ),
        examples=[30],
    )


class JobCreatedOut(RowModel):
    """Read off the service's AcceptedJob: the job's fields, and the balance after it."""

    job_id: str = Field(validation_alias=AliasPath("job", "id"))
    project_id: str = Field(validation_alias=AliasPath("job", "project_id"))
    live_status: JobStatus = Field(validation_alias=AliasPath("job", "status"))
    charged_xeconds: int = Field(validation_alias=AliasPath("job", "charged_xeconds"))
    band: str = Field(validation_alias=AliasPath("job", "band"))
    multiplier: int = Field(validation_alias=AliasPath("job", "multiplier"))
    payment_kind: CreditPool = Field(validation_alias=AliasPath("job", "payment_kind"))
    watermarked: bool = Field(validation_alias=AliasPath("job", "watermarked"))
    preview: bool = Field(default=False, description="Only the first preview_seconds render")
    preview_seconds: float | None = Field(default=None, description="Null for a full render")
    balance: BalanceOut = Field(description="Balance after this charge")


# --- shares -----------------------------------------------------------------------------------


class ShareOut(BaseModel):
    token: str
    url: str = Field(description="JSON view for API clients: GET /share/{token}")
    page_url: str = Field(description="HTML review page to send to people: /s/{token}")
    project_id: str
    created_at: datetime


class SharedFileOut(RowModel):
    file_id: str = Field(validation_alias="id")
    role: FileRole
    filename: str
    content_type: str
    size_bytes: int | None
    duration_sec: float | None
    fps: float | None
    width: int | None
    height: int | None
    url: str


class SharedProjectOut(BaseModel):
    name: str
    created_at: datetime
    files: list[SharedFileOut]


JobOut.model_rebuild()
ProjectOut.model_rebuild()
