"""`bench/gpu/run.sh` must work the day a GPU appears: its CPU mode runs every stage at a tiny
size, and the JSON it prints has the shape the README and the model manifest rely on."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIZES = ("720p", "1080p", "2160p")


def load_run_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gpu_run", ROOT / "bench/gpu/run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


# These read one run of the whole script in CPU mode (~20 s): not in `--fast`.
_whole_script = pytest.mark.slow


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """One quick CPU run through the shell wrapper: (printed JSON, written JSON)."""
    out = tmp_path_factory.mktemp("gpu-bench")
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("REFRAME_RIFE_WEIGHTS", None)
    args = "--device cpu --quick --weights random --ray off --batches 1 --compile-budget 1"
    proc = subprocess.run(
        ["bash", str(ROOT / "bench/gpu/run.sh"), *args.split(), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), json.loads((out / "gpu.json").read_text())


def rows(report: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [r for r in report["engine"] if all(r[k] == v for k, v in match.items())]


@_whole_script
def test_cpu_mode_runs_every_stage_and_writes_what_it_prints(
    cpu_run: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    printed, written = cpu_run
    assert printed == written
    assert written["schema"] == 1
    assert written["device_type"] == "cpu"
    assert written["quick"] is True
    assert written["complete"] is True
    assert set(written["stages_s"]) == {"engine", "vram", "pipeline", "cudagraph", "compile", "ray"}


@_whole_script
def test_engine_rows_cover_every_size_precision_and_mode(
    cpu_run: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, report = cpu_run
    required = {"size", "width", "height", "scale", "precision", "batch", "mode", "status"}
    for row in report["engine"]:
        assert required <= set(row), row
        assert row["status"] in ("ok", "skipped", "failed")
        if row["status"] != "ok":
            assert row["reason"], row
    for size in SIZES:
        # fp32 eager is the reference computation itself: it must run and match it exactly.
        (fp32,) = rows(report, size=size, precision="fp32", mode="eager")
        assert fp32["status"] == "ok"
        assert fp32["fps"] > 0
        assert fp32["output_fps_2x"] == pytest.approx(2 * fp32["fps"], rel=0.01)
        assert fp32["identical_frames"] == fp32["frames_compared"] == 1
        (fp16,) = rows(report, size=size, precision="fp16", mode="eager")
        assert fp16["status"] == "skipped"
        assert "GPU" in fp16["reason"]
        (bf16,) = rows(report, size=size, precision="bf16", mode="eager")
        if bf16["status"] == "ok":  # CPUs with AVX-512 BF16 or AMX
            assert isinstance(bf16["psnr_min_db"], float)
            assert bf16["psnr_mean_db"] >= bf16["psnr_min_db"]
        for graphed in rows(report, size=size, mode="cudagraph"):
            assert graphed["status"] == "skipped"
            assert "CUDA" in graphed["reason"]
        # The compile child is killed at its 1 s budget (finishing first would also do).
        (compiled,) = rows(report, size=size, mode="compile")
        assert compiled["status"] == "ok" or "budget" in compiled["reason"], compiled
    # The 2160p row keeps the network scale of the real size (0.5), not that of its tiny copy.
    assert {r["scale"] for r in rows(report, size="2160p")} == {0.5}
    assert {r["scale"] for r in rows(report, size="720p")} == {1.0}


@_whole_script
def test_best_names_the_fastest_finished_mode(
    cpu_run: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, report = cpu_run
    assert report["best"]
    for best in report["best"]:
        finished = rows(
            report, size=best["size"], precision=best["precision"], batch=best["batch"], status="ok"
        )
        assert best["fps"] == max(r["fps"] for r in finished)
        assert best["mode"] in {r["mode"] for r in finished}


@_whole_script
def test_pipeline_renders_each_size_at_twice_the_rate(
    cpu_run: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, report = cpu_run
    done = [p for p in report["pipeline"] if p["status"] == "ok"]
    assert {p["size"] for p in done} == set(SIZES)
    for p in done:
        assert p["output_frames"] == 2 * p["source_frames"]
        assert 0 < p["synthesized"] < p["output_frames"]
        assert p["output_fps"] > 0
    assert report["ray"] == {"status": "skipped", "reason": "--ray off"}


@_whole_script
def test_vram_table_has_the_manifest_shape_and_stays_null_on_cpu(
    cpu_run: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, report = cpu_run
    vram = report["vram"]
    assert vram["measured"] is False
    assert vram["unit"] == "MiB"
    manifest = json.loads((ROOT / "models/rife-4.26.json").read_text())["gpu_memory"]
    assert manifest["unit"] == vram["unit"]
    # Same precisions and batches per size as the manifest's table, every value null here.
    expected = next(iter(manifest["peak_allocated_mib"].values()))
    assert len(vram["peak_allocated_mib"]) == len(manifest["peak_allocated_mib"])
    for per_size in vram["peak_allocated_mib"].values():
        assert per_size.keys() == expected.keys()
        for precision, per_batch in per_size.items():
            assert per_batch.keys() == expected[precision].keys()
            assert set(per_batch.values()) == {None}


def test_update_manifest_takes_full_size_cuda_runs_only(tmp_path: Path) -> None:
    run = load_run_module()
    manifest = tmp_path / "rife.json"
    original = json.loads((ROOT / "models/rife-4.26.json").read_text())
    manifest.write_text(json.dumps(original))
    table = {
        key: {p: {"1": 400 + i, "2": 700, "4": 1300, "8": 2500} for p in ("fp32", "fp16", "bf16")}
        for i, key in enumerate(original["gpu_memory"]["peak_allocated_mib"])
    }
    report = {
        "device_type": "cuda",
        "quick": False,
        "device": "NVIDIA H200",
        "torch": "2.11.0",
        "vram": {"unit": "MiB", "what": "peak", "peak_allocated_mib": table},
    }
    source = tmp_path / "gpu.json"
    source.write_text(json.dumps({**report, "quick": True}))
    assert run.update_manifest(source, manifest) == 2
    assert json.loads(manifest.read_text()) == original
    source.write_text(json.dumps(report))
    assert run.update_manifest(source, manifest) == 0
    updated = json.loads(manifest.read_text())
    assert updated["gpu_memory"]["peak_allocated_mib"] == table
    assert updated["gpu_memory"]["device"] == "NVIDIA H200"
    assert updated["sha256"] == original["sha256"]
