"""Python client for the Reframe API: `Reframe` (blocking) and `AsyncReframe` (asyncio).

from reframe_client import Reframe

with Reframe(api_key="rf_live_...", base_url="http://127.0.0.1:8000") as client:
    result = client.render("clip.mp4", target_fps=60, output="smooth.mp4")
    print(result.job.live_status, result.output)
"""

from reframe_client._core import VERSION, RenderResult, Route
from reframe_client.aio import AsyncReframe
from reframe_client.client import Reframe
from reframe_client.errors import (
    APIConnectionError,
    APIError,
    Conflict,
    Forbidden,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    RateLimited,
    ReframeError,
    RenderFailed,
    ServerError,
    TooLarge,
    Unauthorized,
    UnexpectedResponse,
    WaitTimeout,
)
from reframe_client.models import Job, JobStatus

__version__ = VERSION

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncReframe",
    "Conflict",
    "Forbidden",
    "InsufficientCredits",
    "InvalidRequest",
    "Job",
    "JobStatus",
    "NotFound",
    "RateLimited",
    "Reframe",
    "ReframeError",
    "RenderFailed",
    "RenderResult",
    "Route",
    "ServerError",
    "TooLarge",
    "Unauthorized",
    "UnexpectedResponse",
    "WaitTimeout",
    "__version__",
]
