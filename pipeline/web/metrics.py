"""The worker's Prometheus metrics, in a registry the worker owns (never the global one).

Counted as they happen: HTTP requests to each service (``RequestMeter``, told by the
connectors' choke points) and the sync latency (``StageMeter``, told by the writers). Read at
each scrape (:meth:`WorkerMetrics.refresh`): each stage's records in and out, its lag and what
it holds, the mailboxes by state, the size of ``conflicts`` and ``dlq``.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connectors.http import ApiSide
from pipeline.config_store import ConfigSnapshot

#: The latency buckets (seconds): sub-second webhook paths up to polls backed off for minutes.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StageView(Protocol):
    """What the metrics read of a running stage (:class:`pipeline.stages.stream.GroupConsumer`)."""

    name: str
    records_in: int
    records_out: int

    def in_flight(self) -> int: ...


@dataclass(slots=True)
class Live:
    """What a scrape reads of the worker, gathered by :meth:`WorkerMetrics.refresh`."""

    ready: bool = False
    stages: list[tuple[str, int, int, int]] = field(default_factory=list)
    """(stage, records in, records out, in flight)"""
    lag: list[tuple[str, str, int, int]] = field(default_factory=list)
    """(stage, topic, partition, records not yet fetched)"""
    mailboxes: Mapping[str, int] = field(default_factory=dict)
    readers: Mapping[str, int] = field(default_factory=dict)
    topic_records: Mapping[str, int] = field(default_factory=dict)


class _LiveCollector(Collector):
    def __init__(self) -> None:
        self.live = Live()

    def collect(self) -> Iterator[Metric]:
        live = self.live
        ready = GaugeMetricFamily("dynasync_worker_ready", "1 once every stage has started")
        ready.add_metric([], 1.0 if live.ready else 0.0)
        yield ready
        taken = CounterMetricFamily(
            "dynasync_stage_records_in", "Records a stage took from its topics", labels=["stage"]
        )
        sent = CounterMetricFamily(
            "dynasync_stage_records_out",
            "Records a stage sent because of them (outputs and parked records)",
            labels=["stage"],
        )
        held = GaugeMetricFamily(
            "dynasync_stage_in_flight", "Records taken and not yet done", labels=["stage"]
        )
        for stage, n_in, n_out, n_held in live.stages:
            taken.add_metric([stage], n_in)
            sent.add_metric([stage], n_out)
            held.add_metric([stage], n_held)
        yield from (taken, sent, held)
        lag = GaugeMetricFamily(
            "dynasync_consumer_lag",
            "Records of an assigned partition not yet fetched (highwater minus position)",
            labels=["stage", "topic", "partition"],
        )
        for stage, topic, partition, behind in live.lag:
            lag.add_metric([stage, topic, str(partition)], behind)
        yield lag
        boxes = GaugeMetricFamily(
            "dynasync_mailboxes",
            "Configured mailboxes by state (failing: enabled, and Graph refuses it)",
            labels=["state"],
        )
        for state, n in sorted(live.mailboxes.items()):
            boxes.add_metric([state], n)
        yield boxes
        readers = GaugeMetricFamily(
            "dynasync_mailbox_readers",
            "Mailboxes read by this worker, by how their reader fares",
            labels=["state"],
        )
        for state, n in sorted(live.readers.items()):
            readers.add_metric([state], n)
        yield readers
        for topic, help_text in (
            ("conflicts", "Records on the conflicts topic (every mailbox)"),
            ("dlq", "Records on the dlq topic (every mailbox, alerts included)"),
        ):
            if topic in live.topic_records:
                family = GaugeMetricFamily(f"dynasync_{topic}_records", help_text)
                family.add_metric([], live.topic_records[topic])
                yield family


def mailbox_states(snapshot: ConfigSnapshot) -> dict[str, int]:
    """Configured mailboxes per state: their status, ``failing`` for an enabled one Graph
    refuses; every status appears, with 0 if none has it."""
    counts: Tally[str] = Tally(
        dict.fromkeys(("registered", "approved", "enabled", "failing", "paused", "disabled"), 0)
    )
    for mailbox in snapshot.mailboxes.values():
        failing = mailbox.status == "enabled" and mailbox.failing_since is not None
        counts["failing" if failing else mailbox.status] += 1
    return dict(counts)


class WorkerMetrics:
    """The worker's metrics (see the module docstring); one per worker, passed down."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.api_requests = Counter(
            "dynasync_api_requests",
            "HTTP requests sent to Graph or Dataverse, each attempt (code: the HTTP status, "
            "none: no answer)",
            ["side", "code"],
            registry=self.registry,
        )
        self.api_throttled = Counter(
            "dynasync_api_throttled",
            "429 answers from Graph or Dataverse",
            ["side"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dynasync_sync_latency_seconds",
            "From a change's record on changes.outlook / changes.crm to the completion of the "
            "write it caused, by target",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        for side in ("graph", "dataverse"):
            self.api_throttled.labels(side)
        self._live = _LiveCollector()
        self.registry.register(self._live)

    def request_done(self, side: ApiSide, status: int | None) -> None:
        """Count one request (the connectors' :class:`connectors.http.RequestMeter`)."""
        code = str(status) if status is not None and 100 <= status <= 599 else "none"
        self.api_requests.labels(side, code).inc()
        if status == 429:
            self.api_throttled.labels(side).inc()

    def write_done(self, target: str, seconds: float) -> None:
        """Observe one sync latency (the stages' :class:`pipeline.app.StageMeter`)."""
        self.latency.labels(target).observe(seconds)

    def set_live(
        self,
        *,
        ready: bool,
        stages: Sequence[StageView],
        lag: Iterable[tuple[str, str, int, int]],
        snapshot: ConfigSnapshot,
        readers: Iterable[str],
        topic_records: Mapping[str, int],
    ) -> None:
        """What the next scrape reports of the worker's state."""
        self._live.live = Live(
            ready=ready,
            stages=[(s.name, s.records_in, s.records_out, s.in_flight()) for s in stages],
            lag=list(lag),
            mailboxes=mailbox_states(snapshot),
            readers=dict(Tally(readers)),
            topic_records=dict(topic_records),
        )

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
