"""Render options: one model, one set of flags, and a lossless trip through the command line."""

from __future__ import annotations

import argparse
from fractions import Fraction

import pytest

from reframe.config import Settings
from reframe.errors import InvalidInput
from reframe.options import (
    RenderOptions,
    add_cluster_arguments,
    add_render_arguments,
    options_from_args,
    parse_fps,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_render_arguments(p)
    add_cluster_arguments(p)
    return p


def test_to_argv_round_trips_through_the_shared_flags() -> None:
    options = RenderOptions(
        codec="hevc",
        crf=0,
        preset="ultrafast",
        precision="bf16",
        scale=0.5,
        batch_size=3,
        threads=2,
        scene_detect=False,
        dedup=False,
        cut_threshold=0.3,
        chunk_frames=24,
        actors=3,
        num_gpus=0.5,
        num_cpus=1.5,
        actor_memory_gb=2.5,
    )
    argv = options.to_argv()
    assert "--no-scene-detect" in argv
    assert options_from_args(parser().parse_args(argv)) == options
    # Defaults stay off the command line, so a plain render's command reads plainly.
    assert RenderOptions().to_argv() == []
    assert options_from_args(parser().parse_args([])) == RenderOptions()


def test_the_old_pipeline_flag_for_threads_still_works() -> None:
    assert options_from_args(parser().parse_args(["--actor-threads", "3"])).threads == 3


def test_service_options_come_from_settings() -> None:
    settings = Settings(
        render_codec="hevc", render_crf=22, render_preset="fast", render_chunk_frames=96
    )
    options = RenderOptions.from_settings(settings)
    assert (options.codec, options.crf, options.preset, options.chunk_frames) == (
        "hevc",
        22,
        "fast",
        96,
    )
    assert RenderOptions.from_settings(Settings()) == RenderOptions()


@pytest.mark.parametrize(
    ("text", "fps"),
    [
        ("60", Fraction(60)),
        ("59.94", Fraction(60000, 1001)),
        ("23.976", Fraction(24000, 1001)),
        ("60000/1001", Fraction(60000, 1001)),
        ("25", Fraction(25)),
    ],
)
def test_one_frame_rate_parser(text: str, fps: Fraction) -> None:
    assert parse_fps(text) == fps


@pytest.mark.parametrize("text", ["fast", "", "1/0", "nan/2"])
def test_frame_rates_that_are_not_numbers_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="must be a number"):
        parse_fps(text)


def test_bad_options_are_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidInput, match="crf"):
        RenderOptions(crf=60)
    with pytest.raises(InvalidInput, match="chunk frames"):
        RenderOptions(chunk_frames=1)
    with pytest.raises(InvalidInput, match="cut threshold"):
        RenderOptions(cut_threshold=0)
