"""The ingest path (DESIGN.md "The ingest transaction"): resolve, authorise, decode,
validate, stamp, append with group commit, answer after commit.

Every refusal after the workspace is known is recorded in the quarantine.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from iotman.access.data_access import DATA_WRITE, authorise_data
from iotman.access.principal import ANONYMOUS, Principal
from iotman.connect.body_decoder import decode_body
from iotman.connect.json_codec import dump_json
from iotman.connect.schema_check import schema_rejection
from iotman.core.clock import Clock, format_us
from iotman.core.source import SchemaMode, SourceAuth
from iotman.core.workspace import Workspace
from iotman.engine.async_bridge import CompletionRelay
from iotman.engine.registry import CompiledSource, DeliveryTarget, ReadTarget, Registry
from iotman.errors import IotmanError, NotFound
from iotman.metrics import Metrics
from iotman.process.output_select import selects
from iotman.storage.ports import AppendBatch, AppendResult, QuarantineEntry, Store, ViewFold

__all__ = ["IngestAnswer", "IngestService", "QuarantineLimiter"]

T = TypeVar("T")
BODY_HEAD_BYTES = 1024
INLINE_BODY_BYTES = 8 * 1024
"""Bodies up to this size are prepared on the event loop; larger ones in a worker thread."""


@dataclass(slots=True)
class IngestAnswer:
    body: bytes
    replayed: bool
    events: int


class QuarantineLimiter:
    """Token buckets so a flood of bad requests cannot flood the store.

    One bucket per source, and one per workspace shared by every unknown path, so
    requests to random paths cannot crowd out the refusals of a real source.
    """

    def __init__(self, rate_per_s: float = 200.0, burst: float = 400.0) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._buckets: dict[tuple[int, str | None], tuple[float, float]] = {}

    def allow(self, workspace_id: int, source_path: str | None) -> bool:
        key = (workspace_id, source_path)
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if len(self._buckets) > 100_000:
            self._buckets.clear()
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True


def check_source_auth(source: CompiledSource, principal: Principal | None, token_given: bool) -> Principal:
    """Who may append to ``source`` (iotman:data:write, or the source's required_scope)."""
    definition = source.definition
    found = authorise_data(
        principal,
        token_given=token_given,
        workspace_id=source.workspace.id,
        workspace_slug=source.workspace.slug,
        mode=definition.auth.value,
        required_scope=definition.required_scope,
        default_scope=DATA_WRITE,
        what=f"source {definition.name!r}",
    )
    return found or ANONYMOUS


class IngestService:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock,
        metrics: Metrics,
        reads: Executor,
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._metrics = metrics
        self._reads = reads
        self._relay: CompletionRelay | None = None
        self._limiter = QuarantineLimiter()
        self._metadata_cache: dict[tuple[Principal, str | None], str] = {}

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reads, fn, *args)

    # resolution ------------------------------------------------------------------
    async def workspace(self, slug: str) -> Workspace:
        ws = self._registry.cached_workspace(slug)
        return ws if ws is not None else await self._blocking(self._registry.workspace, slug)

    def cached_source(self, slug: str, path: str) -> CompiledSource | None:
        """The source when both it and its workspace are cached (no await on the hot path)."""
        ws = self._registry.cached_workspace(slug)
        return None if ws is None else self._registry.cached_source(ws, path)

    def quick_authorise(self, source: CompiledSource, token: str | None) -> Principal | None:
        """The principal when it can be decided without the store, else None (call ``authorise``)."""
        if token is None:
            return ANONYMOUS if source.definition.auth is SourceAuth.NONE else None
        principal = self._registry.cached_principal(token)
        if principal is None:
            return None
        try:
            return check_source_auth(source, principal, True)
        except IotmanError:
            return None  # let authorise() record the refusal

    async def resolve(self, slug: str, path: str) -> CompiledSource:
        ws = await self.workspace(slug)
        source = self._registry.cached_source(ws, path)
        if source is None:
            try:
                source = await self._blocking(self._registry.source, ws, path)
            except NotFound as exc:
                self.record_refusal(ws, path, exc, None)
                raise
        return source

    async def read_target(self, slug: str, path: str) -> ReadTarget:
        ws = await self.workspace(slug)
        target = self._registry.cached_read_target(ws, path)
        return target if target is not None else await self._blocking(self._registry.read_target, ws, path)

    async def principal_for(self, authorization_token: str | None) -> Principal | None:
        if authorization_token is None:
            return None
        principal = self._registry.cached_principal(authorization_token)
        if principal is None:
            principal = await self._blocking(self._registry.principal, authorization_token)
        return principal

    async def authorise(self, source: CompiledSource, token: str | None) -> Principal:
        if source.definition.auth is SourceAuth.NONE and token is None:
            return ANONYMOUS
        principal = await self.principal_for(token)
        try:
            return check_source_auth(source, principal, token is not None)
        except IotmanError as exc:
            self.record_refusal(source.workspace, source.path, exc, principal)
            raise

    # acceptance ------------------------------------------------------------------
    async def accept(
        self,
        source: CompiledSource,
        principal: Principal,
        body: bytes,
        *,
        content_type: str,
        content_encoding: str = "",
        batch: bool = False,
        idempotency_key: str | None = None,
        source_ip: str | None = None,
    ) -> IngestAnswer:
        if self._registry.cached_tag_set(source.workspace) is None:
            await self._blocking(self._registry.tag_set, source.workspace)
        args = (source, principal, body, content_type, content_encoding, batch, idempotency_key, source_ip)
        try:
            if len(body) > INLINE_BODY_BYTES:
                # decoding, validating and tagging a large batch would stall every other request
                append = await self._blocking(self._prepare, *args)
            else:
                append = self._prepare(*args)
        except IotmanError as exc:
            self.record_refusal(source.workspace, source.path, exc, principal, body, content_type)
            raise
        outcome = await self._append(append)
        if isinstance(outcome, IotmanError):
            self._metrics.ingest_requests.labels(outcome.code).inc()
            raise outcome
        if self.on_appended is not None:
            self.on_appended(source.workspace.id)
        self._metrics.ingest_events.inc(len(outcome.ids))
        return IngestAnswer(_answer(outcome, append.batch), outcome.replayed, len(outcome.ids))

    on_appended: Callable[[int], None] | None = None
    """Called with the workspace id after an append committed (wakes triggers and live streams)."""

    def accept_now(
        self, source: CompiledSource, principal: Principal, body: bytes, *, content_type: str, batch: bool = False
    ) -> IngestAnswer:
        """``accept`` in the caller's thread, without the quarantine (a function's ``$iotman_call``:
        inside its transaction, the append is undone with it)."""
        prepared = self._prepare(source, principal, body, content_type, "", batch, None, None)
        result = self._store.append(prepared)
        self._metrics.ingest_events.inc(len(result.ids))
        return IngestAnswer(_answer(result, prepared.batch), result.replayed, len(result.ids))

    def _prepare(
        self,
        source: CompiledSource,
        principal: Principal,
        body: bytes,
        content_type: str,
        content_encoding: str,
        batch: bool,
        idempotency_key: str | None,
        source_ip: str | None,
    ) -> AppendBatch:
        definition = source.definition
        decoded = decode_body(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            mode=definition.decode,
            batch=batch,
            limit=source.max_body_bytes,
        )
        values = decoded.values
        metadata_text = self._metadata_text(principal, source_ip)
        warnings: list[dict[str, Any]] = []
        metadata_texts: list[str] | None = None
        if source.schema is not None and definition.schema_mode is not SchemaMode.OFF:
            problems = source.schema.problems(values)
            if problems and definition.schema_mode is SchemaMode.REJECT:
                raise schema_rejection(problems, decoded.batch)
            warnings = problems
        payloads = [dump_json(v) for v in values]
        received_at_us = self._clock.now_us()
        tag_values = self._tags(source, values, metadata_text, received_at_us)
        tags = None if tag_values is None else [None if t is None else dump_json(t) for t in tag_values]
        targets = self._registry.cached_delivery_targets(source.workspace)
        if targets is None:
            targets = self._registry.delivery_targets(source.workspace)
        deliveries = _deliveries(targets, definition.name, tag_values, len(values)) if targets else None
        views = self._registry.cached_views(source.workspace)
        if views is None:
            views = self._registry.views(source.workspace)
        folds: list[ViewFold] = [v for v in views if v.applies_to(definition.name)]
        if warnings:
            # warn mode keeps the errors with each event (SPEC §2.1: metadata.schema_errors)
            per_event = {w["index"]: w["errors"] for w in warnings}
            metadata = orjson.loads(metadata_text)
            metadata_texts = [
                orjson.dumps({**metadata, "schema_errors": per_event[i]}).decode() if i in per_event else metadata_text
                for i in range(len(values))
            ]
        fingerprint = ""
        if idempotency_key is not None:
            fingerprint = hashlib.blake2b(
                content_type.encode() + b"\n" + content_encoding.encode() + b"\n" + body, digest_size=16
            ).hexdigest()
        return AppendBatch(
            workspace_id=source.workspace.id,
            source=definition.name,
            payloads=payloads,
            metadata=metadata_text,
            received_at_us=received_at_us,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            # keys are per sender: two devices using the same counter never collide
            idempotency_scope=f"{source.path}|{principal.identity}" + ("#batch" if decoded.batch else ""),
            event_metadata=metadata_texts,
            tags=tags,
            batch=decoded.batch,
            folds=folds or None,
            payload_values=values if folds else None,
            deliveries=deliveries or None,
        )

    def _tags(
        self, source: CompiledSource, values: list[Any], metadata_text: str, received_at_us: int
    ) -> list[dict[str, Any] | None] | None:
        """Tags of each event (SPEC §3.1), or None when no rule applies to this source."""
        tag_set = self._registry.cached_tag_set(source.workspace) or self._registry.tag_set(source.workspace)
        name = source.definition.name
        program = tag_set.program(name)
        if program is None:
            return None
        received_at = format_us(received_at_us)
        metadata: dict[str, Any] | None = None
        out: list[dict[str, Any] | None] = []
        for value in values:

            def envelope(value: Any = value) -> dict[str, Any]:
                nonlocal metadata
                if metadata is None:
                    metadata = {**orjson.loads(metadata_text), "received_at": received_at}
                return {"payload": value, "metadata": metadata, "source": name, "received_at": received_at}

            out.append(program(value, envelope, name, received_at_us))
        return out if any(t is not None for t in out) else None

    def _metadata_text(self, principal: Principal, source_ip: str | None) -> str:
        """The stored metadata of a request; the same for every request of a device, so cached."""
        key = (principal, source_ip)
        text = self._metadata_cache.get(key)
        if text is None:
            metadata = {
                "source_ip": source_ip,
                "auth_method": principal.auth_method,
                "oauth2_client_id": principal.name if principal.kind in ("token", "worker") else None,
                "ingest_context": _ingest_context(principal),
            }
            text = orjson.dumps(metadata).decode()
            if len(self._metadata_cache) >= 10_000:
                self._metadata_cache.clear()
            self._metadata_cache[key] = text
        return text

    async def _append(self, batch: AppendBatch) -> AppendResult | IotmanError:
        if self._relay is None:
            self._relay = CompletionRelay(asyncio.get_running_loop())
        future, done = self._relay.waiter()
        self._store.submit(batch, done)
        outcome: AppendResult | IotmanError = await future
        return outcome

    # quarantine --------------------------------------------------------------------
    def record_refusal(
        self,
        ws: Workspace,
        path: str | None,
        error: IotmanError,
        principal: Principal | None,
        body: bytes = b"",
        content_type: str | None = None,
        body_size: int | None = None,
    ) -> None:
        self._metrics.ingest_requests.labels(error.code).inc()
        known = None if error.code == "source_not_found" else path
        if not self._limiter.allow(ws.id, known):
            self._metrics.quarantine_dropped.inc()
            return
        self._metrics.quarantined.labels(error.code).inc()
        details: dict[str, Any] = {}
        if error.position is not None:
            details["position"] = error.position
        if "errors" in error.details:
            details["errors"] = error.details["errors"]
        self._store.add_quarantine(
            QuarantineEntry(
                workspace_id=ws.id,
                at_us=self._clock.now_us(),
                reason=error.code,
                message=error.message,
                source=path,
                principal=(principal or ANONYMOUS).label,
                content_type=content_type,
                body_size=len(body) if body_size is None else body_size,
                body_head=body[:BODY_HEAD_BYTES],
                details=details,
            )
        )


def _deliveries(
    targets: list[DeliveryTarget], source: str, tags: list[dict[str, Any] | None] | None, count: int
) -> list[tuple[int, str]]:
    """(event index, target) of each webhook or MQTT push delivery the events make."""
    out: list[tuple[int, str]] = []
    for target in targets:
        if target.sources is not None and source not in target.sources:
            continue
        if not target.tags:
            out.extend((i, target.key) for i in range(count))
        elif tags is not None:
            out.extend((i, target.key) for i, t in enumerate(tags) if selects(None, target.tags, source, t))
    return out


def _ingest_context(principal: Principal) -> dict[str, Any]:
    if principal.kind == "anonymous":
        return {}
    return {"sub": principal.label, "client_id": principal.name, "scope": " ".join(principal.scopes)}


def _answer(result: AppendResult, batch: bool) -> bytes:
    if batch:
        return orjson.dumps({"ids": result.ids, "first_seq": result.first_seq, "last_seq": result.last_seq})
    return orjson.dumps({"id": result.ids[0], "seq": result.first_seq})
