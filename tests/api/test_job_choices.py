"""POST /jobs output choices (container, codec, quality, audio) and slow motion (playback_fps):
what is refused, what is stored and shown, and what a real render makes of them.

The render tests run the real driver, lifecycle and Ray pipeline with the RIFE 4.26 weights on
tiny clips (64x48, half a second): what is checked is the file (container, codec, frame count,
timestamps, sound, name and type)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import av
import pytest

from reframe.db.models import File, Job
from reframe.jobs.driver import AttemptReporter, render_stored_job, run_attempt
from reframe.jobs.lifecycle import JobLifecycle
from reframe.options import RenderOptions
from reframe.pipeline.actors import WorkerConfig
from tests.fixtures.app import ApiHarness, TestClient, auth, make_app, make_settings, path_and_query
from tests.fixtures.db import TestDatabase
from tests.fixtures.media import make_clip


def _start(api: ApiHarness, key: str, up: dict[str, Any], fps: int, **extra: Any) -> Any:
    body = {"r2_key": up["key"], "project_id": up["project_id"], "target_fps": fps, **extra}
    return api.client.post("/jobs", headers=auth(key), json=body)


def _job(api: ApiHarness, key: str, job_id: str) -> dict[str, Any]:
    resp = api.client.get(f"/jobs/{job_id}", headers=auth(key))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        (
            {"output": {"container": "mp4", "codec": "prores"}},
            "output.codec 'prores' cannot be written to mp4; allowed combinations are mp4: "
            "h264, hevc; mov: h264, hevc, prores; mkv: h264, hevc",
        ),
        ({"output": {"container": "mkv", "codec": "prores"}}, "cannot be written to mkv"),
        ({"output": {"container": "avi"}}, "output.container: Input should be 'mp4', 'mov' or"),
        ({"output": {"codec": "vp9"}}, "output.codec: Input should be 'h264', 'hevc' or"),
        ({"output": {"codec": "prores", "quality": 20}}, "picks the ProRes profile"),
        ({"output": {"quality": 0}}, "crf must be from 1"),
        ({"output": {"quality": "best"}}, "output.quality"),
        ({"output": {"audio": "mute"}}, "output.audio: Input should be 'copy' or 'none'"),
        ({"playback_fps": 20}, "playback_fps: Input should be greater than or equal to 24"),
        ({"playback_fps": 90}, "playback_fps: Input should be less than or equal to 60"),
        ({"playback_fps": 50}, "playback_fps (50) must not exceed target_fps (48)"),
    ],
)
def test_impossible_choices_are_400_naming_what_is_allowed_and_charge_nothing(
    api: ApiHarness, extra: dict[str, Any], detail: str
) -> None:
    _, key = api.create_account(free=30)
    up = api.upload(key, frames=24, fps=24, width=64, height=48)
    resp = _start(api, key, up, 48, **extra)
    assert resp.status_code == 400, resp.text
    assert detail in resp.json()["detail"]
    me = api.client.get("/me", headers=auth(key)).json()
    assert me["balance"]["free_xeconds"] == 30


def test_choices_are_stored_as_given_and_shown_resolved(api: ApiHarness) -> None:
    _, key = api.create_account(free=60)
    up = api.upload(key, frames=48, fps=24, width=64, height=48)  # 2 s

    plain = _start(api, key, up, 240)
    slow = _start(
        api, key, up, 240, playback_fps=30, output={"container": "mov", "codec": "prores"}
    )
    assert plain.status_code == slow.status_code == 200, slow.text
    # Slow motion is priced by target_fps and the source's length, as any render.
    assert plain.json()["charged_xeconds"] == slow.json()["charged_xeconds"] == 8

    shown = _job(api, key, plain.json()["job_id"])
    assert shown["output"] == {
        "container": "mp4",
        "codec": "h264",
        "quality": 18,
        "crf": 18,
        "prores_profile": None,
        "audio": "copy",
    }
    assert shown["playback_fps"] is None
    shown = _job(api, key, slow.json()["job_id"])
    assert shown["output"] == {
        "container": "mov",
        "codec": "prores",
        "quality": "high",
        "crf": None,
        "prores_profile": "hq",
        "audio": "none",  # slow motion has no sound
    }
    assert shown["playback_fps"] == 30
    listed = api.client.get("/jobs", headers=auth(key)).json()["items"]
    assert {j["job_id"]: j["playback_fps"] for j in listed} == {
        plain.json()["job_id"]: None,
        slow.json()["job_id"]: 30,
    }
    with api.db.session() as s:
        stored = s.get(Job, slow.json()["job_id"])
        assert stored is not None
        assert stored.render_options == {
            "output": {"container": "mov", "codec": "prores"},
            "playback_fps": 30,
        }
        untouched = s.get(Job, plain.json()["job_id"])
        assert untouched is not None
        assert untouched.render_options is None
        # Another feature's key in the same column does not disturb the reading.
        stored.render_options = {**stored.render_options, "preview": {"seconds": 2}}
        s.commit()
    assert _job(api, key, slow.json()["job_id"])["output"]["codec"] == "prores"


def test_openapi_documents_the_choices(api: ApiHarness) -> None:
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    job_create = schemas["JobCreateIn"]["properties"]
    assert "the source's audio is dropped" in job_create["playback_fps"]["description"]
    output = schemas["OutputIn"]["properties"]
    assert output["container"]["anyOf"][0]["enum"] == ["mp4", "mov", "mkv"]
    assert "h264 23 / 18 / 14" in output["quality"]["description"]
    assert "OutputOut" in str(schemas["JobOut"]["properties"]["output"])


# --- real renders -------------------------------------------------------------------------------


@pytest.fixture
def render_api(
    ray_runtime: ModuleType, sqlite_db: TestDatabase, tmp_path: Path, rife_weights: Path
) -> Iterator[ApiHarness]:
    settings = make_settings(tmp_path, sqlite_db, rife_weights=rife_weights)
    with ExitStack() as stack:
        client = stack.enter_context(TestClient(make_app(settings, sqlite_db)))
        yield ApiHarness(
            app=client.app,  # type: ignore[arg-type]
            client=client,
            settings=settings,
            db=sqlite_db,
            tmp_path=tmp_path,
        )


def _render(api: ApiHarness, job_id: str) -> None:
    """The dispatcher's claim, then one attempt through the real driver and Ray pipeline."""
    claim = JobLifecycle(api.db.sessionmaker).claim_next("test", timedelta(minutes=5), 8)
    assert claim is not None
    assert claim.job_id == job_id

    def render(job: Job, report: AttemptReporter) -> str:
        file_id, _ = render_stored_job(
            job,
            report,
            storage=api.app.state.storage,
            sessions=api.db.sessionmaker,
            worker=WorkerConfig.from_settings(api.settings),
            options=RenderOptions(preset="ultrafast", chunk_frames=8),
        )
        return file_id

    code = run_attempt(api.settings, job_id, claim.attempt, render, sessions=api.db.sessionmaker)
    assert code == 0


def _download(api: ApiHarness, key: str, job: dict[str, Any], dest: Path) -> tuple[str, str]:
    """(filename, served content type) of the job's output, whose bytes land in `dest`."""
    resp = api.client.get(
        f"/projects/{job['project_id']}/files/{job['output_file_id']}/download",
        headers=auth(key),
    )
    assert resp.status_code == 200, resp.text
    got = api.client.get(path_and_query(resp.json()["url"]))
    assert got.status_code == 200
    dest.write_bytes(got.content)
    return resp.json()["filename"], got.headers["content-type"]


# (container, codec, quality, audio) -> (major brand or demuxer, codec, pixel format)
COMBINATIONS = [
    ({"container": "mp4", "codec": "h264"}, "isom", "h264", "yuv420p", "video/mp4"),
    ({"container": "mp4", "codec": "hevc", "quality": "standard"}, "isom", "hevc", "yuv420p",
     "video/mp4"),
    ({"container": "mov", "codec": "h264", "quality": 28}, "qt  ", "h264", "yuv420p",
     "video/quicktime"),
    ({"container": "mov", "codec": "hevc"}, "qt  ", "hevc", "yuv420p", "video/quicktime"),
    ({"container": "mov", "codec": "prores"}, "qt  ", "prores", "yuv422p10le", "video/quicktime"),
    ({"codec": "prores", "quality": "visually_lossless"}, "qt  ", "prores", "yuv444p10le",
     "video/quicktime"),
    ({"container": "mkv", "codec": "h264", "audio": "none"}, "matroska", "h264", "yuv420p",
     "video/x-matroska"),
    ({"container": "mkv", "codec": "hevc"}, "matroska", "hevc", "yuv420p", "video/x-matroska"),
]  # fmt: skip


@pytest.mark.ray
@pytest.mark.weights
@pytest.mark.slow
@pytest.mark.parametrize(
    ("output", "brand", "codec", "pix_fmt", "content_type"),
    COMBINATIONS,
    ids=["-".join(str(v) for v in c[0].values()) for c in COMBINATIONS],
)
def test_each_output_combination_renders_into_that_container_and_codec(
    render_api: ApiHarness,
    tmp_path: Path,
    output: dict[str, Any],
    brand: str,
    codec: str,
    pix_fmt: str,
    content_type: str,
) -> None:
    api = render_api
    _, key = api.create_account(free=30)
    clip = make_clip(tmp_path / "clip.mp4", frames=12, fps=24, width=64, height=48, audio=True)
    up = api.upload(key, clip)
    resp = _start(api, key, up, 48, output=output)
    assert resp.status_code == 200, resp.text
    _render(api, resp.json()["job_id"])
    job = _job(api, key, resp.json()["job_id"])
    assert job["live_status"] == "done", job["error"]

    container = job["output"]["container"]
    filename, served = _download(api, key, job, tmp_path / f"out.{container}")
    assert filename == f"clip-48fps.{container}"
    assert served == content_type
    with api.db.session() as s:
        row = s.get(File, job["output_file_id"])
        assert row is not None
        assert row.content_type == content_type
    with av.open(str(tmp_path / f"out.{container}")) as media:
        if brand == "matroska":
            assert media.format.name.startswith("matroska")
        else:
            assert media.metadata.get("major_brand") == brand
        video = media.streams.video[0]
        assert video.codec_context.name == codec
        assert video.codec_context.pix_fmt == pix_fmt
        has_audio = bool(media.streams.audio)
        frames = sum(1 for _ in media.decode(video=0))
    assert has_audio == (output.get("audio") != "none")
    assert frames == 24


@pytest.mark.ray
@pytest.mark.weights
@pytest.mark.slow
def test_slow_motion_plays_every_synthesized_frame_at_playback_fps_without_sound(
    render_api: ApiHarness, tmp_path: Path
) -> None:
    api = render_api
    _, key = api.create_account(free=30)
    # 1 s at 24 fps with sound, rendered at 120 and played at 30: a 4 s clip.
    clip = make_clip(tmp_path / "clip.mp4", frames=24, fps=24, width=64, height=48, audio=True)
    up = api.upload(key, clip)
    resp = _start(api, key, up, 120, playback_fps=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["charged_xeconds"] == 2  # the slo-mo band of 1 s, as without playback
    _render(api, resp.json()["job_id"])
    job = _job(api, key, resp.json()["job_id"])
    assert job["live_status"] == "done", job["error"]
    assert job["playback_fps"] == 30

    filename, served = _download(api, key, job, tmp_path / "out.mp4")
    assert (filename, served) == ("clip-120fps-at-30fps.mp4", "video/mp4")
    expected_frames = round(job["duration_sec"] * 120)
    assert expected_frames == 120
    with av.open(str(tmp_path / "out.mp4")) as media:
        assert not media.streams.audio
        video = media.streams.video[0]
        assert video.average_rate == 30
        stamps = [frame.time for frame in media.decode(video=0)]
        assert media.duration is not None
        assert media.duration / 1_000_000 == pytest.approx(4.0, abs=1e-3)
    assert len(stamps) == expected_frames
    # Frame k is shown at k / 30 s, from 0; the last one ends at frames / playback_fps.
    assert stamps == pytest.approx([k / 30 for k in range(expected_frames)], abs=1e-6)
    assert Fraction(len(stamps), 30) == 4
