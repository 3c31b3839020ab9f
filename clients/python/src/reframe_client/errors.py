"""Typed errors. Every failure the client raises is a `ReframeError`.

HTTP errors are chosen by status code from the API's `{"detail": "..."}` bodies, so a caller
can `except InsufficientCredits:` instead of comparing numbers; `detail` is the server's own
sentence, which says what to do next.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reframe_client.models import Job

__all__ = [
    "APIConnectionError",
    "APIError",
    "Conflict",
    "Forbidden",
    "InsufficientCredits",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "ReframeError",
    "RenderFailed",
    "ServerError",
    "TooLarge",
    "Unauthorized",
    "UnexpectedResponse",
    "WaitTimeout",
]


class ReframeError(Exception):
    """Base of everything this package raises."""


class APIError(ReframeError):
    """The API (or the storage behind a signed URL) answered with an error status."""

    status_code: int

    def __init__(self, status_code: int, detail: str, *, method: str = "", url: str = "") -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.method = method
        self.url = url

    def __str__(self) -> str:
        where = f" ({self.method} {self.url})" if self.method else ""
        return f"{self.status_code}: {self.detail}{where}"


class InvalidRequest(APIError):
    """400: the body or parameters were refused; `detail` names the field."""


class Unauthorized(APIError):
    """401: the API key is missing, wrong, or was replaced by a newer one."""


class InsufficientCredits(APIError):
    """402: the balance does not cover the render; buy or be granted more xeconds."""


class Forbidden(APIError):
    """403: the resource belongs to another account, or a signed URL is invalid or expired."""


class NotFound(APIError):
    """404: no such project, job, file or share token (or nothing uploaded under a key)."""


class Conflict(APIError):
    """409: the job already ended, so it cannot change any more."""


class TooLarge(APIError):
    """413: the upload exceeds the size or duration limit."""


class RateLimited(APIError):
    """429: too many requests for this key; `retry_after` is the server's wait in seconds."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        retry_after: float | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(status_code, detail, method=method, url=url)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server failed. Reads are retried automatically before this is raised."""


class APIConnectionError(ReframeError):
    """The request never got an HTTP answer (refused, reset, timed out), even after retries."""


class UnexpectedResponse(ReframeError):
    """A success answer whose body is not what /openapi.json promises."""


class WaitTimeout(ReframeError):
    """`wait(..., timeout=)` ran out before the job ended; the job itself goes on."""

    def __init__(self, message: str, job: Job) -> None:
        super().__init__(message)
        self.job = job


class RenderFailed(ReframeError):
    """The job ended `failed` (or `cancelled`); what was charged for it is refunded."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.status = job.live_status.value
        self.error = job.error or job.live_status.value
        self.refunded_xeconds = job.refunded_xeconds
        super().__init__(
            f"job {job.job_id} {self.status}: {self.error} "
            f"({job.refunded_xeconds} of {job.charged_xeconds} xeconds refunded)"
        )


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    402: InsufficientCredits,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    429: RateLimited,
}


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` in seconds; only the delta-seconds form (what this API sends)."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def detail_of(body: bytes, status_code: int) -> str:
    """The `detail` sentence of an error body, or the best text there is."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict) and "detail" in data:
        detail = data["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)
    if text:
        # Not this API's JSON (an S3 XML error, a proxy's HTML page): keep it short.
        return text[:500]
    return f"HTTP {status_code} with an empty body"


def error_for(
    status_code: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    method: str = "",
    url: str = "",
) -> APIError:
    """The typed error for one error answer."""
    detail = detail_of(body, status_code)
    if status_code == 429:
        return RateLimited(
            status_code,
            detail,
            retry_after=retry_after_seconds(headers),
            method=method,
            url=url,
        )
    cls = _BY_STATUS.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else APIError
    return cls(status_code, detail, method=method, url=url)
