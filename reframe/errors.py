"""Domain exceptions. Each carries the HTTP status the API maps it to, once, in api/errors.py.

Layers below the API (services, storage, video, engine) raise these with a message a user can
act on; they never import FastAPI.
"""

from __future__ import annotations


class ReframeError(Exception):
    """Base of every expected failure. `status_code` is used only by the HTTP layer."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ReframeError):
    """The request or its parameters are wrong (400)."""

    status_code = 400


class InvalidMedia(InvalidInput):
    """The file is not a usable video (not video, truncated, no frames, absurd size...) (400)."""


class Unauthorized(ReframeError):
    """Missing or invalid API key (401)."""

    status_code = 401


class InsufficientCredits(ReframeError):
    """The balance does not cover the charge (402)."""

    status_code = 402

    def __init__(self, message: str, *, needed: int, available: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available


class Forbidden(ReframeError):
    """The resource belongs to another account (403)."""

    status_code = 403


class AccountDisabled(Forbidden):
    """The account was disabled by an operator (`reframe accounts disable`) (403)."""

    def __init__(self) -> None:
        super().__init__(
            "This account is disabled by the operator of this service, so its API key and "
            "studio sessions are refused. Contact the operator to have it enabled again."
        )


class NotFound(ReframeError):
    """Project, job, file, key or share token not found (404)."""

    status_code = 404


class TooLarge(ReframeError):
    """Upload exceeds the size or duration launch limits (413)."""

    status_code = 413


class Gone(ReframeError):
    """The file existed but its bytes were deleted by the sweeper (abandoned or expired) (410)."""

    status_code = 410


class Conflict(ReframeError):
    """The request conflicts with the current state (409), e.g. cancelling a finished job."""

    status_code = 409


class ObjectChanged(Conflict):
    """A stored object is not the exact one that was pinned (other bytes, another version)."""


class RateLimited(ReframeError):
    """Too many requests for this key (429)."""

    status_code = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WeightsError(ReframeError):
    """Model weights are missing, corrupt or do not match the network."""


class RenderError(ReframeError):
    """A render failed; the message is shown to the job's owner."""
