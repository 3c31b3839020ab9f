from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import pytest

from reframe.cli import main
from reframe.cli import render as render_cli
from reframe.config import Settings
from reframe.video.decode import iter_frames, read_video_info
from reframe.video.encode import watermark_box
from tests.fixtures.media import moving_square_frames, write_video
from tests.fixtures.render import BlendInterpolator, lossless


class Built(list[argparse.Namespace]):
    """Arguments each model was built with, and the models themselves."""

    models: list[BlendInterpolator]


@pytest.fixture
def blend_model(monkeypatch: pytest.MonkeyPatch) -> Built:
    """Swap the network for the cross-fade double; records the arguments it was built with."""
    built = Built()
    built.models = []

    def build(args: argparse.Namespace, settings: Settings) -> BlendInterpolator:
        built.append(args)
        built.models.append(BlendInterpolator())
        return built.models[-1]

    monkeypatch.setattr(render_cli, "build_interpolator", build)
    return built


def test_render_writes_the_smoother_clip(
    tiny_clip_with_audio: Path,
    tmp_path: Path,
    blend_model: Built,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.mp4"
    code = main([
        "render", str(tiny_clip_with_audio), "-o", str(out), "--target-fps", "60",
    ])  # fmt: skip
    assert code == 0
    info = read_video_info(out)
    assert info.average_rate == 60
    assert info.audio_codec == "aac"
    assert sum(1 for _ in iter_frames(out)) == 60
    printed = capsys.readouterr().out
    assert "60 frames at 60 fps" in printed
    assert "audio copied" in printed
    assert blend_model[0].precision == "fp32"


def test_lossless_hevc_watermarked_options_reach_the_output(
    tmp_path: Path, blend_model: Built
) -> None:
    frames = [np.full((64, 96, 3), 30, np.uint8)] * 6
    clip = lossless(tmp_path / "dark.mp4", frames, fps=24)
    out = tmp_path / "out.mkv"
    code = main([
        "render", str(clip), "-o", str(out), "--target-fps", "48", "--crf", "0",
        "--codec", "hevc", "--watermark", "--no-scene-detect", "--quiet",
    ])  # fmt: skip
    assert code == 0
    info = read_video_info(out)
    assert info.codec == "hevc"
    first = next(iter_frames(out)).rgb
    x0, y0, x1, y1 = watermark_box(96, 64)
    assert first[y0:y1, x0:x1].max() > 150  # the mark
    assert first[:y0, :x0].max() == 30  # lossless elsewhere


@pytest.mark.parametrize(
    ("setup", "fps", "message"),
    [
        ("missing", "60", "no such file"),
        ("text", "60", "not a video file we can read"),
        ("clip", "24", "must be above the source"),
        ("clip", "fast", "must be a number"),
        ("clip", "-5", "must be above the source"),
    ],
)
def test_bad_input_is_a_clear_error(
    tmp_path: Path,
    blend_model: Built,
    capsys: pytest.CaptureFixture[str],
    setup: str,
    fps: str,
    message: str,
) -> None:
    source = tmp_path / "in.mp4"
    if setup == "text":
        source.write_text("hello, I am not a video\n" * 50)
    elif setup == "clip":
        lossless(source, moving_square_frames(6, width=64, height=48), fps=24)
    code = main(["render", str(source), "-o", str(tmp_path / "o.mp4"), "--target-fps", fps])
    assert code != 0
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("reframe: error:")
    assert not blend_model  # failed before loading a model
    assert not (tmp_path / "o.mp4").exists()


def _audio_seconds(path: Path) -> float | None:
    """How long the output's sound lasts (None: it has none), from its packets."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        ends = [
            float((p.pts + p.duration) * stream.time_base)
            for p in container.demux(stream)
            if p.pts is not None and p.duration
        ]
    return max(ends)


def test_first_seconds_cut_picture_and_sound_together(
    tiny_clip_with_audio: Path, tmp_path: Path, blend_model: Built
) -> None:
    whole, head = tmp_path / "whole.mp4", tmp_path / "head.mp4"
    assert main([
        "render", str(tiny_clip_with_audio), "-o", str(whole), "--target-fps", "60", "--quiet",
        "--crf", "0",
    ]) == 0  # fmt: skip
    assert main([
        "render", str(tiny_clip_with_audio), "-o", str(head), "--target-fps", "60",
        "--seconds", "0.5", "--quiet", "--crf", "0",
    ]) == 0  # fmt: skip
    assert sum(1 for _ in iter_frames(head)) == 30  # round(0.5 x 60)
    # The same frames as the start of the whole render (lossless, to compare exactly), not a
    # differently planned clip.
    for a, b in zip(iter_frames(head), iter_frames(whole), strict=False):
        np.testing.assert_array_equal(a.rgb, b.rgb)
    whole_audio, head_audio = _audio_seconds(whole), _audio_seconds(head)
    assert whole_audio is not None
    assert head_audio is not None
    assert whole_audio > 0.9
    assert head_audio <= 0.5 + 1024 / 44100  # ends with the picture, to one AAC frame


def test_first_seconds_past_the_end_are_the_whole_clip_sound_and_all(
    tmp_path: Path, blend_model: Built
) -> None:
    # Sound that goes on after the picture: a whole render keeps all of it.
    clip = write_video(
        tmp_path / "tail.mp4", moving_square_frames(24, width=64, height=48), fps=24,
        audio_seconds=1.5,
    )  # fmt: skip
    whole, longer = tmp_path / "whole.mp4", tmp_path / "longer.mp4"
    common = [str(clip), "--target-fps", "48", "--quiet", "--crf", "0"]
    assert main(["render", *common, "-o", str(whole)]) == 0
    assert main(["render", *common, "-o", str(longer), "--seconds", "5"]) == 0
    assert sum(1 for _ in iter_frames(longer)) == 48
    whole_audio = _audio_seconds(whole)
    assert whole_audio is not None
    assert whole_audio > 1.4
    assert _audio_seconds(longer) == whole_audio


def test_slow_motion_plays_the_target_frames_slower_without_sound(
    tiny_clip_with_audio: Path,
    tmp_path: Path,
    blend_model: Built,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "slow.mp4"
    assert main([
        "render", str(tiny_clip_with_audio), "-o", str(out), "--target-fps", "96",
        "--playback-fps", "24",
    ]) == 0  # fmt: skip
    info = read_video_info(out)
    frames = list(iter_frames(out))
    assert len(frames) == 96  # 1 s synthesized at 96 fps...
    assert info.average_rate == 24  # ...played at 24: four times as long
    assert float(frames[-1].time) == pytest.approx(95 / 24)
    assert float(frames[0].time) == 0
    assert _audio_seconds(out) is None
    assert "96 frames at 96 fps, played at 24 fps" in capsys.readouterr().out


def test_no_audio_leaves_the_sound_out(
    tiny_clip_with_audio: Path, tmp_path: Path, blend_model: Built
) -> None:
    out = tmp_path / "mute.mkv"
    assert main([
        "render", str(tiny_clip_with_audio), "-o", str(out), "--target-fps", "48", "--no-audio",
        "--quiet",
    ]) == 0  # fmt: skip
    assert _audio_seconds(out) is None
    assert sum(1 for _ in iter_frames(out)) == 48


@pytest.mark.parametrize(
    ("flags", "suffix", "codec", "profile", "crf"),
    [
        (["--codec", "prores", "--quality", "visually_lossless"], ".mov", "prores", "4444", None),
        (["--codec", "prores"], ".mov", "prores", "HQ", None),
        (["--quality", "standard"], ".mp4", "h264", None, b"crf=23.0"),
        (["--codec", "hevc", "--quality", "visually_lossless"], ".mkv", "hevc", None, b"crf=19.0"),
        (["--crf", "30"], ".mov", "h264", None, b"crf=30.0"),
    ],
)  # fmt: skip
def test_codec_and_quality_reach_the_encoder(
    tiny_clip: Path,
    tmp_path: Path,
    blend_model: Built,
    flags: list[str],
    suffix: str,
    codec: str,
    profile: str | None,
    crf: bytes | None,
) -> None:
    import av

    out = tmp_path / f"out{suffix}"
    args = ["render", str(tiny_clip), "-o", str(out), "--target-fps", "48", "--quiet", *flags]
    assert main(args) == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == codec
        if profile is not None:  # ProRes: the preset is the profile
            assert stream.codec_context.profile == profile
        else:
            assert stream.codec_context.pix_fmt == "yuv420p"
    if crf is not None:
        # x264 and x265 write the settings they encoded with into the stream.
        assert crf in out.read_bytes()


@pytest.mark.parametrize(
    ("flags", "output", "message"),
    [
        (["--codec", "prores"], "o.mp4", "mov: h264, hevc, prores"),
        (["--codec", "prores"], "o.mkv", "cannot be written to .mkv"),
        (["--playback-fps", "120"], "o.mp4", "must not exceed --target-fps"),
    ],
)
def test_impossible_output_choices_are_refused_before_the_model_loads(
    tiny_clip: Path,
    tmp_path: Path,
    blend_model: Built,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    output: str,
    message: str,
) -> None:
    out = tmp_path / output
    code = main(["render", str(tiny_clip), "-o", str(out), "--target-fps", "60", *flags])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not blend_model
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "-1", "inf", "soon"])
def test_seconds_must_be_a_positive_number(
    tiny_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([
            "render", str(tiny_clip), "-o", str(tmp_path / "o.mp4"), "--target-fps", "60",
            "--seconds", value,
        ])  # fmt: skip
    assert exited.value.code == 2
    assert "--seconds" in capsys.readouterr().err


def test_ensemble_runs_a_mirrored_pass(tiny_clip: Path, tmp_path: Path, blend_model: Built) -> None:
    plain, doubled = tmp_path / "plain.mp4", tmp_path / "ens.mp4"
    assert main(["render", str(tiny_clip), "-o", str(plain), "--target-fps", "60", "--quiet"]) == 0
    assert main([
        "render", str(tiny_clip), "-o", str(doubled), "--target-fps", "60", "--quiet", "--ensemble",
    ]) == 0  # fmt: skip
    first, second = blend_model.models
    assert sum(second.calls) == 2 * sum(first.calls)
    # A cross-fade is mirror-symmetric, so the ensemble changes nothing here.
    for a, b in zip(iter_frames(plain), iter_frames(doubled), strict=True):
        np.testing.assert_array_equal(a.rgb, b.rgb)


def test_output_may_not_overwrite_input(
    tiny_clip: Path, blend_model: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["render", str(tiny_clip), "-o", str(tiny_clip), "--target-fps", "60"])
    assert code == 2
    assert "overwrite the input" in capsys.readouterr().err


def test_progress_line() -> None:
    assert format_line(0, 100, 0.0) == "[----------] 0/100 frames    0.0 fps  ETA --:--:--"
    assert format_line(50, 100, 10.0) == "[#####-----] 50/100 frames    5.0 fps  ETA 0:00:10"
    stream = io.StringIO()
    bar = render_cli.ProgressBar(stream, enabled=True)
    bar(1, 3)
    bar(3, 3)
    text = stream.getvalue()
    assert text.count("\r") == 2
    assert text.endswith("3/3 frames" + text.split("3/3 frames")[1])
    assert text.endswith("\n")
    quiet = io.StringIO()
    render_cli.ProgressBar(quiet, enabled=False)(3, 3)
    assert quiet.getvalue() == ""


def format_line(done: int, total: int, elapsed: float) -> str:
    return render_cli.format_progress(done, total, elapsed, width=10)


@pytest.mark.weights
def test_real_render_end_to_end(rife_weights: Path, tmp_path: Path) -> None:
    clip = lossless(tmp_path / "in.mp4", moving_square_frames(6, width=64, height=48), fps=12)
    out = tmp_path / "out.mp4"
    code = main([
        "render", str(clip), "-o", str(out), "--target-fps", "24", "--threads", "2", "--quiet",
    ])  # fmt: skip
    assert code == 0
    assert sum(1 for _ in iter_frames(out)) == 12
