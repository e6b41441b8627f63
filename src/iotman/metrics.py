"""Prometheus metrics of the process (exposed at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000)


class Metrics:
    """One registry per application, so tests and several apps in one process never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ingest_requests = Counter(
            "iotman_ingest_requests", "Ingest requests by outcome (accepted or an error code).", ["outcome"], registry=r
        )
        self.ingest_events = Counter("iotman_ingest_events", "Events appended to the log.", registry=r)
        self.ingest_latency = Histogram(
            "iotman_ingest_latency_seconds",
            "Time from request start to durable commit of accepted ingest requests.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_groups = Counter("iotman_store_commits", "Group commits of the store writer.", registry=r)
        self.commit_group_events = Histogram(
            "iotman_store_commit_events", "Events per group commit.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.quarantined = Counter(
            "iotman_quarantine_entries", "Refused requests recorded in quarantine, by reason.", ["reason"], registry=r
        )
        self.quarantine_dropped = Counter(
            "iotman_quarantine_dropped", "Refusals not recorded because the quarantine rate limit was hit.", registry=r
        )
        self.aggregations = Histogram(
            "iotman_aggregation_seconds",
            "Time of ?agg= queries in the store, by engine (sqlite or duckdb).",
            ["engine"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.reads = Counter("iotman_read_requests", "Read requests on /data by outcome.", ["outcome"], registry=r)
        self.live_subscribers = Gauge("iotman_live_subscribers", "Open live streams (SSE and WebSocket).", registry=r)
        self.live_events = Counter(
            "iotman_live_events", "Matches handed to live stream subscribers (one per subscriber).", registry=r
        )
        self.delivery_attempts = Counter(
            "iotman_delivery_attempts",
            "Webhook and MQTT push attempts by kind and outcome (delivered, retried, dead).",
            ["kind", "outcome"],
            registry=r,
        )
        self.live_dropped = Counter(
            "iotman_live_dropped", "Live stream subscribers dropped for reading too slowly.", registry=r
        )

    def observe_aggregation(self, engine: str, seconds: float) -> None:
        self.aggregations.labels(engine).observe(seconds)

    def observe_commit(self, jobs: int, events: int) -> None:
        self.commit_groups.inc()
        self.commit_group_events.observe(events)
