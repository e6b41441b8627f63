"""Composition root: settings -> store adapter -> Engine. The only module that picks adapters."""

from __future__ import annotations

from iotman.core.clock import Clock
from iotman.engine.engine import Engine
from iotman.errors import ConfigurationError
from iotman.metrics import Metrics
from iotman.settings import Settings
from iotman.storage.ports import Store

__all__ = ["build_engine", "build_store"]


def build_store(settings: Settings, *, metrics: Metrics | None = None, clock: Clock | None = None) -> Store:
    url = settings.store_url()
    if url.startswith("sqlite:"):
        from iotman.storage.sqlite import SqliteStore
        from iotman.storage.sqlite.connection import path_from_url
        from iotman.storage.sqlite.store import AnalyticsOptions

        return SqliteStore(
            path_from_url(url),
            synchronous=settings.sqlite_synchronous,
            max_events=settings.writer_max_events,
            idempotency_ttl_us=settings.idempotency_ttl_seconds * 1_000_000,
            clock=clock,
            on_commit=metrics.observe_commit if metrics is not None else None,
            analytics=AnalyticsOptions(
                settings.analytics_min_events, settings.analytics_threads, settings.analytics_memory_mb
            ),
            on_aggregate=metrics.observe_aggregation if metrics is not None else None,
        )
    if url.startswith(("postgresql:", "postgres:")):
        raise ConfigurationError(
            "the PostgreSQL store is not available in this version; use sqlite:///path or --data DIR",
            code="store_unsupported",
            field="store",
        )
    raise ConfigurationError(
        f"unknown store URL {url!r}; expected sqlite:///path", code="store_unsupported", field="store"
    )


def build_engine(settings: Settings, *, clock: Clock | None = None) -> Engine:
    metrics = Metrics()
    store = build_store(settings, metrics=metrics, clock=clock)
    return Engine(store, settings, clock=clock, metrics=metrics)
