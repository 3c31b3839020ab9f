"""Issue 12, item 9: every input the renderer opens goes through the probe's rules.

FFmpeg's default demuxers include playlists: an HLS list or an ffconcat file names other files
(or URLs) and FFmpeg reads them as if they were the input. The probe never accepted those, but
the renderer opened its input with FFmpeg's defaults, so a file swapped after probing (or one
given to `reframe render`) could make a render read another local file. Each render-path open
is attacked here with a playlist pointing at a real clip next to it.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import pytest

from reframe.engine.render_core import plan_render, render_chunk
from reframe.engine.scenes import analyze_video
from reframe.engine.timeline import plan_timeline
from reframe.errors import InvalidMedia
from reframe.pipeline.ray_pipeline import keyframe_indices
from reframe.video.decode import iter_frames, read_video_info
from reframe.video.encode import VideoWriter
from reframe.video.media import open_media
from reframe.video.mux import Segment, stitch_segments
from tests.fixtures.media import make_clip, moving_square_frames, write_video
from tests.fixtures.render import BlendInterpolator


def _victim_ts(victim: Path, dest: Path) -> Path:
    """The victim clip remuxed to MPEG-TS (what HLS segments are), audio included."""
    with av.open(str(victim)) as src, av.open(str(dest), "w", format="mpegts") as out:
        mapping = {s.index: out.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    return dest


@pytest.fixture(params=["ffconcat", "hls"])
def playlist(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A playlist next to a real clip with audio; FFmpeg's defaults read it as that clip."""
    victim = make_clip(tmp_path / "victim.mp4", frames=24, audio=True)
    if request.param == "ffconcat":
        path = tmp_path / "upload.mp4"
        path.write_text("ffconcat version 1.0\nfile 'victim.mp4'\n")
    else:
        _victim_ts(victim, tmp_path / "victim.ts")
        path = tmp_path / "upload.m3u8"
        path.write_text(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
            "#EXTINF:1.0,\nvictim.ts\n#EXT-X-ENDLIST\n"
        )
    # The attack works against FFmpeg's defaults: it decodes the victim's 24 frames.
    with av.open(str(path)) as container:
        assert len(list(container.decode(video=0))) == 24
    return path


def _write_segment(path: Path) -> Segment:
    with VideoWriter(path, width=64, height=48, fps=Fraction(60)) as writer:
        for frame in moving_square_frames(4, width=64, height=48):
            writer.write(frame)
    return Segment(path=path, start_frame=0, frames=4)


def _attacks(playlist: Path, tmp_path: Path) -> dict[str, Callable[[], object]]:
    timeline = plan_timeline([Fraction(i, 24) for i in range(24)], 60)

    def writer_with_audio() -> None:
        with VideoWriter(
            tmp_path / "out.mp4", width=64, height=48, fps=Fraction(60), audio_from=playlist
        ) as writer:
            writer.write(moving_square_frames(1, width=64, height=48)[0])

    return {
        "video info": lambda: read_video_info(playlist),
        "decode": lambda: list(iter_frames(playlist)),
        "scene analysis": lambda: analyze_video(playlist),
        "plan": lambda: plan_render(playlist, 60),
        "render chunk": lambda: list(render_chunk(playlist, timeline, 0, 10, BlendInterpolator())),
        "keyframe scan": lambda: keyframe_indices(playlist, list(range(24))),
        "audio of an encode": writer_with_audio,
        "audio of a stitch": lambda: stitch_segments(
            [_write_segment(tmp_path / "seg.mp4")],
            tmp_path / "stitched.mp4",
            frame_rate=Fraction(60),
            audio_source=playlist,
        ),
    }


@pytest.mark.parametrize(
    "stage",
    [
        "video info",
        "decode",
        "scene analysis",
        "plan",
        "render chunk",
        "keyframe scan",
        "audio of an encode",
        "audio of a stitch",
    ],
)
def test_render_path_refuses_playlists(playlist: Path, tmp_path: Path, stage: str) -> None:
    attack = _attacks(playlist, tmp_path)[stage]
    with pytest.raises(InvalidMedia, match="playlists") as info:
        attack()
    assert str(tmp_path) not in info.value.message


def test_the_probed_container_is_the_one_opened(tmp_path: Path) -> None:
    """A file probed as MP4 and then swapped for Matroska is not read as Matroska."""
    swapped = write_video(tmp_path / "clip.mkv", moving_square_frames(6, width=64, height=48))
    with pytest.raises(InvalidMedia, match="not the kind of file"):
        read_video_info(swapped, demuxer="mov,mp4,m4a,3gp,3g2,mj2")
    with pytest.raises(InvalidMedia, match="not the kind of file"):
        list(iter_frames(swapped, demuxer="mov,mp4,m4a,3gp,3g2,mj2"))
    info = read_video_info(swapped, demuxer="matroska,webm")
    assert info.demuxer.split(",")[0] == "matroska"
    assert len(list(iter_frames(swapped, demuxer=info.demuxer))) == 6


def test_a_demuxer_outside_the_whitelist_is_refused(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    with pytest.raises(InvalidMedia, match="playlists"):
        open_media(clip, demuxer="concat")
    with open_media(clip) as container:
        assert "mp4" in container.format.name
