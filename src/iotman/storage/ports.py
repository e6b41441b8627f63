"""Storage ports: what the engine needs from a store, independent of technology.

The store is synchronous (it runs in threads; see DESIGN.md). Appends go through
``submit`` so an adapter can group concurrent appends into one transaction (group
commit) and report each outcome once its transaction has committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from iotman.core.workspace import Workspace
from iotman.errors import IotmanError

__all__ = [
    "SEQ_BITS",
    "AggregateQuery",
    "AggregateRow",
    "AppendBatch",
    "AppendOutcome",
    "AppendResult",
    "DefinitionRecord",
    "Delivery",
    "DeliveryResult",
    "EventQuery",
    "FoldBatch",
    "FoldGroup",
    "FoldOutcome",
    "OutboxEmail",
    "QuarantineEntry",
    "RenderSpec",
    "RenderedText",
    "Store",
    "StoredEvent",
    "TokenRecord",
    "ViewFold",
    "ViewRow",
]

T = TypeVar("T")

SEQ_BITS = 40
"""Bits of ``seq``: a workspace holds up to 2**40 - 1 events."""


@dataclass(frozen=True, slots=True)
class FoldOutcome:
    """What a fold did to one key: the new value (None: row unchanged) and the seq it reflects."""

    value: str | None
    seq: int


class FoldBatch:
    """The events being folded together (log order), and what the views of the batch share:
    each view may keep a value computed from the events (parsed payloads, envelopes) in
    ``shared`` for the next view. It lives as long as the batch, so nothing outlives it."""

    __slots__ = ("events", "payload_values", "shared")

    def __init__(self, events: list[StoredEvent], payload_values: list[Any] | None = None) -> None:
        self.events = events
        self.payload_values = payload_values
        """Each event's payload as a value (parsed from its text), when the appender has them."""
        self.shared: dict[str, Any] = {}


@dataclass(slots=True)
class FoldGroup:
    """One key of a batch: its current value (None: no row yet) and its events (positions in the batch)."""

    key: str
    prev: str | None
    events: list[int]


class ViewFold(Protocol):
    """A view, compiled, as the store folds it inside the append transaction.

    The store asks for the keys of a batch's events, reads the current rows of those
    keys once, and asks ``fold`` for the outcome of each key, its events in log order.
    Neither method may raise: failures are the view's to count (they never block an
    append).
    """

    @property
    def name(self) -> str: ...

    def keys(self, batch: FoldBatch) -> list[str | None]:
        """The row key of each event of the batch, in order (None: the event is skipped)."""
        ...

    def fold(self, batch: FoldBatch, groups: list[FoldGroup]) -> list[FoldOutcome]:
        """Each group's outcome, in the order of ``groups``."""
        ...


@dataclass(frozen=True, slots=True)
class ViewRow:
    key: str
    value: str
    updated_at_us: int
    seq: int


@dataclass(slots=True)
class AppendBatch:
    """Events of one request, appended all-or-nothing to one workspace."""

    workspace_id: int
    source: str
    payloads: list[str]
    metadata: str
    received_at_us: int
    idempotency_key: str | None = None
    fingerprint: str = ""
    idempotency_scope: str = ""
    tags: list[str | None] | None = None
    """Per-event tags as JSON text (None: no tags), computed by the tag rules at ingest."""
    event_metadata: list[str] | None = None
    """Per-event metadata when events differ (e.g. schema warnings); else ``metadata`` for all."""
    batch: bool = False
    folds: list[ViewFold] | None = None
    """Views to fold these events into, in the same transaction (SPEC §4.1)."""
    payload_values: list[Any] | None = None
    """The payloads as the values ``payloads`` were serialised from, when the caller has them:
    views read keys from them instead of parsing the texts again."""
    deliveries: list[tuple[int, str]] | None = None
    """(index of the event in the batch, target) of each delivery to enqueue with the events
    (webhooks and MQTT pushes whose output the event matches; SPEC §5.2)."""


@dataclass(slots=True)
class AppendResult:
    ids: list[str]
    first_seq: int
    last_seq: int
    received_at_us: int
    replayed: bool = False


AppendOutcome = AppendResult | IotmanError


@dataclass(slots=True)
class StoredEvent:
    seq: int
    id: str
    source: str
    received_at_us: int
    payload: str
    metadata: str
    tags: str | None


@dataclass(frozen=True, slots=True)
class RenderedText:
    """A chunk of rendered events: how many, the seq of the last one, their lines joined by newlines."""

    count: int
    last_seq: int | None
    text: str


@dataclass(slots=True)
class EventQuery:
    """Events of one workspace. ``sources``: any of these; ``tags``: every {key: value}
    to match, a value of ``"*"`` meaning "has the tag" (the store uses a tag index)."""

    workspace_id: int
    sources: tuple[str, ...] | None = None
    tags: dict[str, Any] | None = None
    after_seq: int | None = None
    before_seq: int | None = None
    from_us: int | None = None
    to_us: int | None = None
    limit: int = 100
    descending: bool = True


RenderSpec = tuple[Any, ...]
"""How a store may render an output itself (nested tuples, all JSON-safe):
``("object", ((key, spec), ...))``, ``("array", (spec, ...))``, ``("literal", json_text)``,
``("column", "seq" | "id" | "source" | "received_at")``, ``("payload", steps)``,
``("tags", steps)``, ``("metadata", name, steps)``; steps are names and indexes.
A value a path does not reach renders as null."""


@dataclass(slots=True)
class AggregateQuery:
    """An aggregation over the events an ``EventQuery`` selects (limits and cursors unused)."""

    events: EventQuery
    function: str  # count, sum, avg, min, max, p50, p95, p99
    value_steps: tuple[str | int, ...] | None  # name/index steps into the payload; None for count
    bucket_us: int | None
    group_by: str | None  # a tag key


@dataclass(slots=True)
class AggregateRow:
    bucket_us: int | None
    group: Any
    value: float | int | None
    count: int


@dataclass(slots=True)
class DefinitionRecord:
    kind: str
    name: str
    body: dict[str, Any]
    version: int
    created_at_us: int
    updated_at_us: int


@dataclass(slots=True)
class TokenRecord:
    id: int
    workspace_id: int
    name: str
    scopes: tuple[str, ...]
    created_at_us: int
    expires_at_us: int | None = None


@dataclass(slots=True)
class OutboxEmail:
    """An email a function sent: pending until the sender delivers it (sent) or gives up (dead)."""

    id: int
    workspace_id: int
    created_at_us: int
    recipients: list[str]
    subject: str
    body: str
    state: str
    attempts: int
    next_attempt_us: int
    last_error: str | None
    sent_at_us: int | None


@dataclass(slots=True)
class Delivery:
    """One event to push to one target (``webhook:<name>``, ``mqtt-push:<name>``)."""

    id: int
    workspace_id: int
    target: str
    seq: int
    state: str  # pending | delivered | dead
    attempts: int
    next_attempt_us: int
    created_at_us: int
    done_at_us: int | None
    last_status: int | None
    last_latency_us: int | None
    last_error: str | None
    lease_until_us: int = 0
    """The claim's lease (a result is recorded only while it holds)."""


@dataclass(slots=True)
class DeliveryResult:
    """What became of a claimed delivery: ``state`` delivered/dead, or pending (retried at
    ``next_attempt_us``); ``attempted`` false puts it back without counting an attempt."""

    id: int
    lease_until_us: int
    state: str
    attempted: bool = True
    next_attempt_us: int | None = None
    status: int | None = None
    latency_us: int | None = None
    error: str | None = None


@dataclass(slots=True)
class QuarantineEntry:
    workspace_id: int
    at_us: int
    reason: str
    message: str
    source: str | None = None
    principal: str | None = None
    content_type: str | None = None
    body_size: int = 0
    body_head: bytes = b""
    details: dict[str, Any] = field(default_factory=dict)
    id: int = 0


class Store(Protocol):
    """Every adapter implements this; tests/contracts runs one suite against each."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    # events ------------------------------------------------------------------
    def submit(self, batch: AppendBatch, done: Callable[[AppendOutcome], None]) -> None:
        """Queue an append; ``done`` is called (from a store thread) after commit or failure."""
        ...

    def append(self, batch: AppendBatch) -> AppendResult:
        """Blocking append (raises the outcome's error)."""
        ...

    def read_events(self, query: EventQuery) -> list[StoredEvent]: ...

    def last_seq(self, workspace_id: int) -> int: ...

    def read_rendered(self, query: EventQuery, spec: RenderSpec) -> list[tuple[int, str]]:
        """(seq, JSON text) of each selected event, rendered by the store as ``spec`` says."""
        ...

    def read_rendered_text(self, query: EventQuery, spec: RenderSpec) -> RenderedText:
        """The same events as ``read_rendered``, their lines joined by newlines (no trailing one)."""
        ...

    def aggregate(self, query: AggregateQuery) -> list[AggregateRow]:
        """Computed in the store, ordered by bucket then group."""
        ...

    def ensure_tag_index(self, tags: dict[str, Any]) -> None:
        """Make selections by ``tags`` (a non-empty ``{key: value | "*"}``) use an index,
        built over the existing events once."""
        ...

    def count_events(self, workspace_id: int) -> int: ...

    # views -------------------------------------------------------------------
    def view_row(self, workspace_id: int, view: str, key: str) -> ViewRow | None: ...

    def view_rows(self, workspace_id: int, view: str, prefix: str, after: str | None, limit: int) -> list[ViewRow]:
        """Rows whose key starts with ``prefix``, in key order, after the key ``after``."""
        ...

    def delete_view_rows(self, workspace_id: int, view: str) -> None: ...

    def fold_events(self, workspace_id: int, fold: ViewFold, events: list[StoredEvent], now_us: int) -> None:
        """Fold already stored ``events`` into ``fold.name``'s rows, in one write transaction (rebuilds)."""
        ...

    def finish_rebuild(
        self,
        workspace_id: int,
        fold: ViewFold,
        into: str,
        sources: tuple[str, ...] | None,
        after_seq: int,
        now_us: int,
        definition: tuple[str, int, int],
    ) -> int | None:
        """In one write transaction: fold the events after ``after_seq`` (of ``sources``) into
        ``fold.name``'s rows, then make them the rows of view ``into`` (its old rows go).
        ``definition`` is the view's (kind, version, created_at_us) when the rebuild started;
        if the stored one differs (changed, or deleted and made again), nothing is swapped, the
        shadow rows go, and None is returned; else the last seq folded."""
        ...

    # workspaces --------------------------------------------------------------
    def create_workspace(self, slug: str, uuid: str, now_us: int) -> Workspace: ...

    def get_workspace(self, slug: str) -> Workspace | None: ...

    def list_workspaces(self) -> list[Workspace]: ...

    def delete_workspace(self, workspace_id: int) -> None: ...

    # definitions -------------------------------------------------------------
    def create_definition(
        self, workspace_id: int, kind: str, name: str, path: str | None, body: dict[str, Any], now_us: int
    ) -> DefinitionRecord: ...

    def replace_definition(
        self, workspace_id: int, kind: str, name: str, path: str | None, body: dict[str, Any], now_us: int
    ) -> DefinitionRecord: ...

    def delete_definition(self, workspace_id: int, kind: str, name: str) -> None: ...

    def get_definition(self, workspace_id: int, kind: str, name: str) -> DefinitionRecord | None: ...

    def find_definition_by_path(self, workspace_id: int, kind: str, path: str) -> DefinitionRecord | None: ...

    def list_definitions(self, workspace_id: int, kind: str) -> list[DefinitionRecord]: ...

    # tokens ------------------------------------------------------------------
    def create_token(
        self, workspace_id: int, name: str, token_hash: str, scopes: tuple[str, ...], now_us: int
    ) -> TokenRecord: ...

    def find_token(self, token_hash: str) -> TokenRecord | None: ...

    # quarantine --------------------------------------------------------------
    def add_quarantine(self, entry: QuarantineEntry) -> None:
        """Record a refused request (may be written asynchronously)."""
        ...

    def list_quarantine(self, workspace_id: int, limit: int, before_id: int | None) -> list[QuarantineEntry]: ...

    # housekeeping ------------------------------------------------------------
    def prune(
        self, now_us: int, idempotency_ttl_us: int, quarantine_keep: int, delivered_keep_us: int | None = None
    ) -> None:
        """Forget old idempotency keys and quarantine entries, and deliveries done longer ago than
        ``delivered_keep_us``."""
        ...

    # workspace settings and the email outbox --------------------------------------------
    def put_setting(self, workspace_id: int, name: str, body: dict[str, Any], now_us: int) -> None: ...

    def get_setting(self, workspace_id: int, name: str) -> dict[str, Any] | None: ...

    def delete_setting(self, workspace_id: int, name: str) -> bool: ...

    def list_settings(self, workspace_id: int, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        """Settings whose name starts with ``prefix``, by name."""
        ...

    def enqueue_email(self, workspace_id: int, recipients: list[str], subject: str, body: str, now_us: int) -> int:
        """Queue an email (inside ``transaction``: undone with it); its id."""
        ...

    def claim_emails(self, now_us: int, lease_us: int, limit: int) -> list[OutboxEmail]:
        """Due pending emails, held from other senders for ``lease_us``."""
        ...

    def email_sent(self, email_id: int, now_us: int) -> None: ...

    def email_failed(self, email_id: int, error: str, next_attempt_us: int | None) -> None:
        """A failed attempt: retried at ``next_attempt_us``, dead when None."""
        ...

    def list_emails(self, workspace_id: int, before_id: int | None, limit: int) -> list[OutboxEmail]: ...

    # the delivery outbox (webhooks, MQTT pushes) ------------------------------------------
    def claim_deliveries(self, now_us: int, lease_us: int, wanted: list[tuple[int, str, int]]) -> list[Delivery]:
        """For each (workspace id, target, at most n) of ``wanted``: due pending deliveries no
        sender holds, oldest due first, held from other senders for ``lease_us``."""
        ...

    def finish_deliveries(self, results: list[DeliveryResult], now_us: int) -> None:
        """Record the outcomes of claimed deliveries, in one transaction; a result whose claim's
        lease ran out (or that was recorded already) is ignored."""
        ...

    def list_deliveries(
        self, workspace_id: int, target: str, state: str | None, before_id: int | None, limit: int
    ) -> list[Delivery]:
        """Newest first."""
        ...

    def replay_deliveries(self, workspace_id: int, target: str, delivery_id: int | None, now_us: int) -> int:
        """Dead deliveries (one, or all of ``target``) pending again; how many."""
        ...

    def delivery_counts(self, workspace_id: int, target: str) -> dict[str, int]: ...

    def delete_deliveries(self, workspace_id: int, target: str) -> None: ...

    def events_at(self, workspace_id: int, seqs: list[int]) -> list[StoredEvent]:
        """The events at ``seqs`` that exist, in log order."""
        ...

    def transaction(self, fn: Callable[[], T], *, keep: bool = True) -> T:
        """Run ``fn()`` with every call of this store inside one write transaction (reads see
        its writes); kept when ``fn`` returns and ``keep``, all undone when it raises (re-raised)
        or ``keep`` is false. Inside another transaction it nests (its undo keeps the outer's work)."""
        ...

    def flush(self) -> None:
        """Wait until every write queued so far is committed."""
        ...
