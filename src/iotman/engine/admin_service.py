"""Admin operations: workspaces, sources, tokens, quarantine (synchronous; run in threads)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from iotman.access.bearer_tokens import hash_token, new_token
from iotman.access.principal import Principal
from iotman.core.clock import Clock, format_us
from iotman.core.cron_job import CronJobDefinition
from iotman.core.ids import new_workspace_uuid
from iotman.core.scopes import check_scope, preset_scopes
from iotman.core.sftp import SftpProfile
from iotman.core.smtp import SmtpSettings
from iotman.core.webhook import HIDDEN, MQTT_PUSH_TARGET, WEBHOOK_TARGET, MqttPushDefinition, WebhookDefinition
from iotman.core.workspace import Workspace, check_slug
from iotman.engine.definition_checks import DefinitionChecks
from iotman.engine.definition_kinds import (
    CRON_JOB,
    FUNCTION,
    KINDS,
    MQTT_PUSH,
    OUTPUT,
    TAG_RULE,
    TRIGGER,
    VIEW,
    WEBHOOK,
    DefinitionKind,
)
from iotman.engine.registry import SERVER_WORKSPACE, Registry
from iotman.engine.view_rebuild import RebuildProgress, shadow_name
from iotman.errors import Conflict, DefinitionInvalid, NotFound
from iotman.storage.ports import DefinitionRecord, Delivery, OutboxEmail, QuarantineEntry, Store

__all__ = ["AdminService", "definition_error", "definition_json", "quarantine_json", "workspace_json"]

READ_ONLY_FIELDS = frozenset({"version", "created_at", "updated_at"})
"""Fields the API adds to a stored definition; accepted and ignored on input, so GET then PUT works."""


def workspace_json(ws: Workspace) -> dict[str, Any]:
    return {"slug": ws.slug, "uuid": ws.uuid, "created_at": format_us(ws.created_at_us)}


def definition_error(exc: ValidationError, kind: str) -> DefinitionInvalid:
    """The first pydantic error as a 422 naming the field; all errors in ``errors``."""
    errors = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
        msg = str(err["msg"]).removeprefix("Value error, ")
        errors.append({"field": loc, "message": msg})
    first = errors[0] if errors else {"field": None, "message": "invalid"}
    return DefinitionInvalid(
        f"{kind} is invalid: {first['field']}: {first['message']}"
        if first["field"]
        else f"{kind} is invalid: {first['message']}",
        field=first["field"] or None,
        details={"errors": errors},
    )


class AdminService:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock,
        rebuild_progress: Callable[[Workspace, str], RebuildProgress | None] | None = None,
    ) -> None:
        self._store = store
        self._rebuild_progress = rebuild_progress
        self._registry = registry
        self._clock = clock
        self._checks = DefinitionChecks(store, registry.jsonata)
        self.targets_changed: Callable[[], None] | None = None
        """Called when a webhook or MQTT push is saved or deleted (the sender reads them again)."""
        self.triggers_changed: Callable[[], None] | None = None
        """Called when a trigger is saved or deleted (the trigger runner reads them again)."""
        self.lane_status: Callable[[int, str], dict[str, Any]] | None = None
        """The delivery sender's view of a target (circuit breaker), set by the engine."""

    # workspaces --------------------------------------------------------------------
    def create_workspace(self, slug: str) -> Workspace:
        check_slug(slug)
        return self._store.create_workspace(slug, new_workspace_uuid(), self._clock.now_us())

    def list_workspaces(self) -> list[Workspace]:
        return self._store.list_workspaces()

    def workspace(self, slug: str) -> Workspace:
        return self._registry.workspace(slug)

    def delete_workspace(self, slug: str) -> None:
        ws = self._registry.workspace(slug)
        self._store.delete_workspace(ws.id)
        self._registry.forget_workspace(slug)

    # tokens --------------------------------------------------------------------------
    def create_token(
        self, slug: str, *, preset: str | None = None, scopes: list[str] | None = None, name: str = "bootstrap"
    ) -> tuple[str, tuple[str, ...]]:
        ws = self._registry.workspace(slug)
        granted: list[str] = list(preset_scopes(preset)) if preset else []
        for scope in scopes or []:
            granted.append(check_scope(scope))
        if not granted:
            raise DefinitionInvalid("give a --preset or at least one --scope", field="scope", code="no_scopes")
        token = new_token()
        self._store.create_token(ws.id, name, hash_token(token), tuple(granted), self._clock.now_us())
        return token, tuple(granted)

    def create_server_token(self, name: str = "server-admin") -> str:
        """A token bound to no workspace, with every iotman scope: it creates and manages workspaces."""
        token = new_token()
        self._store.create_token(SERVER_WORKSPACE, name, hash_token(token), ("iotman:*",), self._clock.now_us())
        return token

    def principal(self, token: str) -> Principal | None:
        return self._registry.principal(token)

    # definitions (every collection) ------------------------------------------------
    def _parse(self, kind: DefinitionKind, body: Any) -> Any:
        if not isinstance(body, dict):
            raise DefinitionInvalid(f"a {kind.label} definition must be a JSON object", code="invalid_definition")
        body = {k: v for k, v in body.items() if k not in READ_ONLY_FIELDS}
        try:
            return kind.model.model_validate(body)
        except ValidationError as exc:
            raise definition_error(exc, kind.label) from None

    def _stored(self, definition: Any) -> dict[str, Any]:
        stored: dict[str, Any] = definition.stored()
        return stored

    def create(self, slug: str, collection: str, body: Any, caller: Principal | None = None) -> DefinitionRecord:
        """``caller``: who asks (functions and clients may not grant scopes the caller lacks)."""
        kind = KINDS[collection]
        ws = self._registry.workspace(slug)
        definition = self._parse(kind, body)
        stored = self._stored(definition)
        self._checks.check(ws, kind, definition, stored, caller)
        if kind in PUSH_TARGETS:
            # rows a deleted namesake may have left behind (a batch prepared before the delete) are not its
            self._store.delete_deliveries(ws.id, PUSH_TARGETS[kind] + definition.name)
        record = self._store.create_definition(
            ws.id, kind.kind, definition.name, kind.parse_path(stored), stored, self._clock.now_us()
        )
        self._after_change(ws, kind, definition)
        return record

    def replace(
        self, slug: str, collection: str, name: str, body: Any, caller: Principal | None = None
    ) -> DefinitionRecord:
        kind = KINDS[collection]
        ws = self._registry.workspace(slug)
        if isinstance(body, dict):
            body = {**body}
            if body.setdefault("name", name) != name:
                raise DefinitionInvalid(
                    f"name {body['name']!r} differs from {name!r} in the URL; a {kind.label} cannot be renamed",
                    field="name",
                    code="name_mismatch",
                )
        definition = self._parse(kind, body)
        definition = self._keep_secrets(ws, kind, name, definition)
        stored = self._stored(definition)
        self._checks.check(ws, kind, definition, stored, caller)
        record = self._store.replace_definition(
            ws.id, kind.kind, name, kind.parse_path(stored), stored, self._clock.now_us()
        )
        self._after_change(ws, kind, definition)
        return record

    def _keep_secrets(self, ws: Workspace, kind: DefinitionKind, name: str, definition: Any) -> Any:
        """A replacement keeps the stored secrets it could not send back: a webhook's secret
        (omitted) and hidden header values, an MQTT push's hidden broker password."""
        if kind is MQTT_PUSH and ":***@" in definition.broker:
            # a read sent back: the password it hid stays
            old = self._store.get_definition(ws.id, kind.kind, name)
            if old is not None:
                hidden = MqttPushDefinition.model_validate(old.body)
                if hidden.public()["broker"] == definition.broker:
                    definition = definition.model_copy(update={"broker": hidden.broker})
        if kind is WEBHOOK:
            old = self._store.get_definition(ws.id, kind.kind, name)
            if old is not None:
                update: dict[str, Any] = {}
                if definition.secret is None:
                    # omitted: the stored secret stays (it is shown once, so a client cannot send it back)
                    update["secret"] = old.body.get("secret")
                hidden_names = [k for k, v in definition.headers.items() if v == HIDDEN]
                if hidden_names:
                    # a read sent back: hidden values stay as stored, but only for the same URL
                    kept = {k.lower(): v for k, v in (old.body.get("headers") or {}).items()}
                    if definition.url != old.body.get("url"):
                        raise DefinitionInvalid(
                            f"header {hidden_names[0]!r} is hidden and the url changed: send its value again",
                            field="headers",
                        )
                    missing = [k for k in hidden_names if k.lower() not in kept]
                    if missing:
                        raise DefinitionInvalid(
                            f"header {missing[0]!r} has no stored value to keep; send its value", field="headers"
                        )
                    update["headers"] = {
                        k: kept[k.lower()] if v == HIDDEN else v for k, v in definition.headers.items()
                    }
                if update:
                    definition = definition.model_copy(update=update)
        return definition

    def delete(self, slug: str, collection: str, name: str) -> None:
        kind = KINDS[collection]
        ws = self._registry.workspace(slug)
        self._checks.check_unused(ws, kind, name)
        self._store.delete_definition(ws.id, kind.kind, name)
        if kind is TRIGGER:
            self._store.delete_setting(ws.id, TRIGGER_STATE + name)
            if self.triggers_changed is not None:
                self.triggers_changed()
        if kind is CRON_JOB:
            self._store.delete_setting(ws.id, CRON_STATE + name)
        if kind in PUSH_TARGETS:
            self._store.delete_deliveries(ws.id, PUSH_TARGETS[kind] + name)
            if self.targets_changed is not None:
                self.targets_changed()
        # forgotten before its rows go: an append still folding the view cannot leave rows behind
        # for a later view of the same name (a fold already queued may; the next delete clears it)
        self._registry.forget_definitions(ws)
        if kind is VIEW:
            self._store.delete_view_rows(ws.id, name)
            self._store.delete_view_rows(ws.id, shadow_name(name))

    def get(self, slug: str, collection: str, name: str, *, reveal: bool = False) -> dict[str, Any]:
        """``reveal``: include secrets (the answer to a create: a webhook's secret is shown once)."""
        kind = KINDS[collection]
        ws = self._registry.workspace(slug)
        record = self._definition(ws, kind, name)
        out = self._json(ws, kind, record)
        if reveal and kind is WEBHOOK:
            out["secret"] = record.body.get("secret")
            out["headers"] = record.body.get("headers") or {}
        return out

    def _definition(self, ws: Workspace, kind: DefinitionKind, name: str) -> DefinitionRecord:
        record = self._store.get_definition(ws.id, kind.kind, name)
        if record is None:
            code = kind.kind.replace("-", "_") + "_not_found"
            raise NotFound(f"{kind.label} {name!r} does not exist", code=code, field="name")
        return record

    # deliveries of webhooks and MQTT pushes ------------------------------------------------
    def deliveries(
        self, slug: str, collection: str, name: str, state: str | None, limit: int, before_id: int | None
    ) -> tuple[list[dict[str, Any]], int | None]:
        kind = KINDS[collection]
        ws = self._registry.workspace(slug)
        self._definition(ws, kind, name)
        self._store.flush()
        found = self._store.list_deliveries(ws.id, PUSH_TARGETS[kind] + name, state, before_id, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        return [delivery_json(d) for d in found], found[-1].id if more and found else None

    def replay(self, slug: str, collection: str, name: str, delivery_id: int | None) -> int:
        """Dead deliveries (one, or all of the target) pending again with fresh attempts."""
        kind = KINDS[collection]
        ws = self._registry.workspace(slug)
        self._definition(ws, kind, name)
        count = self._store.replay_deliveries(ws.id, PUSH_TARGETS[kind] + name, delivery_id, self._clock.now_us())
        if delivery_id is not None and count == 0:
            raise NotFound(
                f"{kind.label} {name!r} has no dead delivery {delivery_id}", code="delivery_not_found", field="id"
            )
        return count

    def list_definitions(self, slug: str, collection: str) -> list[dict[str, Any]]:
        kind = KINDS[collection]
        ws = self._registry.workspace(slug)
        return [self._json(ws, kind, r) for r in self._store.list_definitions(ws.id, kind.kind)]

    def _json(self, ws: Workspace, kind: DefinitionKind, record: DefinitionRecord) -> dict[str, Any]:
        out = definition_json(record)
        if kind is TAG_RULE:
            out["status"] = self._registry.rule_status(ws, record.name, record.version).to_json()
        elif kind is OUTPUT:
            out["status"] = self._registry.output_status(ws, record.name).to_json()
        elif kind is VIEW:
            out["status"] = self._registry.view_status(ws, record.name).to_json()
            progress = self._rebuild_progress(ws, record.name) if self._rebuild_progress else None
            out["status"]["rebuild"] = None if progress is None else progress.to_json()
        elif kind is TRIGGER:
            out["status"] = trigger_status_json(self._store.get_setting(ws.id, TRIGGER_STATE + record.name))
        elif kind in PUSH_TARGETS:
            out.pop("secret", None)
            if kind is WEBHOOK:
                out["headers"] = WebhookDefinition.hidden_headers(record.body.get("headers") or {})
            if kind is MQTT_PUSH:
                out["broker"] = MqttPushDefinition.model_validate(record.body).public()["broker"]
            target = PUSH_TARGETS[kind] + record.name
            out["status"] = {"deliveries": self._store.delivery_counts(ws.id, target)}
            if self.lane_status is not None:
                out["status"].update(self.lane_status(ws.id, target))
        elif kind is CRON_JOB:
            job = CronJobDefinition.model_validate(record.body)
            state = self._store.get_setting(ws.id, CRON_STATE + record.name) or {}
            out["status"] = {
                "last_run": state.get("last_run"),
                "next_run": format_us(job.next_tick_us(self._clock.now_us())),
                "runs": state.get("runs", 0),
                "last_error": state.get("last_error"),
            }
        return out

    def _after_change(self, ws: Workspace, kind: DefinitionKind, definition: Any) -> None:
        if kind in PUSH_TARGETS and self.targets_changed is not None:
            self.targets_changed()
        if kind is TRIGGER and self.triggers_changed is not None:
            self.triggers_changed()
        if kind is OUTPUT and definition.select.tags:
            self._store.ensure_tag_index(definition.select.tags)
        if kind is TRIGGER:
            name = TRIGGER_STATE + definition.name
            state = self._store.get_setting(ws.id, name)
            if state is None:  # a new trigger watches what comes from now on
                state = {"seq": self._store.last_seq(ws.id), "fired": 0, "replied": 0, "aborted": 0}
            state.pop("failing", None)  # a changed trigger tries again where it stopped
            self._store.put_setting(ws.id, name, state, self._clock.now_us())
        if kind is CRON_JOB:
            name = CRON_STATE + definition.name
            state = self._store.get_setting(ws.id, name) or {"runs": 0}
            # a new or changed schedule starts with the next tick, not one already past
            state["tick_us"] = definition.last_tick_us(self._clock.now_us())
            self._store.put_setting(ws.id, name, state, self._clock.now_us())
        if kind is FUNCTION:  # so does a trigger whose function changed
            for record in self._store.list_definitions(ws.id, TRIGGER.kind):
                state = self._store.get_setting(ws.id, TRIGGER_STATE + record.name)
                if record.body.get("function") == definition.name and state and state.pop("failing", None):
                    self._store.put_setting(ws.id, TRIGGER_STATE + record.name, state, self._clock.now_us())
        self._registry.forget_definitions(ws)

    # compatibility helpers (CLI and tests) ----------------------------------------------
    def create_source(self, slug: str, body: Any) -> DefinitionRecord:
        return self.create(slug, "sources", body)

    def list_sources(self, slug: str) -> list[dict[str, Any]]:
        return self.list_definitions(slug, "sources")

    # quarantine ----------------------------------------------------------------------
    # settings/smtp and the email outbox ----------------------------------------------------
    def smtp_settings(self, slug: str) -> dict[str, Any]:
        ws = self._registry.workspace(slug)
        raw = self._store.get_setting(ws.id, "smtp")
        if raw is None:
            raise NotFound(f"workspace {slug!r} has no SMTP settings; PUT them first", code="smtp_not_set")
        return SmtpSettings.model_validate(raw).public()

    def put_smtp_settings(self, slug: str, body: Any) -> dict[str, Any]:
        ws = self._registry.workspace(slug)
        try:
            settings = SmtpSettings.model_validate(body)
        except ValidationError as exc:
            raise definition_error(exc, "SMTP settings") from None
        if settings.password is None and "password" not in (body or {}):
            # omitted: the stored password stays (it is never read back, so a client cannot resend it)
            stored = self._store.get_setting(ws.id, "smtp")
            if stored is not None and stored.get("password") is not None:
                settings = settings.model_copy(update={"password": stored["password"]})
        self._store.put_setting(ws.id, "smtp", settings.model_dump(mode="json"), self._clock.now_us())
        return settings.public()

    def delete_smtp_settings(self, slug: str) -> None:
        ws = self._registry.workspace(slug)
        if not self._store.delete_setting(ws.id, "smtp"):
            raise NotFound(f"workspace {slug!r} has no SMTP settings", code="smtp_not_set")

    # settings/sftp-profiles ------------------------------------------------------------------
    def sftp_profiles(self, slug: str) -> list[dict[str, Any]]:
        ws = self._registry.workspace(slug)
        return [SftpProfile.model_validate(body).public() for _, body in self._store.list_settings(ws.id, SFTP_PREFIX)]

    def sftp_profile(self, slug: str, name: str) -> dict[str, Any]:
        return self._sftp_profile(self._registry.workspace(slug), name).public()

    def _sftp_profile(self, ws: Workspace, name: str) -> SftpProfile:
        raw = self._store.get_setting(ws.id, SFTP_PREFIX + name)
        if raw is None:
            raise NotFound(f"SFTP profile {name!r} does not exist", code="sftp_profile_not_found")
        return SftpProfile.model_validate(raw)

    def put_sftp_profile(self, slug: str, body: Any, name: str | None = None) -> dict[str, Any]:
        """Create (``name`` None: 409 if it exists) or replace a profile; omitted secrets are kept."""
        ws = self._registry.workspace(slug)
        try:
            profile = SftpProfile.model_validate(body)
        except ValidationError as exc:
            raise definition_error(exc, "SFTP profile") from None
        stored = self._store.get_setting(ws.id, SFTP_PREFIX + profile.name)
        if name is None and stored is not None:
            raise Conflict(f"SFTP profile {profile.name!r} already exists", code="already_exists", field="name")
        if name is not None:
            if profile.name != name:
                raise DefinitionInvalid("the body's name must be the URL's", code="name_mismatch", field="name")
            if stored is None:
                raise NotFound(f"SFTP profile {name!r} does not exist", code="sftp_profile_not_found")
            kept = {k: stored[k] for k in ("password", "private_key") if k not in (body or {}) and stored.get(k)}
            profile = profile.model_copy(update=kept)
        self._store.put_setting(
            ws.id, SFTP_PREFIX + profile.name, profile.model_dump(mode="json"), self._clock.now_us()
        )
        return profile.public()

    def delete_sftp_profile(self, slug: str, name: str) -> None:
        ws = self._registry.workspace(slug)
        if not self._store.delete_setting(ws.id, SFTP_PREFIX + name):
            raise NotFound(f"SFTP profile {name!r} does not exist", code="sftp_profile_not_found")

    def email_outbox(self, slug: str, limit: int, before_id: int | None) -> tuple[list[dict[str, Any]], int | None]:
        ws = self._registry.workspace(slug)
        emails = self._store.list_emails(ws.id, before_id, limit + 1)
        more = len(emails) > limit
        emails = emails[:limit]
        return [email_json(e) for e in emails], emails[-1].id if more and emails else None

    def quarantine(self, slug: str, limit: int, before_id: int | None) -> tuple[list[dict[str, Any]], int | None]:
        ws = self._registry.workspace(slug)
        self._store.flush()
        entries = self._store.list_quarantine(ws.id, limit + 1, before_id)
        more = len(entries) > limit
        entries = entries[:limit]
        next_id = entries[-1].id if more and entries else None
        return [quarantine_json(e) for e in entries], next_id


SFTP_PREFIX = "sftp-profile:"
PUSH_TARGETS = {WEBHOOK: WEBHOOK_TARGET, MQTT_PUSH: MQTT_PUSH_TARGET}
"""The delivery target prefix of each kind that pushes matches."""
TRIGGER_STATE = "trigger:"
CRON_STATE = "cron:"
"""Where a cron job keeps its last claimed tick, its runs and its last error."""
"""Where a trigger keeps how far it has read its source, its counters and whether it is failing."""


def trigger_status_json(state: dict[str, Any] | None) -> dict[str, Any]:
    state = state or {}
    return {
        "seq": state.get("seq"),
        "fired": state.get("fired", 0),
        "replied": state.get("replied", 0),
        "aborted": state.get("aborted", 0),
        "failing": state.get("failing") is not None,
        "last_error": state.get("failing") or state.get("last_error"),
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "seq": delivery.seq,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "created_at": format_us(delivery.created_at_us),
        "next_attempt_at": format_us(delivery.next_attempt_us) if delivery.state == "pending" else None,
        "done_at": None if delivery.done_at_us is None else format_us(delivery.done_at_us),
        "last_status": delivery.last_status,
        "last_latency_ms": None if delivery.last_latency_us is None else round(delivery.last_latency_us / 1000, 3),
        "last_error": delivery.last_error,
    }


def email_json(email: OutboxEmail) -> dict[str, Any]:
    return {
        "id": email.id,
        "created_at": format_us(email.created_at_us),
        "to": email.recipients,
        "subject": email.subject,
        "state": email.state,
        "attempts": email.attempts,
        "next_attempt_at": format_us(email.next_attempt_us) if email.state == "pending" else None,
        "sent_at": None if email.sent_at_us is None else format_us(email.sent_at_us),
        "last_error": email.last_error,
    }


def quarantine_json(entry: QuarantineEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": format_us(entry.at_us),
        "source": entry.source,
        "reason": entry.reason,
        "message": entry.message,
        "principal": entry.principal,
        "content_type": entry.content_type,
        "body_size": entry.body_size,
        "body_head": entry.body_head.decode("utf-8", errors="replace"),
        "body_head_base64": base64.b64encode(entry.body_head).decode(),
        **({"details": entry.details} if entry.details else {}),
    }


def definition_json(record: DefinitionRecord) -> dict[str, Any]:
    return {
        **record.body,
        "version": record.version,
        "created_at": format_us(record.created_at_us),
        "updated_at": format_us(record.updated_at_us),
    }
