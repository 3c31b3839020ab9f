"""Joining the Ray cluster a render runs on.

Inside `ray job submit` (RAY_ADDRESS is set) or with an explicit address, the driver joins that
cluster; otherwise it joins a cluster running on this machine (`ray start --head`) if there is
one, and starts a private local one if not.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from reframe.errors import ReframeError, RenderError

log = logging.getLogger(__name__)


def connect_ray(address: str | None = None, *, local_cpus: int | None = None) -> bool:
    """Join or start Ray; True when this process started (and must stop) it.

    Authentication is decided by the cluster: Ray's own `RAY_AUTH_MODE` / `RAY_AUTH_TOKEN`
    variables or `~/.ray/auth_token`. A refusal is turned into instructions instead of a trace.
    """
    import ray

    if ray.is_initialized():  # e.g. a test session or a notebook already connected
        return False
    target = address or os.environ.get("RAY_ADDRESS")
    try:
        if target:
            ray.init(address=target, log_to_driver=True)
            return False
        try:
            ray.init(address="auto", log_to_driver=True)
            return False
        except ConnectionError:
            pass
        log.info("no running Ray cluster found; starting a local one")
        ray.init(address="local", num_cpus=local_cpus, include_dashboard=False)
        return True
    except ReframeError:
        raise
    except Exception as exc:
        text = str(exc)
        if "auth" in text.lower() or "token" in text.lower():
            raise RenderError(
                f"the Ray cluster refused this driver ({text.strip()[:200]}). It uses token "
                "authentication: run with RAY_AUTH_MODE=token and the cluster's token in "
                "RAY_AUTH_TOKEN or ~/.ray/auth_token (see `ray get-auth-token`)"
            ) from exc
        raise


@dataclass(frozen=True)
class ClusterResources:
    """What the cluster has now, and what it can grow to (its autoscaler's node types).

    `max_*` equal the current totals on a fixed cluster; on an autoscaling one they include
    every node type up to its `max_workers`, so a GPU worker type at `min_workers: 0` counts
    although none of its nodes runs yet.
    """

    cpus: float
    gpus: float
    max_cpus: float
    max_gpus: float
    nodes: int

    @property
    def autoscaling(self) -> bool:
        return self.max_gpus > self.gpus or self.max_cpus > self.cpus


# Where the cluster launcher (`ray up cluster.yaml`) leaves the autoscaler's config on the head.
LAUNCHER_CONFIG = Path("~/ray_bootstrap_config.yaml")


def read_cluster_resources(autoscaler_config: Path | None = None) -> ClusterResources:
    """The connected cluster's resources (Ray must be initialised).

    What it can grow to comes from the autoscaler: the cluster config it publishes in the GCS
    (autoscaler v2, KubeRay), else its config file (`autoscaler_config`, by default the one the
    cluster launcher leaves on the head node).
    """
    import ray

    totals = ray.cluster_resources()  # type: ignore[no-untyped-call]
    alive = [node for node in ray.nodes() if node.get("Alive")]  # type: ignore[no-untyped-call]
    limits = _autoscaler_limits() or limits_from_config_file(
        autoscaler_config or LAUNCHER_CONFIG.expanduser()
    )
    cpus, gpus = float(totals.get("CPU", 0)), float(totals.get("GPU", 0))
    return ClusterResources(
        cpus=cpus,
        gpus=gpus,
        max_cpus=max(cpus, limits.get("CPU", 0.0)),
        max_gpus=max(gpus, limits.get("GPU", 0.0)),
        nodes=len(alive),
    )


def _autoscaler_limits() -> dict[str, float]:
    """The most of each resource the autoscaler may provision, from the cluster config it
    publishes in the GCS; empty without an autoscaler (a fixed or local cluster)."""
    try:
        from ray._private.state import state

        limits = state.get_max_resources_from_cluster_config() or {}
    except Exception:  # an older or newer Ray without this internal: fall back to totals
        log.debug("no autoscaler limits available", exc_info=True)
        return {}
    # sys.maxsize marks a node type without a node limit: any amount can be had.
    return {key: float(value) for key, value in limits.items() if value}


def limits_from_config_file(path: Path) -> dict[str, float]:
    """The most of each resource an autoscaling config (cluster.yaml, or the JSON the
    autoscaler runs with) allows: every node type's resources times its `max_workers`, capped
    by the cluster's own `max_workers`. Empty when there is no such file."""
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(config, dict):
        return {}
    head_type = config.get("head_node_type")
    cluster_cap = config.get("max_workers")
    limits: dict[str, float] = {}
    for name, node_type in (config.get("available_node_types") or {}).items():
        resources = node_type.get("resources") or {}
        count = 1 if name == head_type else int(node_type.get("max_workers", cluster_cap or 0))
        if cluster_cap is not None and name != head_type:
            count = min(count, int(cluster_cap))
        for key, amount in resources.items():
            if isinstance(amount, int | float):
                limits[key] = limits.get(key, 0.0) + float(amount) * count
    return limits


def reservable_memory(request_bytes: int, *, num_cpus: float, num_gpus: float) -> int:
    """The memory each render actor may reserve: `request_bytes`, or 0 when reserving it would
    leave the actors unschedulable for good.

    A live node with the actor's CPUs/GPUs and that much memory takes the reservation. When no
    live node could host an actor (its GPU nodes are still to be started by the autoscaler),
    the reservation stands only if the autoscaler's node types advertise memory: one that
    knows nothing of memory (Ray's fake multi-node provider, node types declaring only CPU and
    GPU) finds no type for a request that names it, and the job would wait forever. Such an
    actor is bounded by its GPU share instead, one GPU actor per GPU at the default.
    """
    import ray

    if request_bytes <= 0:
        return 0
    wanted = {"CPU": num_cpus, "GPU": num_gpus}
    hosts = [
        node.get("Resources", {})
        for node in ray.nodes()  # type: ignore[no-untyped-call]
        if node.get("Alive")
        and all(node.get("Resources", {}).get(k, 0.0) >= v for k, v in wanted.items() if v)
    ]
    if hosts:
        return request_bytes
    if _autoscaler_limits().get("memory", 0.0) >= request_bytes:
        return request_bytes
    log.warning(
        "no live node can host a render actor yet and the autoscaler's node types advertise "
        "no memory: actors reserve none (a request naming memory would never be scheduled)"
    )
    return 0
