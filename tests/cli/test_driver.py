"""The render driver's command line, without Ray: option mapping and refusals before any
cluster work."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from reframe.cli.driver import build_parser, main
from reframe.errors import InvalidInput
from reframe.options import RenderOptions, options_from_args
from reframe.pipeline.ray_pipeline import engine_options


def test_options_map_onto_the_pipeline_and_encoder() -> None:
    args = build_parser().parse_args(
        [
            "--input",
            "in.mp4",
            "--target-fps",
            "60000/1001",
            "-o",
            "out.mp4",
            "--crf",
            "0",
            "--codec",
            "hevc",
            "--num-gpus",
            "0.5",
            "--actors",
            "4",
            "--chunk-frames",
            "24",
            "--batch-size",
            "4",
            "--actor-memory-gb",
            "2",
        ]
    )
    assert args.target_fps == Fraction(60000, 1001)
    options = options_from_args(args)
    assert (options.actors, options.chunk_frames, options.batch_size) == (4, 24, 4)
    assert engine_options(options).device == "cuda"
    assert options.num_gpus == 0.5
    assert options.actor_cpus == 1.0
    assert options.actor_memory_bytes == 2 * 1024**3
    encode = options.encode(watermark=True)
    assert (encode.codec, encode.lossless, encode.watermark) == ("hevc", True, True)


def test_cpu_actors_take_half_a_core_so_two_fit_on_two_cores() -> None:
    assert RenderOptions().actor_cpus == 0.5
    with pytest.raises(InvalidInput, match="actors must be at least 1"):
        RenderOptions(actors=0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "missing.mp4", "--target-fps", "60", "-o", "o.mp4"], "no such file"),
        (["--input", "{clip}", "--target-fps", "60"], "needs --target-fps and -o"),
        (["--input", "{clip}", "--target-fps", "60", "-o", "o.avi"], "unsupported output"),
        (["--input", "{clip}", "--target-fps", "60", "-o", "o.mp4", "--crf", "99"], "crf"),
        (["--input", "{clip}", "--target-fps", "60", "-o", "o.mp4", "--codec", "prores"],
         "cannot be written to .mp4"),
        (["--input", "{clip}", "--target-fps", "60", "-o", "o.mp4", "--playback-fps", "90"],
         "must not exceed --target-fps"),
    ],
)  # fmt: skip
def test_bad_requests_fail_before_ray_starts(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not checked before Ray")
    monkeypatch.chdir(tmp_path)

    def no_ray(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("Ray must not start for a request that cannot succeed")

    monkeypatch.setattr(ray, "init", no_ray)
    code = main([a.replace("{clip}", str(clip)) for a in argv])
    assert code == 2
    assert message in capsys.readouterr().err
