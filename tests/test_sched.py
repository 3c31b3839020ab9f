"""Process priority (reframe.sched), checked in child processes so the test runner keeps its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reframe.sched import RENDER_NICENESS


def thread_niceness(pid: int) -> dict[int, int]:
    """Niceness of every thread of `pid`, read from /proc (field 19 of each task's stat)."""
    out: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
        out[int(task.name)] = int(fields[16])
    return out


def run_child(code: str, *, start_niceness: int = 0) -> str:
    prelude = f"import os\nos.setpriority(os.PRIO_PROCESS, 0, {start_niceness})\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="per-thread niceness is read from Linux /proc"
)


def test_yielding_renices_threads_that_already_exist_and_those_started_later() -> None:
    out = run_child(
        """
        import threading, time
        from reframe.sched import yield_to_the_api
        from tests.test_sched import thread_niceness
        stop = threading.Event()
        early = threading.Thread(target=stop.wait)
        early.start()
        yield_to_the_api()
        late = threading.Thread(target=stop.wait)
        late.start()
        values = thread_niceness(os.getpid())
        stop.set()
        print(len(values), sorted(set(values.values())))
        """
    )
    assert out == f"3 [{RENDER_NICENESS}]"


@pytest.mark.skipif(os.geteuid() != 0, reason="lowering niceness needs root or CAP_SYS_NICE")
def test_the_api_takes_back_the_default_priority_from_ray_worker_niceness() -> None:
    out = run_child(
        """
        import threading
        from reframe.sched import prefer_this_process
        from tests.test_sched import thread_niceness
        stop = threading.Event()
        threading.Thread(target=stop.wait).start()
        prefer_this_process()
        values = thread_niceness(os.getpid())
        stop.set()
        print(sorted(set(values.values())))
        """,
        start_niceness=15,  # what Ray gives every worker
    )
    assert out == "[0]"


def test_without_privilege_the_api_keeps_its_niceness_and_says_why() -> None:
    out = run_child(
        """
        import logging, resource, sys
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
        from reframe.sched import prefer_this_process
        # Drop the right to lower niceness: RLIMIT_NICE 0, and no root capabilities after setuid.
        resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
        if os.geteuid() == 0:
            os.setuid(65534)
        prefer_this_process()
        print(os.getpriority(os.PRIO_PROCESS, 0))
        """,
        start_niceness=15,
    )
    message, niceness = out.splitlines()
    assert niceness == "15"
    assert "keeps niceness 15" in message
    assert "CAP_SYS_NICE" in message
