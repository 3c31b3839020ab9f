"""A job's render reads its input the way the upload was probed (issue 12, item 9).

The job carries the container format the probe found; the render path forces it, and opens
under the probe's whitelists, so bytes swapped in after pricing (here an ffconcat list naming a
clip next to it) are refused instead of read. No Ray: this is the render's first step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reframe.engine.render_core import plan_render
from reframe.errors import InvalidMedia
from reframe.jobs.driver import load_job
from reframe.storage import build_storage
from tests.fixtures.app import make_settings
from tests.fixtures.db import TestDatabase
from tests.fixtures.jobs import accept_uploaded_job
from tests.fixtures.media import make_clip, moving_square_frames, write_video


def test_the_job_renders_its_input_as_the_probed_container(
    db: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, db)
    clip = write_video(tmp_path / "clip.mkv", moving_square_frames(24, width=64, height=48))
    accepted = accept_uploaded_job(db, settings, clip, target_fps=48)
    job = load_job(db.sessionmaker, accepted.job_id)
    assert job is not None
    demuxer = (job.input_file.probe or {}).get("container")
    assert demuxer == "matroska,webm"

    storage = build_storage(settings)
    assert job.input_key is not None  # the pinned copy the render reads
    with storage.local_path(job.input_key) as source:
        plan = plan_render(source, job.target_fps, demuxer=demuxer)
        assert len(plan.timeline) == 48

        # The stored object is swapped for a concat list pointing at another local file.
        make_clip(source.parent / "victim.mp4", frames=24)
        source.write_text("ffconcat version 1.0\nfile 'victim.mp4'\n")
        with pytest.raises(InvalidMedia, match="not the kind of file"):
            plan_render(source, job.target_fps, demuxer=demuxer)
        # Even with no probed format to insist on, the whitelist refuses it.
        with pytest.raises(InvalidMedia, match="playlists"):
            plan_render(source, job.target_fps)
