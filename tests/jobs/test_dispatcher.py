"""The dispatcher on PostgreSQL with real render processes (tests/jobs/stand_in_render.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reframe.config import Settings
from reframe.db import make_engine, make_sessionmaker
from reframe.db.models import File, Job, JobEvent, JobStatus, LedgerEntry, LedgerReason
from reframe.jobs.dispatcher import Dispatcher, time_limit_sec
from reframe.jobs.launchers import SubprocessLauncher
from reframe.jobs.lifecycle import JobLifecycle
from reframe.jobs.progress import MemoryProgressStore
from reframe.services import ledger
from tests.jobs.factories import accepted_job, account_with_credit

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STAND_IN = Path(__file__).with_name("stand_in_render.py")


def stand_in_command(job_id: str, attempt: int, _options: object) -> list[str]:
    return [sys.executable, str(STAND_IN), "--job-id", job_id, "--attempt", str(attempt)]


@pytest.fixture
def db(fresh_pg_url: str) -> Iterator[tuple[str, sessionmaker[Session]]]:
    engine = make_engine(fresh_pg_url)
    yield fresh_pg_url, make_sessionmaker(engine)
    engine.dispose()


Factory = Callable[..., tuple[Dispatcher, SubprocessLauncher]]


@pytest.fixture
def make_dispatcher(db: tuple[str, sessionmaker[Session]], tmp_path: Path) -> Iterator[Factory]:
    url, sessions = db
    launchers: list[SubprocessLauncher] = []

    def make(mode: str = "ok", **kwargs: object) -> tuple[Dispatcher, SubprocessLauncher]:
        launcher = SubprocessLauncher(
            Settings(database_url=url),
            command=stand_in_command,
            log_dir=tmp_path / "logs",
            extra_env={"REFRAME_TEST_RENDER_MODE": mode},
        )
        launchers.append(launcher)
        options: dict[str, object] = {"capacity": 1, "lease_sec": 30.0, "max_attempts": 2}
        options.update(kwargs)
        lifecycle = JobLifecycle(sessions, progress=MemoryProgressStore())
        return Dispatcher(sessions, launcher, lifecycle=lifecycle, **options), launcher  # type: ignore[arg-type]

    yield make
    for launcher in launchers:  # never leave a render process behind
        for proc, _log in list(launcher._procs.values()):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def job_of(sessions: sessionmaker[Session], job_id: str) -> Job:
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.expunge(job)
        return job


def history(sessions: sessionmaker[Session], job_id: str) -> list[tuple[str, str | None]]:
    with sessions() as s:
        rows = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        return [(e.status.value, e.message) for e in rows]


def refunds(sessions: sessionmaker[Session], job_id: str) -> list[int]:
    with sessions() as s:
        return [
            e.delta
            for e in s.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.job_id == job_id, LedgerEntry.reason == LedgerReason.JOB_REFUND
                )
            )
        ]


def until(
    dispatcher: Dispatcher, done: Callable[[], bool], timeout: float = 120.0, tick: bool = True
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick:
            dispatcher.tick()
        if done():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not reached in {timeout}s")


def ended(sessions: sessionmaker[Session], job_id: str) -> Callable[[], bool]:
    return lambda: job_of(sessions, job_id).status.is_terminal


def unlaunchable(url: str, tmp_path: Path) -> SubprocessLauncher:
    """A launcher whose every submission fails, like a cluster that cannot take renders."""
    return SubprocessLauncher(
        Settings(database_url=url),
        command=lambda job, attempt, options: [str(tmp_path / "no-such-interpreter")],
        log_dir=tmp_path,
    )


def test_capacity_queues_the_rest_as_no_workers_then_runs_them(
    db: tuple[str, sessionmaker[Session]], make_dispatcher: Factory
) -> None:
    _, sessions = db
    account = account_with_credit(sessions, paid=100)
    first = accepted_job(sessions, account, charge=5)
    second = accepted_job(sessions, account, charge=5)
    dispatcher, _ = make_dispatcher("ok", capacity=1)
    report = dispatcher.tick()
    assert report.claimed == [first]
    assert job_of(sessions, first).status is JobStatus.COLD_START
    assert job_of(sessions, second).status is JobStatus.NO_WORKERS
    until(dispatcher, ended(sessions, second))
    for job_id in (first, second):
        job = job_of(sessions, job_id)
        assert job.status is JobStatus.DONE
        assert (job.progress, job.frames_done, job.frames_total) == (1.0, 48, 48)
        assert job.lease_owner is None
        assert job.attempts == 1
        with sessions() as s:
            output = s.get(File, job.output_file_id)
            assert output is not None
            assert output.storage_key == f"outputs/{job_id}/attempt-1/out.mp4"
        assert refunds(sessions, job_id) == []
    statuses = [s for s, _ in history(sessions, second)]
    assert statuses == ["queued", "no_workers", "cold_start", "processing", "done"]
    with sessions() as s:
        assert ledger.balance(s, account.id).paid == 90


def test_a_driver_that_crashes_every_time_is_failed_and_refunded_once(
    db: tuple[str, sessionmaker[Session]],
    make_dispatcher: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, sessions = db
    account = account_with_credit(sessions, paid=20)
    job_id = accepted_job(sessions, account, charge=7)
    dispatcher, _ = make_dispatcher("crash", max_attempts=2)
    until(dispatcher, ended(sessions, job_id))
    job = job_of(sessions, job_id)
    assert job.status is JobStatus.FAILED
    assert job.attempts == 2
    assert "(2 attempt(s))" in (job.error or "")
    # The exit code is operator detail: it goes to the log, not to the customer.
    assert "exited with" not in (job.error or "")
    assert "exited with 3" in caplog.text
    assert refunds(sessions, job_id) == [7]
    messages = [m or "" for _, m in history(sessions, job_id)]
    assert any(m.startswith("attempt 1 lost") for m in messages)
    with sessions() as s:
        assert ledger.balance(s, account.id).paid == 20


def test_a_crashed_first_attempt_is_retried_into_its_own_output(
    db: tuple[str, sessionmaker[Session]], make_dispatcher: Factory
) -> None:
    _, sessions = db
    account = account_with_credit(sessions, paid=20)
    job_id = accepted_job(sessions, account, charge=7)
    dispatcher, _ = make_dispatcher("crash-first", max_attempts=2)
    until(dispatcher, ended(sessions, job_id))
    job = job_of(sessions, job_id)
    assert (job.status, job.attempts) == (JobStatus.DONE, 2)
    with sessions() as s:
        output = s.get(File, job.output_file_id)
        assert output is not None
        assert "attempt-2" in output.storage_key
    assert refunds(sessions, job_id) == []


def test_kill_9_of_the_driver_fails_and_refunds_when_no_attempts_remain(
    db: tuple[str, sessionmaker[Session]],
    make_dispatcher: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, sessions = db
    account = account_with_credit(sessions, paid=20)
    job_id = accepted_job(sessions, account, charge=6)
    dispatcher, launcher = make_dispatcher("hang", max_attempts=1)
    until(dispatcher, lambda: job_of(sessions, job_id).status is JobStatus.PROCESSING)
    pid = launcher.pid(dispatcher.running[job_id].submission_id)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    until(dispatcher, ended(sessions, job_id))
    job = job_of(sessions, job_id)
    assert job.status is JobStatus.FAILED
    assert "SIGKILL" in caplog.text  # operator detail: logged, not shown to the customer
    assert refunds(sessions, job_id) == [6]


def test_a_render_error_fails_at_once_without_retry(
    db: tuple[str, sessionmaker[Session]], make_dispatcher: Factory
) -> None:
    _, sessions = db
    account = account_with_credit(sessions, paid=20)
    job_id = accepted_job(sessions, account, charge=4)
    dispatcher, _ = make_dispatcher("invalid", max_attempts=3)
    until(dispatcher, ended(sessions, job_id))
    job = job_of(sessions, job_id)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert job.error == "decode failed: the upload is truncated after frame 12"
    assert refunds(sessions, job_id) == [4]


def test_cancel_stops_the_running_render(
    db: tuple[str, sessionmaker[Session]], make_dispatcher: Factory
) -> None:
    _, sessions = db
    account = account_with_credit(sessions, paid=20)
    job_id = accepted_job(sessions, account, charge=8)
    dispatcher, launcher = make_dispatcher("hang")
    until(dispatcher, lambda: job_of(sessions, job_id).status is JobStatus.PROCESSING)
    sid = dispatcher.running[job_id].submission_id
    _, settled = dispatcher.lifecycle.cancel(job_id, account.id)
    # 12 of 48 frames were rendered: a quarter of 8 xeconds is kept.
    assert settled.refunded == 6
    report = dispatcher.tick()
    assert report.stopped == [job_id]
    assert launcher.info(sid).state.value in ("failed", "succeeded")
    assert job_of(sessions, job_id).status is JobStatus.CANCELLED


def test_an_operator_fail_stops_the_running_render_and_refunds_it_once(
    db: tuple[str, sessionmaker[Session]], make_dispatcher: Factory
) -> None:
    _, sessions = db
    account = account_with_credit(sessions, paid=20)
    job_id = accepted_job(sessions, account, charge=8)
    dispatcher, launcher = make_dispatcher("hang")
    until(dispatcher, lambda: job_of(sessions, job_id).status is JobStatus.PROCESSING)
    sid = dispatcher.running[job_id].submission_id
    settled = dispatcher.lifecycle.operator_fail(job_id, "abusive input", operator="ops")
    assert (settled.changed, settled.refunded) == (True, 8)
    # The render would run on for nothing: the dispatcher stops it on its next tick.
    report = dispatcher.tick()
    assert report.stopped == [job_id]
    assert launcher.info(sid).state.value in ("failed", "succeeded")
    assert job_id not in dispatcher.running
    job = job_of(sessions, job_id)
    assert (job.status, job.refunded_xeconds) == (JobStatus.FAILED, 8)
    assert refunds(sessions, job_id) == [8]


def test_a_finished_render_is_reported_to_the_metrics_observer(
    db: tuple[str, sessionmaker[Session]], make_dispatcher: Factory
) -> None:
    from reframe.jobs.metrics import RenderObserver
    from reframe.metrics import ProcessMetrics

    _, sessions = db
    account = account_with_credit(sessions, paid=20)
    job_id = accepted_job(sessions, account, charge=4)
    metrics = ProcessMetrics()
    observer = RenderObserver(sessions, metrics)
    seen: list[tuple[str, int]] = []

    def on_done(job: str, attempt: int) -> None:
        seen.append((job, attempt))
        observer(job, attempt)

    dispatcher, _ = make_dispatcher("ok", on_done=on_done)
    until(dispatcher, lambda: bool(seen))
    assert seen == [(job_id, 1)]
    events = {status: at for status, at in _event_times(sessions, job_id)}
    render_seconds = (events["done"] - events["cold_start"]).total_seconds()
    first_frame = (events["processing"] - events["cold_start"]).total_seconds()
    registry = metrics.registry
    assert registry.get_sample_value("reframe_render_duration_seconds_count") == 1
    assert registry.get_sample_value("reframe_render_duration_seconds_sum") == pytest.approx(
        render_seconds
    )
    assert registry.get_sample_value(
        "reframe_render_time_to_first_frame_seconds_sum"
    ) == pytest.approx(first_frame)
    frames = job_of(sessions, job_id).frames_total
    assert registry.get_sample_value("reframe_render_frames_per_second_sum") == pytest.approx(
        frames / render_seconds
    )


def _event_times(sessions: sessionmaker[Session], job_id: str) -> list[tuple[str, datetime]]:
    with sessions() as s:
        rows = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        return [(e.status.value, e.at) for e in rows]


def test_the_reaper_stops_and_fails_a_render_over_its_time_limit(
    db: tuple[str, sessionmaker[Session]], make_dispatcher: Factory
) -> None:
    _, sessions = db
    account = account_with_credit(sessions, paid=20)
    job_id = accepted_job(sessions, account, charge=3)
    dispatcher, launcher = make_dispatcher("hang", time_base_sec=2.0, time_per_frame_sec=0.0)
    dispatcher.tick()
    sid = dispatcher.running[job_id].submission_id
    until(dispatcher, ended(sessions, job_id), timeout=30)
    job = job_of(sessions, job_id)
    assert job.status is JobStatus.FAILED
    assert "time limit" in (job.error or "")
    assert refunds(sessions, job_id) == [3]
    assert not launcher.info(sid).state.alive


def test_time_limit_grows_with_the_frame_count(
    db: tuple[str, sessionmaker[Session]],
) -> None:
    _, sessions = db
    account = account_with_credit(sessions, paid=20)
    job = job_of(sessions, accepted_job(sessions, account, duration_sec=10.0))
    assert time_limit_sec(job, 300, 2.0) == 300 + 2.0 * 600  # 10 s at 60 fps
    job.frames_total = 100
    assert time_limit_sec(job, 300, 2.0) == 500
    job.frames_total = None
    job.render_options = {"preview": {"seconds": 2.0}}  # only 2 s of it are rendered
    assert time_limit_sec(job, 300, 2.0) == 300 + 2.0 * 120


DISPATCHER_PROCESS = """
import sys, threading
sys.path.insert(0, {root!r})
from reframe.config import Settings
from reframe.db import make_engine, make_sessionmaker
from reframe.jobs.dispatcher import Dispatcher, run_loop
from reframe.jobs.launchers import SubprocessLauncher
from tests.jobs.test_dispatcher import stand_in_command
sessions = make_sessionmaker(make_engine({url!r}))
env = {{"REFRAME_TEST_RENDER_MODE": "hang-first", "REFRAME_TEST_PID_DIR": {pid_dir!r}}}
launcher = SubprocessLauncher(Settings(database_url={url!r}), command=stand_in_command,
                              extra_env=env)
d = Dispatcher(sessions, launcher, capacity=1, lease_sec=1.0, max_attempts=2, owner="doomed")
print("ready", flush=True)
run_loop(d, threading.Event(), poll_sec=0.1)
"""


def test_kill_9_of_the_dispatcher_is_recovered_by_its_successor(
    db: tuple[str, sessionmaker[Session]], make_dispatcher: Factory, tmp_path: Path
) -> None:
    url, sessions = db
    account = account_with_credit(sessions, paid=20)
    job_id = accepted_job(sessions, account, charge=5)
    root = str(Path(__file__).resolve().parents[2])
    script = DISPATCHER_PROCESS.format(root=root, url=url, pid_dir=str(tmp_path))
    doomed = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=root,
        start_new_session=True,
    )
    try:
        successor, _ = make_dispatcher("ok", lease_sec=1.0, max_attempts=2)
        until(
            successor,
            lambda: job_of(sessions, job_id).status is JobStatus.PROCESSING,
            tick=False,
        )
        assert job_of(sessions, job_id).lease_owner == "doomed"
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        until(successor, ended(sessions, job_id), timeout=60)
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait()
        # The doomed dispatcher's render (attempt 1, hanging) outlives it, as on a real node.
        orphan = tmp_path / f"{job_id}-1.pid"
        if orphan.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(orphan.read_text()), signal.SIGKILL)
    job = job_of(sessions, job_id)
    assert (job.status, job.attempts) == (JobStatus.DONE, 2)
    messages = [m or "" for _, m in history(sessions, job_id)]
    assert any("attempt 1 lost" in m and "lease" in m for m in messages), messages
    assert refunds(sessions, job_id) == []


def test_a_cluster_that_cannot_take_renders_leaves_jobs_waiting(
    db: tuple[str, sessionmaker[Session]], tmp_path: Path
) -> None:
    url, sessions = db
    account = account_with_credit(sessions, paid=20)
    job_id = accepted_job(sessions, account, charge=5)
    launcher = unlaunchable(url, tmp_path)
    dispatcher = Dispatcher(sessions, launcher, capacity=1, max_attempts=1)
    for _ in range(3):
        dispatcher.tick()
        dispatcher._submit_retry_at = 0.0  # skip the back-off between rounds
    job = job_of(sessions, job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.NO_WORKERS, 0, None)
    assert "render cluster is not ready" in (history(sessions, job_id)[-1][1] or "")
    assert refunds(sessions, job_id) == []
    # Once renders can start, the job runs on its first real attempt.
    dispatcher.launcher = SubprocessLauncher(
        Settings(database_url=url), command=stand_in_command, log_dir=tmp_path
    )
    until(dispatcher, ended(sessions, job_id))
    assert (job_of(sessions, job_id).status, job_of(sessions, job_id).attempts) == (
        JobStatus.DONE,
        1,
    )


def test_a_submission_that_raises_a_bug_fails_the_attempt_instead_of_waiting(
    db: tuple[str, sessionmaker[Session]], tmp_path: Path
) -> None:
    """Only "the cluster cannot take it now" means waiting; any other error from a submit is
    a lost attempt: retried while attempts remain, then failed and refunded once."""
    url, sessions = db
    account = account_with_credit(sessions, paid=20)
    job_id = accepted_job(sessions, account, charge=5)

    def broken(job: str, attempt: int, options: object) -> list[str]:
        raise TypeError("render_command() got an unexpected keyword argument")

    launcher = SubprocessLauncher(Settings(database_url=url), command=broken, log_dir=tmp_path)
    dispatcher = Dispatcher(sessions, launcher, capacity=1, max_attempts=2)
    dispatcher.tick()
    job = job_of(sessions, job_id)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 2)
    messages = [m or "" for _, m in history(sessions, job_id)]
    assert any("attempt 1 lost" in m and "could not be submitted" in m for m in messages)
    assert not any(status == "no_workers" for status, _ in history(sessions, job_id))
    assert refunds(sessions, job_id) == [5]
    with sessions() as s:
        assert ledger.balance(s, account.id).paid == 20


def test_a_job_waiting_past_the_queue_limit_is_failed_and_refunded_once(
    db: tuple[str, sessionmaker[Session]], tmp_path: Path
) -> None:
    from datetime import timedelta

    from reframe.db.base import utcnow

    url, sessions = db
    account = account_with_credit(sessions, paid=20)
    old = accepted_job(sessions, account, charge=5)
    recent = accepted_job(sessions, account, charge=5)
    with sessions() as s:  # accepted two hours ago, and the cluster never took it
        job = s.get(Job, old)
        assert job is not None
        job.created_at = utcnow() - timedelta(hours=2)
        s.commit()
    launcher = unlaunchable(url, tmp_path)
    dispatcher = Dispatcher(sessions, launcher, capacity=1, max_queue_wait_sec=3600)
    expired: list[str] = []
    for _ in range(3):
        expired += dispatcher.tick().expired
        dispatcher._submit_retry_at = 0.0
    assert expired == [old]
    failed = job_of(sessions, old)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert "No render capacity became free within 1 h" in failed.error
    assert refunds(sessions, old) == [5]
    assert job_of(sessions, recent).status is JobStatus.NO_WORKERS
    assert refunds(sessions, recent) == []
    with sessions() as s:
        assert ledger.balance(s, account.id).paid == 15


def test_heartbeats_keep_a_long_render_from_a_second_dispatcher(
    db: tuple[str, sessionmaker[Session]], make_dispatcher: Factory
) -> None:
    _, sessions = db
    account = account_with_credit(sessions, paid=20)
    job_id = accepted_job(sessions, account, charge=5)
    # The render takes several lease lengths; only heartbeats keep its lease fresh.
    owner, _ = make_dispatcher("ok", lease_sec=1.0, heartbeat_sec=0.2)
    owner.launcher._env["REFRAME_TEST_RENDER_STEP_SEC"] = "0.8"  # type: ignore[attr-defined]
    rival, _ = make_dispatcher("ok", lease_sec=1.0, heartbeat_sec=0.2)
    owner.tick()
    assert owner.running
    deadline = time.monotonic() + 120
    while not job_of(sessions, job_id).status.is_terminal:
        assert time.monotonic() < deadline
        owner.tick()
        report = rival.tick()
        assert report.lost == report.adopted == [], "the rival took over a live render"
        time.sleep(0.1)
    job = job_of(sessions, job_id)
    assert (job.status, job.attempts) == (JobStatus.DONE, 1)
