"""Ray job entry point: render a job or a local file on the Ray cluster this runs in.

    python pipelines/render.py --input clip.mp4 --target-fps 60 -o /abs/path/out.mp4
    python pipelines/render.py --job-id JOB_ID
    ray job submit --working-dir . -- python pipelines/render.py --input clip.mp4 ...

All logic lives in `reframe.cli.driver` so that it is importable, typed and tested.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    # `ray job submit --working-dir .` runs this file from an unpacked copy of the checkout; the
    # package may not be installed there, so the checkout itself goes first on the path.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from reframe.cli.driver import main

    # As a process of its own, this driver yields the CPU to the API (reframe.sched).
    sys.exit(main(lower_priority=True))
