"""Prometheus metrics: what each process records, and one scrape that adds up the whole service.

The service is several processes: Ray Serve runs the API as N replica processes, the dispatcher
is a Ray actor, and every render is a process of its own. A scrape of `GET /metrics` lands on
one replica, so each number must be right whichever replica answers. Two sources give that:

- The database, read at scrape time (reframe.jobs.metrics): jobs by status, the queue, accepted,
  completed, failed and cancelled jobs, refunds, xeconds charged and refunded, frames rendered,
  webhook deliveries. These counters are counts and sums of rows that are never deleted (the
  ledger is append-only), so they are exact, identical from every replica, survive restarts of
  any process, and cannot drift from the bill.
- prometheus-client's multiprocess mode for what only a process sees: HTTP requests and their
  latency, rate-limit refusals (API replicas) and per-render histograms (the dispatcher, when
  one of its renders ends). Each process writes its values to files in one directory
  (`PROMETHEUS_MULTIPROC_DIR`, set only in those processes' environments) and the scraping
  replica adds the files up. Renders do not write files themselves: a process per render
  would leave a file per render behind, and each scrape would read them all.

A process without the multiprocess directory (a test, `uvicorn` without Ray) keeps its values
in memory; its scrape shows them together with any files the directory holds.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Request latency: the polling path answers in ~10 ms, uploads and estimates take seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Output frames per second of a whole attempt: ~1 on a 2-core CPU at 720p, hundreds on GPUs.
FPS_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 240.0, 480.0)
# From a render's claim to its first frames: Ray job start, actor start, model load, a chunk.
FIRST_FRAME_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
RENDER_SECONDS_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0, 7200.0)


def multiprocess_active() -> bool:
    """True when this process writes its metrics to the multiprocess directory.

    prometheus-client decides once, at its import, from the environment; the service sets the
    variable in the environments Ray starts its replicas and the dispatcher with.
    """
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


def multiprocess_env(directory: Path) -> dict[str, str]:
    """Environment variables that put a process started with them into multiprocess mode."""
    return {MULTIPROCESS_ENV: str(directory)}


def reset_multiprocess_dir(directory: Path) -> None:
    """Empty the directory before the processes that write into it start (`reframe serve`).

    Files of an earlier run would otherwise be added to this run's counts, and a reused pid
    would continue an old process's file.
    """
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)


class ProcessMetrics:
    """The metrics a process records itself; every process builds the same set, so every name
    is exported even before its first observation."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        if multiprocess_active():
            # A process started outside `reframe serve` (a test, `serve run`) finds no
            # directory yet; every metric below opens its file there at once.
            Path(os.environ[MULTIPROCESS_ENV]).mkdir(parents=True, exist_ok=True)
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ("method", "route", "status")
        self.http_requests = Counter(
            "reframe_http_requests",
            "HTTP requests answered, by route template and status code.",
            labels,
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "reframe_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and status code.",
            labels,
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.rate_limit_refusals = Counter(
            "reframe_rate_limit_refusals",
            "Requests refused with 429 by the per-key rate limits, by bucket (read or write).",
            ("kind",),
            registry=self.registry,
        )
        self.render_fps = Histogram(
            "reframe_render_frames_per_second",
            "Output frames per second of each finished render attempt, claim to done.",
            buckets=FPS_BUCKETS,
            registry=self.registry,
        )
        self.render_first_frame = Histogram(
            "reframe_render_time_to_first_frame_seconds",
            "From a render attempt's claim to its first rendered frames (cold start included).",
            buckets=FIRST_FRAME_BUCKETS,
            registry=self.registry,
        )
        self.render_seconds = Histogram(
            "reframe_render_duration_seconds",
            "Wall time of each finished render attempt, claim to done.",
            buckets=RENDER_SECONDS_BUCKETS,
            registry=self.registry,
        )


class _Merged:
    """One family per name from several sources: samples with the same name and labels (the
    same metric of this process and of other processes' files) are added up."""

    def __init__(self, sources: Iterable[Any]) -> None:
        self._sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import Metric
        from prometheus_client.samples import Sample

        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for source in self._sources:
            for family in source.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                    values[family.name] = {}
                bucket = values[family.name]
                for sample in family.samples:
                    # Creation times do not add up; they are optional in the text format.
                    if sample.name.endswith("_created"):
                        continue
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    bucket[key] = bucket.get(key, 0.0) + sample.value
        for name, family in families.items():
            for (sample_name, labels), value in values[name].items():
                family.samples.append(Sample(sample_name, dict(labels), value))
            yield family


class _RegistryView:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


def exposition(
    process: ProcessMetrics | None,
    *,
    multiprocess_dir: Path | None,
    collectors: Iterable[Collector] = (),
) -> bytes:
    """The text-format scrape: `collectors` (the database's), the multiprocess files, and this
    process's own values when it does not write them to those files."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    sources: list[Any] = list(collectors)
    if multiprocess_dir is not None and multiprocess_dir.is_dir():
        sources.append(MultiProcessCollector(None, path=str(multiprocess_dir)))  # type: ignore[no-untyped-call]
    if process is not None and not multiprocess_active():
        sources.append(_RegistryView(process.registry))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(sources))
    return generate_latest(registry)
