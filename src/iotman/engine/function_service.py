"""Atomic functions (SPEC §4.2): ``POST /functions/{ws}/{name}`` and its ``/test``.

A function's body is JSONata with the request body as its input (``$`` and
``$input``) and host functions bound: ``$require(cond, status, message)`` and
``$fail(status, message)`` stop it with an answer of their status. It runs as its
worker (an OAuth2 client with ``is_worker``), in a worker thread, capped by
``function_timeout_ms`` and the ``jsonata_*`` limits.

Not yet here (issue 5, next increments): ``$iotman_call`` inside the function's store
transaction, ``$send_email`` through an outbox, ``$ftp_upload``.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from iotman.access.data_access import require_scope, require_token
from iotman.access.principal import Principal
from iotman.compute.jsonata_engine import (
    UNDEFINED,
    CompiledJsonata,
    EvalLimits,
    JsonataEngine,
    JsonataFailure,
    JsonataLimitExceeded,
)
from iotman.compute.jsonata_fields import compile_jsonata_field
from iotman.core.clock import Clock, SystemClock, format_us
from iotman.core.cron_job import CronJobDefinition
from iotman.core.function import FunctionDefinition
from iotman.core.sftp import SftpProfile, remote_target
from iotman.core.smtp import EMAIL_ADDRESS
from iotman.core.trigger import TriggerDefinition
from iotman.core.workspace import Workspace
from iotman.engine.admin_service import CRON_STATE, SFTP_PREFIX, TRIGGER_STATE
from iotman.engine.definition_kinds import CLIENT, FUNCTION
from iotman.engine.function_calls import ApiCalls
from iotman.engine.registry import Registry
from iotman.errors import (
    Conflict,
    FunctionAborted,
    FunctionCallFailed,
    FunctionFailed,
    InvalidJson,
    IotmanError,
    NotFound,
)
from iotman.export import sftp_upload
from iotman.storage.ports import Store, StoredEvent

__all__ = ["INVOKE_SCOPE", "FunctionRun", "FunctionService"]

INVOKE_SCOPE = "iotman:functions:invoke"
_CACHE_MAX = 1024


@dataclass
class FunctionRun:
    """What a run gave: its result (``None`` for undefined too) or the error that stopped it,
    and the host calls it made, in order."""

    result: Any = None
    error: FunctionAborted | FunctionFailed | FunctionCallFailed | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def answer(self) -> dict[str, Any]:
        return {"result": self.result}

    def report(self) -> dict[str, Any]:
        """The ``/test`` answer: the outcome and the calls, whatever the outcome."""
        if self.error is None:
            return {"ok": True, "result": self.result, "calls": self.calls}
        return {"ok": False, "error": self.error.to_dict(), "calls": self.calls}


def truthy(value: Any) -> bool:
    """JSONata's ``$boolean``: empty strings, zero, null, empty arrays and objects are false;
    an array is true when one of its members is."""
    if value is None or value is UNDEFINED:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str):
        return value != ""
    if isinstance(value, list):
        return any(truthy(item) for item in value)
    if isinstance(value, dict):
        return bool(value)
    return False  # a function


def _text(value: Any) -> str:
    """A host function's argument as text for answers and reports: strings as they are,
    numbers and other JSON as JSON, what JSON cannot hold (a function) as its kind."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return f"<{type(value).__name__}>"


def _abort_status(status: Any, host: str) -> int:
    if status is None:  # not given (or undefined): the default
        return 400
    if isinstance(status, bool) or not isinstance(status, int | float) or status != int(status):
        raise FunctionFailed(f"{host}: the status must be an integer from 400 to 599, not {status!r}")
    if not 400 <= int(status) <= 599:
        raise FunctionFailed(f"{host}: the status must be from 400 to 599 (an error answer), not {int(status)}")
    return int(status)


class _HostCalls:
    """The host functions of one run, recording each call."""

    def __init__(
        self, run: FunctionRun, api: ApiCalls, ws: Workspace, worker: Principal, store: Store, clock: Clock
    ) -> None:
        self._run = run
        self._api = api
        self._ws = ws
        self._worker = worker
        self._store = store
        self._clock = clock
        self.defined = False  # whether a call changed definitions (caches are dropped after commit)
        self.emailed = False
        self.dry_run = False  # a test run: nothing leaves the server (SFTP uploads are not made)

    def ftp_upload(self, profile_id: Any = None, remote_path: Any = None, content: Any = None) -> int:
        """Write ``content`` (text as UTF-8, anything else as JSON) through an SFTP profile, now:
        not undone if the function stops later. The bytes written."""
        if not isinstance(profile_id, str) or not isinstance(remote_path, str):
            raise FunctionFailed("$ftp_upload takes a profile id, a remote path and the content", code="invalid_upload")
        data = content.encode() if isinstance(content, str) else orjson.dumps(content)
        record: dict[str, Any] = {"function": "ftp_upload", "profile": profile_id, "path": remote_path}
        self._run.calls.append(record)
        raw = self._store.get_setting(self._ws.id, SFTP_PREFIX + profile_id)
        if raw is None:
            record["error"] = "unknown profile"
            raise FunctionFailed(f"$ftp_upload: no SFTP profile {profile_id!r}", code="sftp_profile_not_found")
        profile = SftpProfile.model_validate(raw)
        try:
            remote_target(profile.base_path, remote_path)
        except ValueError as exc:
            record["error"] = str(exc)
            raise FunctionFailed(f"$ftp_upload: {exc}", code="invalid_upload") from None
        if self.dry_run:
            record |= {"bytes": len(data), "performed": False}
            return len(data)
        try:
            written = sftp_upload.upload(profile, remote_path, data)
        except Exception as exc:  # noqa: BLE001 - any failure of the transfer stops the function
            record["error"] = f"{type(exc).__name__}: {exc}"[:500]
            raise FunctionFailed(
                f"$ftp_upload to {profile_id!r} failed: {record['error']}", code="upload_failed"
            ) from None
        record |= {"bytes": written, "performed": True}
        return written

    def send_email(self, to: Any = None, subject: Any = None, body: Any = None) -> int:
        """Queue an email in the function's transaction (sent after commit); its queue id."""
        recipients = [to] if isinstance(to, str) else to
        problem = None
        if not isinstance(recipients, list) or not recipients or len(recipients) > 50:
            problem = "to must be an email address or a list of 1 to 50 of them"
        elif not all(isinstance(r, str) and EMAIL_ADDRESS.fullmatch(r) for r in recipients):
            problem = f"to holds something that is not an email address: {recipients!r}"[:300]
        elif not isinstance(subject, str) or not 0 < len(subject) <= 998 or "\n" in subject or "\r" in subject:
            problem = "subject must be one line of 1 to 998 characters"
        elif not isinstance(body, str) or len(body) > 1_000_000:
            problem = "body must be text of at most 1,000,000 characters"
        if problem is not None:
            self._run.calls.append({"function": "send_email", "error": problem})
            raise FunctionFailed(f"$send_email: {problem}", code="invalid_email")
        assert isinstance(recipients, list)
        assert isinstance(subject, str)
        assert isinstance(body, str)
        email_id = self._store.enqueue_email(self._ws.id, recipients, subject, body, self._clock.now_us())
        self._run.calls.append({"function": "send_email", "to": recipients, "subject": subject, "id": email_id})
        self.emailed = True
        return email_id

    def iotman_call(self, method: Any = None, path: Any = None, body: Any = None) -> Any:
        record: dict[str, Any] = {"function": "iotman_call", "method": _text(method), "path": _text(path)}
        self._run.calls.append(record)
        try:
            answer = self._api.call(self._ws, self._worker, method, path, body, on_define=self._defining)
        except IotmanError as exc:
            record["error"] = exc.code
            raise FunctionCallFailed(exc, f"{_text(method)} {_text(path)}") from None
        record["status"] = answer.status
        return answer.body

    def _defining(self) -> None:
        self.defined = True

    def require(self, condition: Any = None, status: Any = 400, message: Any = "a requirement was not met") -> Any:
        self._run.calls.append({"function": "require", "ok": truthy(condition)})
        if truthy(condition):
            return condition
        raise FunctionAborted(_abort_status(status, "$require"), _text(message))

    def fail(self, status: Any = 400, message: Any = "the function failed") -> Any:
        self._run.calls.append({"function": "fail", "status": _text(status), "message": _text(message)})
        raise FunctionAborted(_abort_status(status, "$fail"), _text(message))


class FunctionService:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        jsonata: JsonataEngine,
        limits: EvalLimits,
        timeout_ms: int,
        api: ApiCalls,
        *,
        clock: Clock | None = None,
        on_email: Callable[[], None] | None = None,
        on_committed: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self.on_committed = on_committed
        """Called (from the running thread) with the workspace id after a function's work committed."""
        self._api = api
        self._clock = clock or SystemClock()
        self._on_email = on_email
        self._registry = registry
        self._jsonata = jsonata
        self._limits = replace(limits, timeout_s=timeout_ms / 1000 if timeout_ms > 0 else None)
        self._compiled: dict[tuple[int, str, int, int], CompiledJsonata] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _allow(ws: Workspace, principal: Principal | None, token_given: bool, scope: str, what: str) -> None:
        require_scope(ws.id, ws.slug, principal, token_given, scope, what)

    def _function(self, ws: Workspace, name: str) -> tuple[FunctionDefinition, CompiledJsonata, Principal]:
        record = self._store.get_definition(ws.id, FUNCTION.kind, name)
        if record is None:
            raise NotFound(f"function {name!r} does not exist in workspace {ws.slug!r}", code="function_not_found")
        definition = FunctionDefinition.model_validate(record.body)
        key = (ws.id, name, record.version, record.created_at_us)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = compile_jsonata_field(self._jsonata, definition.body, "body")
            with self._lock:
                if len(self._compiled) >= _CACHE_MAX:
                    self._compiled.clear()
                self._compiled[key] = compiled
        worker = self._store.get_definition(ws.id, CLIENT.kind, definition.worker)
        if worker is None or not worker.body.get("is_worker"):
            raise Conflict(
                f"function {name!r} runs as client {definition.worker!r}, which is missing or not a worker",
                code="worker_missing",
            )
        scopes = tuple(worker.body.get("scopes") or ())
        return definition, compiled, Principal("worker", ws.id, name=definition.worker, scopes=scopes)

    def check_caller(self, slug: str, principal: Principal | None, token_given: bool) -> None:
        """Whether the caller may run this workspace's functions at all (before its body is read)."""
        require_token(principal, token_given, "functions")
        self._allow(self._registry.workspace(slug), principal, token_given, INVOKE_SCOPE, "functions")

    def run(
        self, slug: str, name: str, body: bytes, principal: Principal | None, token_given: bool, *, keep: bool = True
    ) -> FunctionRun:
        """Run function ``name`` of workspace ``slug`` on ``body`` (JSON; empty: null) in one
        store transaction: kept when it returns a result (and ``keep``), undone when it stops."""
        ws = self._registry.workspace(slug)
        what = f"function {name!r}"
        # who may call this workspace's functions first: whether one exists is not for strangers
        self._allow(ws, principal, token_given, INVOKE_SCOPE, what)
        definition, compiled, worker = self._function(ws, name)
        if definition.required_scope is not None:
            self._allow(ws, principal, token_given, definition.required_scope, what)
        try:
            value = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError as exc:
            raise InvalidJson(f"the request body is not JSON: {exc}", position=exc.pos) from None
        run = FunctionRun()
        host = _HostCalls(run, self._api, ws, worker, self._store, self._clock)
        host.dry_run = not keep

        def body_in_transaction() -> None:
            # uncommitted definitions stay out of the shared caches, and shared ones (possibly
            # older than what this transaction defines) stay out of the function
            with self._registry.uncached():
                self._evaluate(compiled, value, run, host)
            if run.error is not None:
                raise _Undo

        try:
            self._store.transaction(body_in_transaction, keep=keep)
        except _Undo:
            pass
        finally:
            if host.defined:  # what the transaction defined (or undid) is read afresh
                self._registry.forget_definitions(ws)
        if keep and run.error is None:
            if host.emailed and self._on_email is not None:
                self._on_email()  # committed: the sender delivers now
            if self.on_committed is not None:
                self.on_committed(ws.id)
        return run

    def _evaluate(self, compiled: CompiledJsonata, value: Any, run: FunctionRun, host: _HostCalls) -> None:
        bindings = {
            "input": value,
            "require": host.require,
            "fail": host.fail,
            "iotman_call": host.iotman_call,
            "send_email": host.send_email,
            "ftp_upload": host.ftp_upload,
        }
        try:
            result = compiled.evaluate(value, bindings, self._limits)
        except (FunctionAborted, FunctionFailed, FunctionCallFailed) as exc:
            run.error = exc
            return
        except JsonataLimitExceeded as exc:
            run.error = FunctionFailed(
                f"the function was stopped: {exc.message}",
                code="function_limit_exceeded",
                details={"jsonata_code": exc.code},
            )
            return
        except JsonataFailure as exc:
            details: dict[str, Any] = {"jsonata_code": exc.code}
            run.error = FunctionFailed(f"the function failed: {exc.message}", position=exc.position, details=details)
            return
        run.result = None if result is UNDEFINED else result

    # triggers (SPEC §4.3) ----------------------------------------------------------------------
    def condition(self, ws: Workspace, trigger: TriggerDefinition, envelope: dict[str, Any]) -> tuple[bool, str | None]:
        """Whether ``envelope`` matches the trigger (or why the condition could not tell)."""
        key = (ws.id, "condition:" + trigger.name, hash(trigger.condition), 0)
        compiled = self._compiled.get(key)
        try:
            if compiled is None:
                compiled = compile_jsonata_field(self._jsonata, trigger.condition, "condition")
                with self._lock:
                    self._compiled[key] = compiled
            return truthy(compiled.evaluate(envelope, None, self._limits)), None
        except (JsonataFailure, IotmanError) as exc:
            return False, f"the condition failed: {getattr(exc, 'message', exc)}"

    def advance(self, ws: Workspace, trigger: TriggerDefinition, seq: int, now_us: int) -> None:
        """Past events that did not match: the trigger's cursor moves on."""

        def work() -> None:
            name = TRIGGER_STATE + trigger.name
            state = self._store.get_setting(ws.id, name)
            if state is not None and state.get("failing") is None and state["seq"] < seq:
                state["seq"] = seq
                self._store.put_setting(ws.id, name, state, now_us)

        self._store.transaction(work)

    def fire(
        self,
        ws: Workspace,
        trigger: TriggerDefinition,
        event: StoredEvent,
        envelope: dict[str, Any],
        condition_error: str | None,
        now_us: int,
    ) -> bool:
        """Fire the trigger's function for ``event`` and reply, in one transaction with the cursor;
        False when the trigger is failing now (it stays at this event)."""
        name = TRIGGER_STATE + trigger.name
        hosts: list[_HostCalls] = []

        def failing(state: dict[str, Any], code: str, message: str) -> bool:
            state["failing"] = {
                "code": code,
                "message": message[:1000],
                "event_id": event.id,
                "seq": event.seq,
                "at": format_us(now_us),
            }
            self._store.put_setting(ws.id, name, state, now_us)
            return False

        def work() -> bool:
            state = self._store.get_setting(ws.id, name)
            if state is None or state.get("failing") is not None or state["seq"] >= event.seq:
                return state is not None and state.get("failing") is None  # deleted, failing, or done
            if condition_error is not None:
                return failing(state, "condition_failed", condition_error)
            try:
                _, compiled, worker = self._function(ws, trigger.function)
            except IotmanError as exc:
                return failing(state, exc.code, exc.message)
            run = FunctionRun()
            host = _HostCalls(run, self._api, ws, worker, self._store, self._clock)
            hosts.append(host)

            def body() -> None:
                with self._registry.uncached():
                    self._evaluate(compiled, envelope, run, host)
                if run.error is not None:
                    raise _Undo

            with contextlib.suppress(_Undo):
                self._store.transaction(body)  # nested: a stop undoes the function, not the reply
            error = run.error
            if error is not None and not isinstance(error, FunctionAborted):
                return failing(state, error.code, error.message)
            state["fired"] = state.get("fired", 0) + 1
            if error is not None:
                state["aborted"] = state.get("aborted", 0) + 1
            if trigger.reply_to is not None:
                reply: dict[str, Any] = {"trigger": trigger.name, "event_id": event.id, "ok": error is None}
                if error is None:
                    reply["result"] = run.result
                else:
                    reply["error"] = {"status": error.status, "message": error.message}
                with self._registry.uncached():
                    self._api.reply(ws, worker, trigger.reply_to, reply)
                state["replied"] = state.get("replied", 0) + 1
            state["seq"] = event.seq
            self._store.put_setting(ws.id, name, state, now_us)
            return True

        fired = self._store.transaction(work)
        self._after_commit(ws, hosts, fired)
        return fired

    def _after_commit(self, ws: Workspace, hosts: list[_HostCalls], kept: bool) -> None:
        """What a committed (or undone) run leaves to do: fresh definitions, emails to send."""
        for host in hosts:
            if host.defined:
                self._registry.forget_definitions(ws)
            if host.emailed and kept and self._on_email is not None:
                self._on_email()

    # cron jobs (SPEC §4.4) ----------------------------------------------------------------------
    def run_cron(self, ws: Workspace, job: CronJobDefinition, tick_us: int, now_us: int) -> bool:
        """Run ``job`` for ``tick_us`` unless that tick is taken already (by another server on the
        store, or before a restart): the claim and the run commit together. Whether it ran."""
        name = CRON_STATE + job.name
        hosts: list[_HostCalls] = []

        def work() -> bool:
            state = self._store.get_setting(ws.id, name)
            if state is None or state.get("tick_us", 0) >= tick_us:
                return False
            state["tick_us"] = tick_us
            state["last_run"] = format_us(now_us)
            state["runs"] = state.get("runs", 0) + 1
            try:
                _, compiled, worker = self._function(ws, job.function)
            except IotmanError as exc:
                state["last_error"] = exc.to_dict()
                self._store.put_setting(ws.id, name, state, now_us)
                return True
            run = FunctionRun()
            host = _HostCalls(run, self._api, ws, worker, self._store, self._clock)
            hosts.append(host)

            def body() -> None:
                with self._registry.uncached():
                    self._evaluate(compiled, job.input, run, host)
                if run.error is not None:
                    raise _Undo

            with contextlib.suppress(_Undo):
                self._store.transaction(body)  # nested: a failed run is undone, its claim is kept
            state["last_error"] = None if run.error is None else run.error.to_dict()
            self._store.put_setting(ws.id, name, state, now_us)
            return True

        ran = self._store.transaction(work)
        self._after_commit(ws, hosts, ran)
        if ran and self.on_committed is not None:
            self.on_committed(ws.id)
        return ran


class _Undo(Exception):
    """Raised inside the transaction when the function stopped: everything it did is undone."""
