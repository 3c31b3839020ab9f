"""Previews: the first seconds of a clip at the chosen settings, always watermarked.

A preview lets a customer check the look of a render before paying for the whole clip. Each
account gets `Settings.preview_free_per_day` free previews per UTC day; later ones that day
cost what a render of those seconds costs (ceil(seconds) x band multiplier), paid, refunded and
watermarked like any job.

The allowance is counted from the job rows, not kept in a counter: a free preview is the only
job accepted with a zero charge (the jobs CHECK constraint allows 0 since migration 0009), so
"free previews today" is one indexed count over the account's jobs of the day. A failed free
preview is not counted (its slot comes back, as a failed paid job's xeconds do). Callers count
while holding the account lock (`reframe.db.session.lock_account`), so two requests for the
last free slot are serialised and the second one sees the first one's row.
"""

from __future__ import annotations

import math
from datetime import datetime, time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reframe.config import Settings
from reframe.db.base import utcnow
from reframe.db.models import Job, JobStatus
from reframe.errors import InvalidInput
from reframe.services import pricing

DEFAULT_SECONDS = 3.0
MAX_SECONDS = 5.0


def check_seconds(seconds: float | None) -> float:
    """The preview length to render: the default when not given; 400 outside (0, 5]."""
    if seconds is None:
        return DEFAULT_SECONDS
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_SECONDS:
        raise InvalidInput(
            f"preview_seconds must be more than 0 and at most {MAX_SECONDS:g} seconds; got "
            f"{seconds:g}. Ask for a shorter preview, or render the whole clip without preview."
        )
    return float(seconds)


def rendered_seconds(seconds: float, duration_sec: float) -> float:
    """How much of the clip a preview covers: the asked seconds, or all of a shorter clip."""
    return min(seconds, duration_sec)


def day_start(now: datetime) -> datetime:
    """Midnight UTC of `now`'s day: the allowance resets there."""
    return datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)


def free_used_today(session: Session, account_id: str, now: datetime | None = None) -> int:
    """Free previews the account has started since midnight UTC, failed ones excepted."""
    since = day_start(now or utcnow())
    count = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(
            Job.account_id == account_id,
            Job.created_at >= since,
            Job.charged_xeconds == 0,
            Job.status != JobStatus.FAILED,
        )
    )
    return int(count or 0)


def free_left_today(
    session: Session, account_id: str, settings: Settings, now: datetime | None = None
) -> int:
    return max(0, settings.preview_free_per_day - free_used_today(session, account_id, now))


def quote(
    seconds: float, duration_sec: float, source_fps: float, target_fps: float, settings: Settings
) -> pricing.Quote:
    """The paid price of a preview of `seconds` of a clip: a render of the seconds it covers.

    The same checks as the full job (length limit 413, target fps 400), so a preview never
    succeeds where the render it previews would be refused.
    """
    pricing.check_duration(duration_sec, settings)
    return pricing.require_quote(
        rendered_seconds(seconds, duration_sec), source_fps, target_fps, settings
    )


def render_option(seconds: float) -> dict[str, float]:
    """The job's `render_options["preview"]` value (absent means a full render)."""
    return {"seconds": seconds}


def preview_seconds_of(render_options: dict[str, object] | None) -> float | None:
    """The preview length a job was accepted with, or None for a full render."""
    preview = (render_options or {}).get("preview")
    if not isinstance(preview, dict):
        return None
    seconds = preview.get("seconds")
    return float(seconds) if isinstance(seconds, int | float) else None
