"""Live progress inside a render (the actor's reporter and the driver's monitor, without Ray),
and the memory render actors reserve on the cluster they run on."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from reframe.pipeline.progress import ChunkReporter, ProgressHub, ProgressMonitor


class _Remote:
    """Calls a hub method directly, as `.remote()` would in Ray (records each call)."""

    def __init__(self, hub: ProgressHub, name: str, calls: list[tuple[str, tuple[Any, ...]]]):
        self._fn = getattr(hub, name)
        self._name = name
        self._calls = calls

    def remote(self, *args: Any) -> Any:
        self._calls.append((self._name, args))
        return self._fn(*args)


class _Handle:
    def __init__(self, hub: ProgressHub) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.hub = hub

    def __getattr__(self, name: str) -> _Remote:
        return _Remote(self.hub, name, self.calls)


def test_an_actor_reports_frames_within_a_chunk_at_a_bounded_rate() -> None:
    hub = ProgressHub()
    handle = _Handle(hub)
    now = [0.0]
    reporter = ChunkReporter(handle, 3, clock=lambda: now[0])
    for frame in range(1, 31):
        now[0] = frame * 0.1  # a frame every 100 ms for 3 s
        reporter.frames(frame)
    reporter.frames(30, final=True)
    sent = [args[1] for name, args in handle.calls if name == "chunk_frames"]
    # At most one report per half second, plus the final one; the hub keeps the largest.
    assert 5 <= len(sent) <= 8
    assert sent == sorted(sent)
    assert sent[-1] == 30
    assert hub.snapshot() == (0, {3: 30})


def test_the_monitor_adds_finished_chunks_to_frames_in_flight() -> None:
    reports: list[tuple[int, int, int, int]] = []
    monitor = ProgressMonitor(None, 100, 3, lambda *r: reports.append(r), None)
    monitor._report({0: 10, 1: 5})
    monitor.finish(0, 40)  # chunk 0 done: 40 frames, whatever it reported before
    monitor._report({1: 20, 2: 7})
    monitor._report({1: 15})  # a stale snapshot: the total would go down, so nothing is said
    monitor.finish(1, 30)
    monitor.finish(2, 30)
    assert reports == [(15, 100, 0, 3), (40, 100, 1, 3), (67, 100, 1, 3), (70, 100, 2, 3),
                       (100, 100, 3, 3)]  # fmt: skip


def test_an_actor_given_a_gpu_on_a_node_without_cuda_fails_for_the_operator() -> None:
    """Never a silent CPU render: the error names the node and what to install, and is not a
    ReframeError, so the job is retried (another node may be fine) before it is refunded."""
    import pytest
    import torch

    from reframe.errors import ReframeError
    from reframe.pipeline.actors import ChunkRenderer, EngineOptions, GpuUnavailable, WorkerConfig
    from reframe.storage import StorageConfig

    if torch.cuda.is_available():  # pragma: no cover - a machine with CUDA cannot show this
        pytest.skip("this machine has CUDA")
    storage = StorageConfig("local", Path("/nonexistent"), "http://127.0.0.1:1", "b", None, "r")
    worker = WorkerConfig(storage=storage, model_dir=Path("/nonexistent"))
    wants_gpu = EngineOptions(device="cuda", precision="fp16", threads=1)
    with pytest.raises(GpuUnavailable, match=r"torch\.cuda\.is_available\(\) is False") as info:
        ChunkRenderer._engine_options(wants_gpu, worker)
    assert "CUDA build of torch" in str(info.value)
    assert not isinstance(info.value, ReframeError)
    # Only a test cluster's explicit setting lets it fall back, in fp32.
    fallback = ChunkRenderer._engine_options(
        wants_gpu, WorkerConfig(storage=storage, model_dir=Path("/x"), allow_cpu_fallback=True)
    )
    assert (fallback.device, fallback.precision) == ("cpu", "fp32")
    on_cpu = EngineOptions(device="cpu")
    assert ChunkRenderer._engine_options(on_cpu, worker) is on_cpu


@pytest.mark.ray
def test_actors_reserve_memory_only_where_ray_could_ever_schedule_it(
    ray_runtime: ModuleType,
) -> None:
    from reframe.pipeline.cluster import reservable_memory

    gib = 1024**3
    # A live node has the CPUs: the reservation stands (Ray packs no more actors than fit).
    assert reservable_memory(2 * gib, num_cpus=1, num_gpus=0) == 2 * gib
    # GPU actors on a cluster with no GPU node yet and an autoscaler that advertises no
    # memory: a request naming memory could never be placed (seen: the autoscaler said "No
    # available node types can fulfill resource request" and the job waited for good).
    assert reservable_memory(2 * gib, num_cpus=1, num_gpus=1) == 0
    assert reservable_memory(0, num_cpus=1, num_gpus=0) == 0
