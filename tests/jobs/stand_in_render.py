"""A render driver for the dispatcher's tests: the real lifecycle (`run_attempt`), a trivial
renderer whose behaviour `REFRAME_TEST_RENDER_MODE` picks, so crashes happen on cue.

It is a separate process started by the dispatcher's launcher exactly as pipelines/render.py
is, so killing it is a real driver death. The real pipeline is exercised in tests/pipeline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reframe.config import Settings
from reframe.db import make_engine, make_sessionmaker
from reframe.db.models import File, FileRole, FileStatus, Job
from reframe.errors import InvalidMedia
from reframe.jobs.driver import ProgressFn, run_attempt

FRAMES = 48


def render(job: Job, progress: ProgressFn, attempt: int, settings: Settings) -> str:
    mode = os.environ.get("REFRAME_TEST_RENDER_MODE", "ok")
    pid_dir = os.environ.get("REFRAME_TEST_PID_DIR")
    if pid_dir:  # lets a test kill exactly this process later
        Path(pid_dir, f"{job.id}-{attempt}.pid").write_text(str(os.getpid()))
    if mode.endswith("-first"):  # misbehave on the first attempt only
        mode = mode.removesuffix("-first") if attempt == 1 else "ok"
    step = float(os.environ.get("REFRAME_TEST_RENDER_STEP_SEC", "0.1"))
    if mode == "invalid":
        raise InvalidMedia("decode failed: the upload is truncated after frame 12")
    for done in range(12, FRAMES + 1, 12):
        time.sleep(step)
        progress(done, FRAMES, done // 12, FRAMES // 12)
        if mode == "crash":
            os._exit(3)  # like a driver killed mid-render: no cleanup, no settling
        if mode == "hang":
            time.sleep(3600)
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_sessionmaker(engine)() as session:
            output = File(
                project_id=job.project_id,
                account_id=job.account_id,
                role=FileRole.OUTPUT,
                status=FileStatus.READY,
                storage_key=f"outputs/{job.id}/attempt-{attempt}/out.mp4",
                filename="out.mp4",
                content_type="video/mp4",
            )
            session.add(output)
            session.commit()
            return output.id
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--attempt", type=int, required=True)
    args = parser.parse_args()
    settings = Settings()
    return run_attempt(
        settings,
        args.job_id,
        args.attempt,
        lambda job, progress: render(job, progress, args.attempt, settings),
    )


if __name__ == "__main__":
    sys.exit(main())
