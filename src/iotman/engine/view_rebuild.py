"""Rebuilding a view (SPEC §4.1): re-fold the whole log into a shadow, then swap it in.

The shadow is the view's rows under another name (``name`` + NUL + ``rebuild``, which
no view can be called). The log is re-folded in chunks, each its own write
transaction, while reads keep serving the old rows and new events keep folding into
them. The last step runs in one write transaction: it folds the events that arrived
meanwhile into the shadow, drops the old rows and renames the shadow, so a reader
sees either the old rows or the new ones, never a mix. A definition changed during
the rebuild abandons it (its shadow is dropped; start again).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from iotman.compute.view_fold import CompiledView, ViewStatus
from iotman.core.clock import Clock, format_us
from iotman.core.workspace import Workspace
from iotman.engine.definition_kinds import VIEW
from iotman.engine.registry import Registry
from iotman.errors import Conflict, NotFound
from iotman.storage.ports import EventQuery, Store

__all__ = ["RebuildProgress", "ViewRebuilds", "shadow_name"]

log = logging.getLogger("iotman.views")
CHUNK = 2000


def shadow_name(view: str) -> str:
    """Where a rebuild folds: a name no view can have (names hold no spaces), and one that
    travels through SQLite's JSON functions unchanged (a NUL would cut it short)."""
    return view + " rebuild"


@dataclass
class RebuildProgress:
    state: str  # running | done | failed | abandoned
    started_at_us: int
    last_seq: int = 0  # the log's last seq when the rebuild started
    folded_seq: int = 0  # how far the re-fold has come
    finished_at_us: int | None = None
    error: str | None = None
    status: ViewStatus | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state,
            "started_at": format_us(self.started_at_us),
            "last_seq": self.last_seq,
            "folded_seq": self.folded_seq,
            "fraction": 1.0 if self.state == "done" else (self.folded_seq / self.last_seq if self.last_seq else 0.0),
        }
        if self.finished_at_us is not None:
            out["finished_at"] = format_us(self.finished_at_us)
        if self.error is not None:
            out["error"] = self.error
        if self.status is not None:
            out["failures"] = self.status.failures
            out["skipped"] = self.status.skipped
        return out


class ViewRebuilds:
    def __init__(self, store: Store, registry: Registry, clock: Clock, executor: Executor) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._executor = executor
        self._lock = threading.Lock()
        self._progress: dict[tuple[int, str], RebuildProgress] = {}

    def progress(self, ws: Workspace, name: str) -> RebuildProgress | None:
        return self._progress.get((ws.id, name))

    def start(self, ws: Workspace, name: str) -> RebuildProgress:
        view = self._registry.view(ws, name)
        record = self._store.get_definition(ws.id, VIEW.kind, name)
        if record is None:
            raise NotFound(f"view {name!r} does not exist", code="view_not_found", field="name")
        version = (record.version, record.created_at_us)
        with self._lock:
            running = self._progress.get((ws.id, name))
            if running is not None and running.state == "running":
                raise Conflict(f"view {name!r} is being rebuilt already", code="rebuild_running")
            progress = RebuildProgress("running", self._clock.now_us(), status=ViewStatus())
            self._progress[(ws.id, name)] = progress
        self._executor.submit(self._run, ws, view, version, progress)
        return progress

    def _run(self, ws: Workspace, view: CompiledView, version: tuple[int, int], progress: RebuildProgress) -> None:
        name = view.name
        assert progress.status is not None
        shadow = view.renamed(shadow_name(name), progress.status)
        sources = None if view.sources is None else tuple(sorted(view.sources))
        try:
            self._store.delete_view_rows(ws.id, shadow.name)  # what a crashed rebuild left
            progress.last_seq = self._store.last_seq(ws.id)
            after = 0
            while progress.last_seq - after > CHUNK:
                query = EventQuery(ws.id, sources=sources, limit=CHUNK, descending=False)
                query.after_seq, query.before_seq = after, progress.last_seq + 1
                events = self._store.read_events(query)
                if not events:
                    break
                self._store.fold_events(ws.id, shadow, events, self._clock.now_us())
                after = events[-1].seq
                progress.folded_seq = after
            finished = self._store.finish_rebuild(
                ws.id, shadow, name, sources, after, self._clock.now_us(), (VIEW.kind, *version)
            )
        except Exception as exc:  # reported on the view; the old rows stay
            log.exception("rebuild of view %r failed", name)
            progress.state, progress.error = "failed", f"{type(exc).__name__}: {exc}"
            progress.finished_at_us = self._clock.now_us()
            return
        if finished is None:
            progress.state = "abandoned"
            progress.error = "the view's definition changed during the rebuild; start it again"
        else:
            progress.state, progress.folded_seq = "done", max(finished, progress.last_seq)
        progress.finished_at_us = self._clock.now_us()
