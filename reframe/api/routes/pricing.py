"""Prices: the public tariff and estimates, and the estimate for an uploaded video."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter

from reframe.api.deps import CurrentAccount, SessionDep, SettingsDep, StorageDep
from reframe.api.errors import error_responses
from reframe.api.presenters import Overlay
from reframe.api.routes.me import balance_out
from reframe.api.schemas import (
    BandOut,
    CreditPackOut,
    EstimateIn,
    EstimateOut,
    EstimateVideoIn,
    EstimateVideoOut,
    FreeCreditPolicyOut,
    LimitsOut,
    OptionQuoteOut,
    PreviewPolicyOut,
    PricingConfigOut,
    VideoInfoOut,
    VideoOptionQuoteOut,
)
from reframe.config import Settings
from reframe.db.models import CreditPool
from reframe.errors import InsufficientCredits
from reframe.services import jobs, ledger, ownership, previews, pricing, uploads
from reframe.video import timing

router = APIRouter(prefix="/pricing", tags=["pricing"])


def _option(q: pricing.Quote) -> OptionQuoteOut:
    return OptionQuoteOut(
        target_fps=int(q.target_fps),
        allowed=q.allowed,
        band=q.band,
        multiplier=q.multiplier,
        charged_xeconds=q.charged_xeconds,
        reason=q.reason,
    )


def _quotes(
    duration_sec: float,
    source_fps: float,
    options: list[int],
    settings: Settings,
    preview_seconds: float | None = None,
) -> list[pricing.Quote]:
    """Each option's paid price: of the whole clip, or of a preview of its first seconds."""
    over = duration_sec > settings.max_duration_sec
    priced = (
        duration_sec
        if preview_seconds is None
        else previews.rendered_seconds(preview_seconds, duration_sec)
    )
    out = []
    for fps in options:
        q = pricing.quote(priced, source_fps, fps, settings)
        if over and q.allowed:
            q = pricing.Quote(
                target_fps=fps,
                allowed=False,
                band=q.band,
                multiplier=q.multiplier,
                charged_xeconds=q.charged_xeconds,
                reason=f"Launch limit is {settings.max_duration_sec:g}s per video.",
            )
        out.append(q)
    return out


@router.get(
    "/config",
    response_model=PricingConfigOut,
    summary="Read public pricing bands, packs, and upload limits",
    responses=error_responses(500),
)
def pricing_config(settings: SettingsDep) -> PricingConfigOut:
    return PricingConfigOut(
        formula="charged_xeconds = ceil(duration_sec) x band multiplier",
        bands=[BandOut.model_validate(b) for b in pricing.BANDS],
        credit_packs=[CreditPackOut(**p.model_dump()) for p in settings.credit_packs],
        limits=LimitsOut.model_validate(
            Overlay(
                settings,
                source_fps_decimals=timing.SOURCE_FPS_DECIMALS,
                source_fps_rule=timing.source_fps_rule(),
            )
        ),
        free_credits=FreeCreditPolicyOut(
            signup_xeconds=settings.free_xeconds_on_signup,
            free_renders_watermarked=True,
            paid_renders_clean=True,
            description=(
                f"New accounts receive {settings.free_xeconds_on_signup} free xeconds, once per "
                "email address (signing up again after closing an account gives none). A job is "
                "paid from paid xeconds when they cover it (clean output), otherwise from free "
                "xeconds (watermarked output)."
            ),
        ),
        previews=PreviewPolicyOut(
            free_per_day=settings.preview_free_per_day,
            default_seconds=previews.DEFAULT_SECONDS,
            max_seconds=previews.MAX_SECONDS,
            watermarked=True,
            formula="charged_xeconds = ceil(preview_seconds) x band multiplier",
            description=(
                'POST /jobs with "preview": true renders the first preview_seconds '
                f"(default {previews.DEFAULT_SECONDS:g}, at most {previews.MAX_SECONDS:g}) "
                "with the same settings, watermarked. The first "
                f"{settings.preview_free_per_day} previews of each UTC day are free; later "
                "ones are charged like a render of those seconds and refunded if they fail."
            ),
        ),
    )


@router.post(
    "/estimate",
    response_model=EstimateOut,
    summary="Estimate charged xeconds from known duration/FPS metadata",
    responses=error_responses(400, 500),
)
def estimate(body: EstimateIn, settings: SettingsDep) -> EstimateOut:
    seconds = body.preview_seconds
    quotes = _quotes(body.duration_sec, body.source_fps, body.options(), settings, seconds)
    covered = (
        body.duration_sec
        if seconds is None
        else previews.rendered_seconds(seconds, body.duration_sec)
    )
    return EstimateOut(
        duration_sec=body.duration_sec,
        billable_seconds=pricing.billable_seconds(covered),
        source_fps=body.source_fps,
        options=[_option(q) for q in quotes],
        preview_seconds=seconds,
    )


@router.post(
    "/estimate-video",
    response_model=EstimateVideoOut,
    summary="Probe an uploaded file and estimate one or more output FPS choices",
    responses=error_responses(400, 401, 403, 404, 410, 413, 500),
)
def estimate_video(
    body: EstimateVideoIn,
    account: CurrentAccount,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> EstimateVideoOut:
    file = ownership.owned_upload(session, account, body.r2_key)
    probe = uploads.verify_input(session, storage, settings, file)
    balance = ledger.balance(session, account.id)
    duration, fps = float(probe["duration_sec"]), float(probe["fps"])
    seconds = body.preview_seconds
    # What POST /jobs would charge now: a preview is free while today's allowance lasts.
    free_left = None if seconds is None else previews.free_left_today(session, account.id, settings)
    options = []
    for q in _quotes(duration, fps, body.target_fps_options, settings, seconds):
        if free_left and q.allowed:
            q = dataclasses.replace(q, charged_xeconds=0)
        pool: CreditPool | None = None
        if q.allowed and q.charged_xeconds == 0:
            pool = CreditPool.FREE
        elif q.allowed and q.charged_xeconds is not None:
            try:
                pool = jobs.choose_pool(balance, q.charged_xeconds)
            except InsufficientCredits:
                pool = None
        options.append(
            VideoOptionQuoteOut(
                **_option(q).model_dump(),
                covered_by_balance=pool is not None,
                payment_kind=pool,
                watermarked=None
                if pool is None
                else (pool is CreditPool.FREE or seconds is not None),
            )
        )
    return EstimateVideoOut(
        r2_key=file.storage_key,
        project_id=file.project_id,
        video=VideoInfoOut(
            duration_sec=duration,
            fps=fps,
            fps_fraction=probe.get("fps_fraction"),
            variable_frame_rate=bool(probe.get("variable_frame_rate")),
            header_fps=probe.get("header_fps"),
            width=int(probe["width"]),
            height=int(probe["height"]),
            codec=str(probe["codec"]),
            has_audio=bool(probe.get("has_audio")),
            audio_codec=probe.get("audio_codec"),
            frame_count=probe.get("frame_count"),
            size_bytes=file.size_bytes,
        ),
        probe=probe,
        options=options,
        balance=balance_out(balance),
        preview_seconds=seconds,
        free_previews_left=free_left,
    )
