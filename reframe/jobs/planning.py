"""How many renders the cluster takes at once, and what each new render asks for.

The dispatcher reads the cluster's resources before every round of claims (not once at start:
nodes join, leave and autoscale), and decides:
- GPUs or not: when the cluster has GPUs, or its autoscaler can provision them, each
  interpolator actor asks for `gpus_per_actor` GPUs, so GPU workers are started and used; with
  none anywhere, renders run on CPU actors as on a laptop;
- capacity: one render per GPU slot (GPUs / GPUs per actor), else one per CPU, unless an
  operator set REFRAME_MAX_CONCURRENT_RENDERS;
- the actor pool of a new render: the GPU slots shared fairly between the renders running
  now and this one, so one long clip spreads over every free GPU and a second job still gets
  actors as soon as the first one's free up (each pool keeps at least one actor).
The choice is written into the job's events when the render starts.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from reframe.options import RenderOptions
from reframe.pipeline.cluster import ClusterResources

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """What one render asks the cluster for, and the sentence that explains it."""

    options: RenderOptions
    note: str


class RenderPlanner:
    def __init__(
        self,
        base: RenderOptions,
        *,
        gpus_per_actor: float = 1.0,
        max_actors_per_job: int = 8,
        max_concurrent: int | None = None,
        resources: Callable[[], ClusterResources] | None = None,
        fallback_capacity: int = 1,
    ) -> None:
        self.base = base
        self.gpus_per_actor = gpus_per_actor
        self.max_actors_per_job = max_actors_per_job
        self.max_concurrent = max_concurrent
        self._read = resources
        self._fallback = fallback_capacity
        self.resources: ClusterResources | None = None

    def refresh(self) -> None:
        """Read the cluster again; a failed read keeps the last picture (and says so)."""
        if self._read is None:
            return
        try:
            self.resources = self._read()
        except Exception:
            log.warning("could not read the cluster's resources; planning with the last ones")

    @property
    def gpu_slots(self) -> int:
        """GPU actors the cluster can hold at its largest (0: render on CPUs)."""
        res = self.resources
        if res is None or self.gpus_per_actor <= 0 or res.max_gpus < self.gpus_per_actor:
            return 0
        return max(1, math.floor(res.max_gpus / self.gpus_per_actor + 1e-9))

    @property
    def capacity(self) -> int:
        """Renders at once."""
        if self.max_concurrent:
            return self.max_concurrent
        if self.gpu_slots:
            return self.gpu_slots
        if self.resources is not None:
            return max(1, int(self.resources.max_cpus))
        return self._fallback

    def place(self, running: int) -> Placement:
        """Options for a render that starts while `running` others run."""
        slots = self.gpu_slots
        res = self.resources
        if not slots or res is None:
            where = "no GPUs in the cluster" if res is not None else "cluster not inspected"
            actors = self.base.actors or 1
            return Placement(
                self.base, f"{actors} CPU interpolator actor{'s' * (actors > 1)} ({where})"
            )
        share = max(1, slots // (running + 1))
        actors = max(1, min(self.max_actors_per_job, share))
        options = dataclasses.replace(self.base, num_gpus=self.gpus_per_actor, actors=actors)
        grows = f", up to {res.max_gpus:g} with autoscaling" if res.autoscaling else ""
        note = (
            f"up to {actors} interpolator actor{'s' * (actors > 1)} x {self.gpus_per_actor:g} "
            f"GPU (cluster: {res.gpus:g} GPUs now{grows}; {running} other render"
            f"{'s' * (running != 1)} running)"
        )
        return Placement(options, note)
