"""Triggers (SPEC §4.3): functions fired by matching events after commit, replies, failing status."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from iotman.storage.ports import EventQuery
from tests.conftest import Api, wait_for

DISPATCH = """(
  $require($input.payload.target != "nobody", 422, "no target");
  $input.payload.target = "crash" ? 1 + $input.payload.target : true;
  $iotman_call("POST", "/data/acme/results", {"command": $input.payload.command, "for": $input.id});
  {"done": $input.payload.command}
)"""


@pytest.fixture
def plant(api: Api) -> Api:
    for name in ("commands", "results", "replies"):
        api.source(name=name)
    api.admin("POST", "/clients", json={"name": "dispatcher", "scopes": ["iotman:data:*"], "is_worker": True})
    assert (
        api.admin("POST", "/functions", json={"name": "dispatch", "body": DISPATCH, "worker": "dispatcher"}).status_code
        == 201
    )
    trigger = {
        "name": "on-command",
        "source": "commands",
        "condition": 'payload.kind = "command"',
        "function": "dispatch",
        "reply_to": "replies",
    }
    created = api.admin("POST", "/triggers", json=trigger)
    assert created.status_code == 201, created.text
    return api


def payloads(api: Api, source: str) -> list[Any]:
    ws = api.engine.registry.workspace(api.ws)
    rows = api.engine.store.read_events(EventQuery(ws.id, sources=(source,), limit=1000, descending=False))
    return [json.loads(e.payload) for e in rows]


def status(api: Api) -> dict[str, Any]:
    body: dict[str, Any] = api.admin("GET", "/triggers/on-command").json()["status"]
    return body


def test_matching_events_fire_in_log_order_and_reply(plant: Api) -> None:
    events = [{"kind": "command", "command": f"c{i}", "target": "x"} for i in range(5)]
    events.insert(2, {"kind": "telemetry", "value": 1})
    body = "\n".join(json.dumps(e) for e in events)
    ids = plant.post("commands", body, "application/x-ndjson").json()["ids"]
    wait_for(lambda: len(payloads(plant, "replies")) == 5)
    replies = payloads(plant, "replies")
    assert [r["result"]["done"] for r in replies] == [f"c{i}" for i in range(5)]  # log order
    assert all(r["ok"] is True and r["trigger"] == "on-command" for r in replies)
    assert [r["event_id"] for r in replies] == [i for n, i in enumerate(ids) if n != 2]
    assert [r["command"] for r in payloads(plant, "results")] == [f"c{i}" for i in range(5)]
    final = status(plant)
    assert (final["fired"], final["replied"], final["failing"]) == (5, 5, False)


def test_a_stop_is_a_reply_and_an_error_makes_the_trigger_failing_until_it_is_saved(plant: Api) -> None:
    plant.post("commands", json.dumps({"kind": "command", "command": "a", "target": "nobody"}))
    wait_for(lambda: len(payloads(plant, "replies")) == 1)
    refused = payloads(plant, "replies")[0]
    assert refused["ok"] is False
    assert refused["error"] == {"status": 422, "message": "no target"}
    assert payloads(plant, "results") == []  # the stopped function's append was undone
    plant.post("commands", json.dumps({"kind": "command", "command": "b", "target": "crash"}))
    wait_for(lambda: status(plant)["failing"])
    plant.post("commands", json.dumps({"kind": "command", "command": "c", "target": "x"}))
    time.sleep(1.5)
    assert len(payloads(plant, "replies")) == 1  # failing: it stays at the event that failed
    assert status(plant)["last_error"]["code"] == "function_failed"
    fixed = DISPATCH.replace("1 + $input.payload.target", "false")
    assert (
        plant.admin(
            "PUT", "/functions/dispatch", json={"name": "dispatch", "body": fixed, "worker": "dispatcher"}
        ).status_code
        == 200
    )
    wait_for(lambda: len(payloads(plant, "replies")) == 3)
    assert [r["result"]["done"] for r in payloads(plant, "replies")[1:]] == ["b", "c"]  # nothing lost
    assert status(plant)["failing"] is False


def test_triggers_are_checked_when_saved_and_what_they_use_cannot_go(plant: Api) -> None:
    bad = plant.admin("POST", "/triggers", json={"name": "t", "source": "commands", "function": "nope"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "unknown_function")
    syntax = plant.admin(
        "POST", "/triggers", json={"name": "t", "source": "commands", "condition": "((", "function": "dispatch"}
    )
    assert syntax.json()["error"]["code"] == "invalid_jsonata"
    assert plant.admin("DELETE", "/functions/dispatch").status_code == 409
    assert plant.admin("DELETE", "/sources/replies").status_code == 409
    assert plant.admin("DELETE", "/triggers/on-command").status_code == 204
    assert plant.admin("DELETE", "/functions/dispatch").status_code == 204


def test_a_new_trigger_starts_with_what_comes_after_it(plant: Api) -> None:
    plant.admin("DELETE", "/triggers/on-command")
    plant.post("commands", json.dumps({"kind": "command", "command": "old", "target": "x"}))
    plant.admin(
        "POST", "/triggers", json={"name": "late", "source": "commands", "function": "dispatch", "reply_to": "replies"}
    )
    plant.post("commands", json.dumps({"kind": "command", "command": "new", "target": "x"}))
    wait_for(lambda: len(payloads(plant, "replies")) == 1)
    time.sleep(0.3)
    assert [r["result"]["done"] for r in payloads(plant, "replies")] == ["new"]
