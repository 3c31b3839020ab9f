"""CPU priority and core count of Reframe's own processes, so a render never starves the API.

Ray starts every worker process at niceness 15 (its `worker_niceness`), the API's Serve replicas
and the render actors alike. On a machine that both serves and renders (a laptop, a small
head node) that made polls wait behind interpolation: the render keeps every core busy and the
replica got an equal share at best. So the API replica asks for the default priority (0) and
the render side asks for the lowest (19).

Linux keeps niceness per thread, and a new thread inherits it from the thread that starts it;
the helpers below therefore renice every thread the process has, and threads started later
(torch's pool, FFmpeg's codec threads, uvicorn's) follow.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

API_NICENESS = 0
RENDER_NICENESS = 19


def available_cpus() -> int:
    """Cores this process may run on (cgroup/affinity aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def set_niceness(value: int) -> bool:
    """Renice every thread of this process to `value`. True when all of them took it.

    Raising niceness is always allowed; lowering it (what the API asks for, from Ray's 15) needs
    CAP_SYS_NICE or a matching RLIMIT_NICE, and without them the process keeps its priority.
    """
    if not hasattr(os, "setpriority"):
        return False
    try:
        thread_ids = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: the setting is per process there
        thread_ids = [0]
    complete = True
    for tid in thread_ids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, value)
        except PermissionError:
            complete = False
        except ProcessLookupError:
            pass  # the thread ended in the meantime
    return complete


def prefer_this_process() -> None:
    """For the API replica: take the default CPU priority back from Ray's worker niceness."""
    if os.getpriority(os.PRIO_PROCESS, 0) <= API_NICENESS:
        return
    if not set_niceness(API_NICENESS):
        log.info(
            "the API replica keeps niceness %d (lowering it needs CAP_SYS_NICE); renders still "
            "run at %d below it",
            os.getpriority(os.PRIO_PROCESS, 0),
            RENDER_NICENESS,
        )


def yield_to_the_api() -> None:
    """For render processes (the Ray job driver and its actors): lowest CPU priority."""
    set_niceness(RENDER_NICENESS)
