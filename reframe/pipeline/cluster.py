"""Joining the Ray cluster a render runs on.

Inside `ray job submit` (RAY_ADDRESS is set) or with an explicit address, the driver joins that
cluster; otherwise it joins a cluster running on this machine (`ray start --head`) if there is
one, and starts a private local one if not.
"""

from __future__ import annotations

import logging
import os

from reframe.errors import ReframeError, RenderError

log = logging.getLogger(__name__)


def connect_ray(address: str | None = None, *, local_cpus: int | None = None) -> bool:
    """Join or start Ray; True when this process started (and must stop) it.

    Authentication is decided by the cluster: Ray's own `RAY_AUTH_MODE` / `RAY_AUTH_TOKEN`
    variables or `~/.ray/auth_token`. A refusal is turned into instructions instead of a trace.
    """
    import ray

    if ray.is_initialized():  # e.g. a test session or a notebook already connected
        return False
    target = address or os.environ.get("RAY_ADDRESS")
    try:
        if target:
            ray.init(address=target, log_to_driver=True)
            return False
        try:
            ray.init(address="auto", log_to_driver=True)
            return False
        except ConnectionError:
            pass
        log.info("no running Ray cluster found; starting a local one")
        ray.init(address="local", num_cpus=local_cpus, include_dashboard=False)
        return True
    except ReframeError:
        raise
    except Exception as exc:
        text = str(exc)
        if "auth" in text.lower() or "token" in text.lower():
            raise RenderError(
                f"the Ray cluster refused this driver ({text.strip()[:200]}). It uses token "
                "authentication: run with RAY_AUTH_MODE=token and the cluster's token in "
                "RAY_AUTH_TOKEN or ~/.ray/auth_token (see `ray get-auth-token`)"
            ) from exc
        raise
