"""`pipelines/render.py --job-id`: a job accepted by the services, rendered on Ray into a stored,
registered output file, with status, progress and refunds through the job driver."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import select

from reframe.cli.driver import main
from reframe.config import Settings
from reframe.db.models import (
    File,
    FileRole,
    FileStatus,
    Job,
    JobStatus,
    LedgerEntry,
)
from reframe.storage import build_storage
from tests.fixtures.db import TestDatabase
from tests.fixtures.jobs import accept_uploaded_job
from tests.fixtures.media import make_clip

pytestmark = [pytest.mark.postgres, pytest.mark.ray]


def accepted_free_job(db: TestDatabase, settings: Settings, clip: Path) -> str:
    """A free-credit job as the API accepts it and the dispatcher claims it (attempt 1)."""
    return accept_uploaded_job(db, settings, clip, claim=True).job_id


@pytest.fixture
def job_settings(postgres_db: TestDatabase, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=postgres_db.url)


@pytest.mark.weights
def test_job_renders_into_a_registered_watermarked_output(
    ray_runtime: ModuleType, postgres_db: TestDatabase, job_settings: Settings, tmp_path: Path
) -> None:
    import av

    from reframe.video.encode import watermark_box

    clip = make_clip(tmp_path / "clip.mp4", frames=24, width=64, height=48, audio=True)
    job_id = accepted_free_job(postgres_db, job_settings, clip)

    code = main(
        ["--job-id", job_id, "--attempt", "1", "--chunk-frames", "8"], settings=job_settings
    )
    assert code == 0

    with postgres_db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.status is JobStatus.DONE
        assert job.watermarked
        assert job.frames_done == job.frames_total == 48
        output = session.get(File, job.output_file_id)
        assert output is not None
        assert (output.role, output.status, output.project_id) == (
            FileRole.OUTPUT,
            FileStatus.READY,
            job.project_id,
        )
        assert output.filename == "clip-48fps.mp4"
        key, size = output.storage_key, output.size_bytes

    storage = build_storage(job_settings)
    info = storage.head(key)
    assert info is not None
    assert info.size == size
    with storage.local_path(key) as path, av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 48
    x0, y0, x1, y1 = watermark_box(64, 48)
    source = make_clip(tmp_path / "again.mp4", frames=24, width=64, height=48)
    with av.open(str(source)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    # Frame 0 is source frame 0 copied, so only the watermark can have brightened the corner.
    corner = frames[0][y0:y1, x0:x1].astype(int) - first[y0:y1, x0:x1].astype(int)
    assert corner.max() > 60
    # No temporary objects are left: only the input and the output remain.
    stored = sorted(
        str(p.relative_to(job_settings.resolved_storage_dir))
        for p in job_settings.resolved_storage_dir.rglob("*")
        if p.is_file()
    )
    assert len(stored) == 2
    assert key in stored


@pytest.mark.weights
def test_a_preview_renders_only_its_seconds_watermarked(
    ray_runtime: ModuleType, postgres_db: TestDatabase, job_settings: Settings, tmp_path: Path
) -> None:
    import av

    from reframe.video.encode import watermark_box

    clip = make_clip(tmp_path / "clip.mp4", frames=48, width=64, height=48, audio=True)  # 2 s
    job_id = accept_uploaded_job(
        postgres_db, job_settings, clip, claim=True, preview_seconds=1.25
    ).job_id

    code = main(
        ["--job-id", job_id, "--attempt", "1", "--chunk-frames", "8"], settings=job_settings
    )
    assert code == 0

    with postgres_db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.status is JobStatus.DONE
        assert (job.charged_xeconds, job.watermarked) == (0, True)  # a free preview
        assert job.frames_done == job.frames_total == 60  # round(1.25 s x 48 fps)
        output = session.get(File, job.output_file_id)
        assert output is not None
        assert output.filename == "clip-48fps-preview.mp4"
        key = output.storage_key

    storage = build_storage(job_settings)
    with storage.local_path(key) as path, av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert video.average_rate == 48
        container.seek(0)
        audio_end = max(
            float((p.pts + p.duration) * p.time_base)
            for p in container.demux(audio)
            if p.pts is not None
        )
    assert len(frames) == 60  # the full render would have 96
    assert 1.1 < audio_end < 1.4  # the audio stops with the picture, not at the clip's 2 s
    x0, y0, x1, y1 = watermark_box(64, 48)
    with av.open(str(clip)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    corner = frames[0][y0:y1, x0:x1].astype(int) - first[y0:y1, x0:x1].astype(int)
    assert corner.max() > 60


def test_an_input_changed_after_pricing_is_not_rendered_and_is_refunded(
    ray_runtime: ModuleType, postgres_db: TestDatabase, job_settings: Settings, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=24, width=64, height=48)
    job_id = accepted_free_job(postgres_db, job_settings, clip)
    with postgres_db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        upload_key, pinned_key = job.input_file.storage_key, job.input_key
    assert pinned_key is not None
    storage = build_storage(job_settings)
    # A client's second PUT lands under the upload key (as an S3 URL would let it), which no
    # render reads; the job's pinned copy itself is then changed (only the server could), and
    # that is refused before any frame is made, with a full refund.
    longer = make_clip(tmp_path / "longer.mp4", frames=96, width=64, height=48)
    storage.upload_file(longer, upload_key, "video/mp4")
    storage.upload_file(longer, pinned_key, "video/mp4")

    code = main(["--job-id", job_id, "--attempt", "1"], settings=job_settings)
    assert code == 1

    with postgres_db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.status is JobStatus.FAILED
        assert job.error is not None
        assert "replaced or removed after this job was priced" in job.error
        assert job.output_file_id is None
        assert job.refunded_xeconds == job.charged_xeconds
        refunds = session.scalars(
            select(LedgerEntry).where(LedgerEntry.job_id == job_id, LedgerEntry.delta > 0)
        ).all()
        assert len(refunds) == 1
