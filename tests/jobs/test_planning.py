"""What a render asks the cluster for, decided from what the cluster has and can grow to."""

from __future__ import annotations

from pathlib import Path

from reframe.jobs.planning import RenderPlanner
from reframe.options import RenderOptions
from reframe.pipeline.cluster import ClusterResources


def planner(res: ClusterResources, **kwargs: object) -> RenderPlanner:
    p = RenderPlanner(RenderOptions(), resources=lambda: res, **kwargs)  # type: ignore[arg-type]
    p.refresh()
    return p


def test_gpus_present_are_shared_between_the_renders_running() -> None:
    p = planner(ClusterResources(cpus=16, gpus=4, max_cpus=16, max_gpus=4, nodes=2))
    assert p.capacity == 4
    alone = p.place(running=0)
    assert (alone.options.num_gpus, alone.options.actors) == (1.0, 4)
    assert alone.options.resolved_device == "cuda"
    assert "up to 4 interpolator actors x 1 GPU" in alone.note
    assert p.place(running=1).options.actors == 2
    assert p.place(running=3).options.actors == 1  # never none
    assert p.place(running=9).options.actors == 1


def test_gpus_the_autoscaler_can_add_count_before_any_node_runs() -> None:
    p = planner(ClusterResources(cpus=2, gpus=0, max_cpus=10, max_gpus=4, nodes=1))
    placed = p.place(running=0)
    assert placed.options.num_gpus == 1.0
    assert placed.options.actors == 4
    assert "0 GPUs now, up to 4 with autoscaling" in placed.note
    assert p.capacity == 4


def test_fractional_gpus_pack_actors_and_the_cap_holds() -> None:
    p = planner(
        ClusterResources(cpus=8, gpus=2, max_cpus=8, max_gpus=2, nodes=1),
        gpus_per_actor=0.5,
        max_actors_per_job=3,
    )
    assert p.gpu_slots == 4
    placed = p.place(running=0)
    assert (placed.options.num_gpus, placed.options.actors) == (0.5, 3)


def test_without_gpus_renders_stay_on_cpu_actors() -> None:
    p = planner(ClusterResources(cpus=2, gpus=0, max_cpus=2, max_gpus=0, nodes=1))
    placed = p.place(running=0)
    assert placed.options == RenderOptions()
    assert placed.options.resolved_device == "cpu"
    assert "no GPUs in the cluster" in placed.note
    assert p.capacity == 2
    # An operator's limit wins, and 0 GPUs per actor means never GPUs.
    assert planner(ClusterResources(2, 4, 2, 4, 1), max_concurrent=1).capacity == 1
    assert planner(ClusterResources(2, 4, 2, 4, 1), gpus_per_actor=0).place(0).options.num_gpus == 0


def test_a_failed_read_keeps_the_last_picture() -> None:
    calls = [ClusterResources(cpus=4, gpus=2, max_cpus=4, max_gpus=2, nodes=1)]

    def read() -> ClusterResources:
        if not calls:
            raise ConnectionError("GCS unreachable")
        return calls.pop()

    p = RenderPlanner(RenderOptions(), resources=read)
    p.refresh()
    p.refresh()
    assert p.gpu_slots == 2
    # Without any cluster to read, the capacity is the one given.
    assert RenderPlanner(RenderOptions(), fallback_capacity=3).capacity == 3


def test_growth_is_read_from_the_autoscalers_config_file(tmp_path: Path) -> None:
    from reframe.pipeline.cluster import limits_from_config_file

    config = tmp_path / "cluster.yaml"
    config.write_text(
        "max_workers: 3\nhead_node_type: head\navailable_node_types:\n"
        "  head: {resources: {CPU: 2}, node_config: {}, max_workers: 0}\n"
        "  gpu: {resources: {CPU: 4, GPU: 1}, node_config: {}, min_workers: 0, max_workers: 4}\n"
        "  cpu: {resources: {CPU: 1}, node_config: {}, max_workers: 2}\n"
    )
    # The cluster's own max_workers (3) caps the GPU type's 4.
    assert limits_from_config_file(config) == {"CPU": 2 + 4 * 3 + 1 * 2, "GPU": 3}
    assert limits_from_config_file(tmp_path / "missing.yaml") == {}
