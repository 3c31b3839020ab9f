"""reframe.jobs.choices: what a job's output and slow-motion choices resolve to, and what is
refused. Pure functions: no database, no Ray."""

from __future__ import annotations

import pytest

from reframe.errors import InvalidInput
from reframe.jobs.choices import OutputChoice, RenderChoices
from reframe.video.formats import OutputFormat


def test_no_choices_render_as_the_service_always_did() -> None:
    resolved = RenderChoices.from_json(None).resolve(60)
    assert resolved.format == OutputFormat("mp4", "h264", 18, None, True)
    assert resolved.quality == 18
    # The operator's encoder defaults still apply when the customer chose nothing.
    operator = RenderChoices().resolve(60, default_codec="hevc", default_crf=25)
    assert (operator.format.codec, operator.format.crf) == ("hevc", 25)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (OutputChoice(quality="standard"), ("mp4", "h264", 23, None)),
        (OutputChoice(quality="visually_lossless"), ("mp4", "h264", 14, None)),
        (OutputChoice(codec="hevc"), ("mp4", "hevc", 23, None)),
        (
            OutputChoice(container="mkv", codec="hevc", quality="standard"),
            ("mkv", "hevc", 28, None),
        ),
        (OutputChoice(container="mov", quality=30), ("mov", "h264", 30, None)),
        (OutputChoice(codec="prores"), ("mov", "prores", None, "hq")),
        (OutputChoice(codec="prores", quality="standard"), ("mov", "prores", None, "standard")),
        (
            OutputChoice(codec="prores", quality="visually_lossless"),
            ("mov", "prores", None, "4444"),
        ),
    ],
)
def test_presets_map_to_crf_per_codec_and_prores_profiles(
    choice: OutputChoice, expected: tuple[object, ...]
) -> None:
    choices = RenderChoices(output=choice)
    choices.check(60)
    fmt = choices.resolve(60).format
    assert (fmt.container, fmt.codec, fmt.crf, fmt.prores_profile) == expected


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        (
            RenderChoices(output=OutputChoice(container="mp4", codec="prores")),
            "cannot be written to mp4; allowed combinations are mp4: h264, hevc; "
            "mov: h264, hevc, prores; mkv: h264, hevc",
        ),
        (RenderChoices(output=OutputChoice(container="mkv", codec="prores")), "mkv: h264, hevc"),
        (RenderChoices(output=OutputChoice(codec="prores", quality=20)), "ProRes profile"),
        (RenderChoices(output=OutputChoice(quality=0)), "from 1"),
        (RenderChoices(output=OutputChoice(quality=52)), "to 51"),
        (RenderChoices(playback_fps=23), "from 24 to 60"),
        (RenderChoices(playback_fps=61), "from 24 to 60"),
        (RenderChoices(playback_fps=50), r"playback_fps \(50\) must not exceed target_fps \(48\)"),
    ],
)
def test_impossible_choices_are_refused_naming_what_is_allowed(
    choices: RenderChoices, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        choices.check(48)


def test_slow_motion_drops_the_sound_and_playing_at_target_fps_is_not_slow() -> None:
    slow = RenderChoices(playback_fps=30)
    assert slow.slow_motion(240)
    assert not slow.resolve(240).format.audio
    same = RenderChoices(playback_fps=60)
    assert not same.slow_motion(60)
    assert same.resolve(60).format.audio


def test_stored_form_keeps_only_what_was_given_and_ignores_other_features_keys() -> None:
    choices = RenderChoices(output=OutputChoice(container="mkv", audio="none"), playback_fps=30)
    stored = choices.to_json()
    assert stored == {"output": {"container": "mkv", "audio": "none"}, "playback_fps": 30}
    # Another feature's key (a preview's) rides along in the same column.
    assert RenderChoices.from_json({**stored, "preview": {"seconds": 2}}) == choices
    assert RenderChoices().to_json() == {}
