"""A 10-bit HDR job through the service path (`pipelines/render.py --job-id` on Ray): the
stitched output is 10-bit HEVC with the source's tags and HDR side data, and its synthesized
frames keep more than 8 bits of levels (issue 13 part 5)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import av
import pytest

from reframe.cli.driver import main
from reframe.config import Settings
from reframe.db.models import File, Job, JobStatus
from reframe.storage import build_storage
from reframe.video.decode import read_video_info
from tests.fixtures.db import TestDatabase
from tests.fixtures.hdr import (
    MATRIX_BT2020_NCL,
    MAX_CLL,
    MAX_FALL,
    PRIMARIES_BT2020,
    TRANSFER,
    first_frame,
    level_counts,
    make_hdr_clip,
    planes,
    side_data_types,
)
from tests.fixtures.jobs import accept_uploaded_job

pytestmark = [pytest.mark.postgres, pytest.mark.ray]


@pytest.mark.weights
def test_pq_job_renders_to_stitched_10_bit_hdr(
    ray_runtime: ModuleType, postgres_db: TestDatabase, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_db.url)
    # Keyframes every 8 frames and 8-frame chunks: the output is stitched from several segments.
    clip = make_hdr_clip(tmp_path / "clip.mp4", transfer="pq", frames=24, keyint=8)
    job_id = accept_uploaded_job(postgres_db, settings, clip, claim=True).job_id

    code = main(["--job-id", job_id, "--attempt", "1", "--chunk-frames", "8"], settings=settings)
    assert code == 0

    with postgres_db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.status is JobStatus.DONE
        assert job.frames_done == job.frames_total == 48
        output = session.get(File, job.output_file_id)
        assert output is not None
        key = output.storage_key

    with build_storage(settings).local_path(key) as path:
        with av.open(str(path)) as container:
            ctx = container.streams.video[0].codec_context
            assert (ctx.name, ctx.pix_fmt) == ("hevc", "yuv420p10le")
            # Each segment's encoder starts on a keyframe: several of them were stitched.
            keyframes = sum(p.is_keyframe for p in container.demux(video=0) if p.size)
            assert keyframes >= 3
        color = read_video_info(path).color
        first = first_frame(path)
        stored = planes(path)
    assert (color.primaries, color.transfer, color.matrix) == (
        PRIMARIES_BT2020,
        TRANSFER["pq"],
        MATRIX_BT2020_NCL,
    )
    assert color.bit_depth == 10
    assert {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"} <= side_data_types(first)
    assert color.content_light is not None
    assert (color.content_light.max_cll, color.content_light.max_fall) == (MAX_CLL, MAX_FALL)
    assert color.mastering_display is not None
    assert color.mastering_display.max_luminance == 10_000_000
    assert len(stored) == 48
    # Odd output frames are synthesized (24 -> 48 fps), in every segment.
    for k in range(1, 47, 2):
        counts = level_counts(stored[k])
        assert min(counts) > 256, f"synthesized frame {k} has {counts} levels per plane"
