"""SPEC §11 reference designs, end to end (the ones whose parts exist so far)."""

from __future__ import annotations

import json
from typing import Any

from iotman.storage.ports import EventQuery
from tests.conftest import Api, wait_for

ROUTE = """(
  $row := $iotman_call("GET", "/views/acme/routing/data?key=" & $input.payload.device_id).data[0].value;
  $require($row, 422, "unregistered device");
  $iotman_call("POST", "/data/acme/" & $row.channel, $merge([$input.payload, {"owner": $row.owner}]));
  {"to": $row.channel}
)"""


def payloads(api: Api, source: str) -> list[Any]:
    ws = api.engine.registry.workspace(api.ws)
    events = api.engine.store.read_events(EventQuery(ws.id, sources=(source,), limit=1000, descending=False))
    return [json.loads(e.payload) for e in events]


def test_5_view_driven_routing(api: Api) -> None:
    """A routing view folded from registrations decides where each ingested event goes."""
    for source in ("ingest", "registrations", "route-results"):
        api.source(name=source)
    for channel, scope in (("alice", "tenant:alice"), ("bob", "tenant:bob")):
        api.source(name=channel, auth="oauth2", required_scope=scope)  # each gated by its own scope
    view = {
        "name": "routing",
        "sources": ["registrations"],
        "key": "payload.device_id",
        "reducer": "{'owner': event.payload.owner, 'channel': event.payload.channel}",
    }
    assert api.admin("POST", "/views", json=view).status_code == 201
    scopes = ["iotman:data:read", "tenant:alice", "tenant:bob"]
    api.admin("POST", "/clients", json={"name": "router", "scopes": scopes, "is_worker": True})
    assert api.admin("POST", "/functions", json={"name": "route", "body": ROUTE, "worker": "router"}).status_code == 201
    trigger = {"name": "route-ingest", "source": "ingest", "function": "route", "reply_to": "route-results"}
    assert api.admin("POST", "/triggers", json=trigger).status_code == 201

    api.post("registrations", json.dumps({"device_id": "d-1", "owner": "alice", "channel": "alice"}))
    api.post("ingest", json.dumps({"device_id": "d-1", "t": 20.5}))
    api.post("ingest", json.dumps({"device_id": "ghost", "t": 1}))
    wait_for(lambda: len(payloads(api, "route-results")) == 2, what="two routing replies")
    assert payloads(api, "alice") == [{"device_id": "d-1", "t": 20.5, "owner": "alice"}]
    unregistered = payloads(api, "route-results")[1]
    assert unregistered["ok"] is False
    assert unregistered["error"] == {"status": 422, "message": "unregistered device"}

    # re-assigning a device is one more registration: later events follow the new owner
    api.post("registrations", json.dumps({"device_id": "d-1", "owner": "bob", "channel": "bob"}))
    api.post("ingest", json.dumps({"device_id": "d-1", "t": 21.0}))
    wait_for(lambda: len(payloads(api, "route-results")) == 3, what="the third reply")
    assert payloads(api, "bob") == [{"device_id": "d-1", "t": 21.0, "owner": "bob"}]
    assert len(payloads(api, "alice")) == 1
    # a token with alice's scope can read her channel, not bob's
    alice = api.token_for("tenant:alice")
    assert api.post("alice", "{}", headers={"Authorization": f"Bearer {alice}"}).status_code == 202
    assert api.post("bob", "{}", headers={"Authorization": f"Bearer {alice}"}).status_code == 403


ROLLUP = """(
  $page := $iotman_call("GET", "/data/acme/readings?order=asc&limit=1000");
  $values := $page.data.value;
  $summary := {"count": $count($values), "max": $max($values), "avg": $average($values)};
  $iotman_call("POST", "/data/acme/rollups", $summary);
  $summary.max > 30 ? $send_email("ops@example.com", "Temperature alert", "Max " & $string($summary.max) & " C");
  $summary
)"""


def test_4_scheduled_rollup_and_alerting(api: Api) -> None:
    """A cron job reads the last readings, appends a summary and emails when a threshold is crossed."""
    from tests.web.test_function_email import SmtpServer, free_port

    smtp = SmtpServer(free_port())
    smtp.start()
    try:
        api.source(name="readings", read_access=True)
        api.source(name="rollups")
        settings = {"host": "127.0.0.1", "port": smtp.port, "security": "none", "from_address": "iot@example.com"}
        assert api.admin("PUT", "/settings/smtp", json=settings).status_code == 200
        api.admin("POST", "/clients", json={"name": "cron", "scopes": ["iotman:data:*"], "is_worker": True})
        created = api.admin("POST", "/functions", json={"name": "rollup", "body": ROLLUP, "worker": "cron"})
        assert created.status_code == 201, created.text
        job = {"name": "hourly", "schedule": "0 * * * *", "function": "rollup"}
        assert api.admin("POST", "/cron-jobs", json=job).status_code == 201
        body = "\n".join(json.dumps({"device_id": "d-1", "value": v}) for v in (20, 25, 31.5))
        assert api.post("readings", body, "application/x-ndjson").status_code == 202
        api.clock.advance(3600)  # the next hour
        wait_for(lambda: len(payloads(api, "rollups")) == 1, what="the rollup")
        assert payloads(api, "rollups") == [{"count": 3, "max": 31.5, "avg": 25.5}]
        wait_for(lambda: len(smtp.inbox.messages) == 1, what="the alert email")
        assert smtp.inbox.messages[0][1]["Subject"] == "Temperature alert"
    finally:
        smtp.stop()


DISPATCH = """(
  $require($input.payload.target, 422, "a command needs a target");
  $require($input.payload.action in ["reboot", "configure", "update"], 422, "unknown action " & $input.payload.action);
  $iotman_call("POST", "/data/acme/dispatched", {"command": $input.id, "target": $input.payload.target,
                                                 "action": $input.payload.action});
  {"dispatched": $input.payload.action, "to": $input.payload.target}
)"""


def test_2_command_and_control(api: Api) -> None:
    """A backend posts commands; a trigger dispatches valid ones through a function and fails
    bad ones; replies go to command-results, which an export endpoint delivers by webhook."""
    from tests.support.webhook_receiver import WebhookReceiver

    receiver = WebhookReceiver().start()
    try:
        for source in ("commands", "command-results", "dispatched"):
            api.source(name=source)
        api.admin("POST", "/clients", json={"name": "dispatcher", "scopes": ["iotman:data:write"], "is_worker": True})
        fn = {"name": "dispatch", "body": DISPATCH, "worker": "dispatcher"}
        assert api.admin("POST", "/functions", json=fn).status_code == 201
        trigger = {
            "name": "on-command",
            "source": "commands",
            "condition": 'payload.kind = "command"',
            "function": "dispatch",
            "reply_to": "command-results",
        }
        assert api.admin("POST", "/triggers", json=trigger).status_code == 201
        results = {"name": "results", "select": {"sources": ["command-results"]}}
        assert api.admin("POST", "/outputs", json=results).status_code == 201
        endpoint = {"name": "results", "output": "results", "path": "command-results-out"}
        assert api.admin("POST", "/export-endpoints", json=endpoint).status_code == 201
        hook = api.admin("POST", "/webhooks", json={"name": "backend", "endpoint": "results", "url": receiver.url})
        assert hook.status_code == 201, hook.text
        receiver.secret = hook.json()["secret"]

        backend = api.token_for("iotman:data:write")
        commands = [
            {"kind": "command", "target": "d-1", "action": "reboot"},
            {"kind": "telemetry", "value": 1},  # not a command: no firing
            {"kind": "command", "target": "d-2", "action": "explode"},
            {"kind": "command", "action": "reboot"},
        ]
        ids = [
            api.post("commands", json.dumps(c), headers={"Authorization": f"Bearer {backend}"}).json()["id"]
            for c in commands
        ]
        wait_for(lambda: len(receiver.unique) == 3, what="three results delivered by webhook")
        by_event = {body["event_id"]: body for body in receiver.unique.values()}
        assert by_event[ids[0]]["ok"] is True
        assert by_event[ids[0]]["result"] == {"dispatched": "reboot", "to": "d-1"}
        assert by_event[ids[2]]["error"] == {"status": 422, "message": "unknown action explode"}
        assert by_event[ids[3]]["error"] == {"status": 422, "message": "a command needs a target"}
        assert all(r.verified for r in receiver.received)
        # only the valid command was dispatched; the failed ones left nothing behind
        assert payloads(api, "dispatched") == [{"command": ids[0], "target": "d-1", "action": "reboot"}]
    finally:
        receiver.stop()
