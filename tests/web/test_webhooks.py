"""Webhooks (SPEC §5.2): signed at-least-once deliveries from the outbox, retries, dead letters,
replay, the delivery log, the circuit breaker; verified with the `standardwebhooks` library."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Api, wait_for
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def hooked(api: Api, receiver: WebhookReceiver) -> Api:
    api.source(name="readings")
    api.create("tag-rules", name="device_id", method="value", path="$.device_id")
    output = {
        "name": "alerts",
        "select": {"tags": {"device_id": "*"}},
        "constructor": "{device: $.device_id, v: $.value}",
    }
    api.create("outputs", **output)
    created = api.admin(
        "POST", "/webhooks", json={"name": "backend", "output": "alerts", "url": receiver.url, "max_attempts": 3}
    )
    assert created.status_code == 201, created.text
    receiver.secret = created.json()["secret"]
    return api


def post(api: Api, values: list[Any]) -> list[str]:
    body = "\n".join(json.dumps(v) for v in values)
    response = api.post("readings", body, "application/x-ndjson")
    assert response.status_code == 202, response.text
    ids: list[str] = response.json()["ids"]
    return ids


def log(api: Api, state: str | None = None) -> list[dict[str, Any]]:
    query = f"?state={state}" if state else ""
    response = api.admin("GET", f"/webhooks/backend/deliveries{query}")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]
    return items


def test_each_match_is_posted_signed_with_the_event_id(hooked: Api, receiver: WebhookReceiver) -> None:
    ids = post(hooked, [{"device_id": "d1", "value": 1}, {"other": True}, {"device_id": "d2", "value": 2}])
    wait_for(lambda: len(receiver.received) == 2, what="two deliveries")
    got = sorted(receiver.received, key=lambda r: r.body["v"])
    assert [r.body for r in got] == [{"device": "d1", "v": 1}, {"device": "d2", "v": 2}]
    assert [r.msg_id for r in got] == [ids[0], ids[2]]
    assert all(r.verified for r in got), "standardwebhooks refused our signature"
    assert got[0].headers["content-type"] == "application/json"
    assert got[0].headers["iotman-webhook"] == "backend"
    wait_for(lambda: [d["state"] for d in log(hooked)] == ["delivered", "delivered"], what="the log")
    entry = log(hooked)[0]
    assert entry["last_status"] == 200
    assert entry["attempts"] == 1
    assert entry["last_latency_ms"] >= 0


def test_the_secret_is_shown_once_and_kept_on_replace(hooked: Api, receiver: WebhookReceiver) -> None:
    read = hooked.admin("GET", "/webhooks/backend").json()
    assert "secret" not in read
    assert read["status"]["deliveries"] == {"pending": 0, "delivered": 0, "dead": 0}
    read.pop("status")
    assert hooked.admin("PUT", "/webhooks/backend", json=read).status_code == 200
    post(hooked, [{"device_id": "d1", "value": 5}])
    wait_for(lambda: len(receiver.received) == 1)
    assert receiver.received[0].verified, "the secret changed on PUT without one"


def test_retries_on_5xx_and_429_then_delivers(hooked: Api, receiver: WebhookReceiver) -> None:
    receiver.statuses = [503, 429]
    receiver.retry_after = "0"
    post(hooked, [{"device_id": "d1", "value": 1}])
    wait_for(lambda: log(hooked) and log(hooked)[0]["attempts"] == 1, what="the first attempt")
    for _ in range(2):
        hooked.clock.advance(3600)  # past any backoff
        hooked.engine.deliveries.wake()
        wait_for(lambda: log(hooked)[0]["attempts"] >= 2, what="a retry")
    wait_for(lambda: log(hooked)[0]["state"] == "delivered", what="delivery after two failures")
    assert log(hooked)[0]["attempts"] == 3
    assert len(receiver.unique) == 1


def test_a_permanent_4xx_dead_letters_at_once_and_replay_delivers(hooked: Api, receiver: WebhookReceiver) -> None:
    receiver.statuses = [404]
    post(hooked, [{"device_id": "d1", "value": 1}])
    wait_for(lambda: len(log(hooked, "dead")) == 1, what="a dead letter")
    dead = log(hooked, "dead")[0]
    assert dead["last_status"] == 404
    assert "not retried" in dead["last_error"]
    assert hooked.admin("GET", "/webhooks/backend").json()["status"]["deliveries"]["dead"] == 1
    replayed = hooked.admin("POST", "/webhooks/backend/replay", json={"id": dead["id"]})
    assert replayed.status_code == 200
    assert replayed.json() == {"replayed": 1}
    wait_for(lambda: len(receiver.unique) == 1, what="the replayed delivery")
    wait_for(lambda: log(hooked)[0]["state"] == "delivered", what="the replay recorded")
    missing = hooked.admin("POST", "/webhooks/backend/replay", json={"id": dead["id"]})
    assert missing.status_code == 404


def test_after_max_attempts_it_is_dead_and_replay_all_resends(hooked: Api, receiver: WebhookReceiver) -> None:
    receiver.statuses = [500] * 3
    post(hooked, [{"device_id": "d1", "value": 1}])
    for attempt in range(1, 4):
        wait_for(lambda a=attempt: log(hooked)[0]["attempts"] == a, what=f"attempt {attempt}")
        hooked.clock.advance(3600)
        hooked.engine.deliveries.wake()
    wait_for(lambda: log(hooked)[0]["state"] == "dead", what="a dead letter")
    assert log(hooked)[0]["last_status"] == 500
    assert hooked.admin("POST", "/webhooks/backend/replay").json() == {"replayed": 1}
    wait_for(lambda: len(receiver.unique) == 1, what="the replayed delivery")


def test_deliveries_are_enqueued_with_the_events_of_a_function(hooked: Api, receiver: WebhookReceiver) -> None:
    hooked.admin("POST", "/clients", json={"name": "bot", "scopes": ["iotman:data:write"], "is_worker": True})
    fn = {
        "name": "emit",
        "body": '$iotman_call("POST", "/data/acme/readings", {"device_id": "f", "value": 1})',
        "worker": "bot",
    }
    assert hooked.admin("POST", "/functions", json=fn).status_code == 201
    assert hooked.client.post("/functions/acme/emit", headers=hooked.auth).status_code == 200
    wait_for(lambda: len(receiver.unique) == 1, what="the function's event delivered")
    # a function that stops undoes its events and their deliveries
    fn["body"] = '($iotman_call("POST", "/data/acme/readings", {"device_id": "g", "value": 2}); $fail(422, "no"))'
    assert hooked.admin("PUT", "/functions/emit", json=fn).status_code == 200
    assert hooked.client.post("/functions/acme/emit", headers=hooked.auth).status_code == 422
    hooked.engine.store.flush()
    assert [d["state"] for d in log(hooked)] == ["delivered"]


def test_definitions_are_checked(hooked: Api, receiver: WebhookReceiver) -> None:
    bad = [
        ({"name": "x", "output": "nope", "url": receiver.url}, "unknown_output"),
        ({"name": "x", "output": "alerts", "endpoint": "e", "url": receiver.url}, "invalid_definition"),
        ({"name": "x", "output": "alerts", "url": "ftp://example.com"}, "invalid_definition"),
        ({"name": "x", "output": "alerts", "url": receiver.url, "secret": "plain"}, "invalid_definition"),
        ({"name": "x", "output": "alerts", "url": receiver.url, "headers": {"webhook-id": "1"}}, "invalid_definition"),
        ({"name": "x", "output": "alerts", "url": receiver.url, "headers": {"X-A": "a\r\nb"}}, "invalid_definition"),
    ]
    for body, code in bad:
        response = hooked.admin("POST", "/webhooks", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == code, (body, response.text)
    used = hooked.admin("DELETE", "/outputs/alerts")
    assert used.status_code == 409
    assert "webhook" in used.json()["error"]["message"]
    assert hooked.admin("DELETE", "/webhooks/backend").status_code == 204
    assert hooked.admin("GET", "/webhooks/backend/deliveries").status_code == 404


def test_a_dead_receiver_trips_the_breaker_without_spending_attempts(hooked: Api, receiver: WebhookReceiver) -> None:
    receiver.statuses = [500] * 1000
    post(hooked, [{"device_id": "d", "value": i} for i in range(40)])
    wait_for(
        lambda: hooked.admin("GET", "/webhooks/backend").json()["status"]["circuit"] == "open", what="open circuit"
    )
    hooked.engine.store.flush()
    attempts = sum(d["attempts"] for d in log(hooked))
    assert attempts <= 16 + 5, f"{attempts} attempts spent on a dead receiver"
    assert not log(hooked, "dead")
    receiver.statuses = []

    def all_delivered() -> bool:
        hooked.clock.advance(1)  # the server's clock moves on (retries come due)
        return len(receiver.unique) == 40

    wait_for(all_delivered, timeout_s=30, what="everything once the receiver is back")
    assert not log(hooked, "dead")


def test_header_values_are_write_only(api: Api, receiver: WebhookReceiver) -> None:
    api.source(name="readings")
    assert api.admin("POST", "/outputs", json={"name": "all"}).status_code == 201
    hook = {"name": "h", "output": "all", "url": receiver.url, "headers": {"Authorization": "Bearer s3cret"}}
    created = api.admin("POST", "/webhooks", json=hook)
    assert created.json()["headers"] == {"Authorization": "Bearer s3cret"}  # shown once, with the secret
    read = api.admin("GET", "/webhooks/h").json()
    assert read["headers"] == {"Authorization": "***"}
    assert "s3cret" not in api.admin("GET", "/webhooks").text
    read.pop("status")
    assert api.admin("PUT", "/webhooks/h", json=read).status_code == 200  # a read sent back keeps it
    api.post("readings", "{}")
    wait_for(lambda: len(receiver.received) == 1)
    assert receiver.received[0].headers["authorization"] == "Bearer s3cret"


def test_hidden_header_values_do_not_follow_a_new_url(api: Api, receiver: WebhookReceiver) -> None:
    api.source(name="readings")
    api.create("outputs", name="all")
    api.create("webhooks", name="h", output="all", url=receiver.url, headers={"Authorization": "Bearer s3cret"})
    read = api.admin("GET", "/webhooks/h").json()
    read.pop("status")
    moved = api.admin("PUT", "/webhooks/h", json={**read, "url": "https://elsewhere.example/x"})
    assert moved.status_code == 422, moved.text
    assert "url changed" in moved.json()["error"]["message"]
    unknown = api.admin("PUT", "/webhooks/h", json={**read, "headers": {"X-New": "***"}})
    assert unknown.status_code == 422, unknown.text


def test_a_new_webhook_does_not_inherit_deliveries_of_a_deleted_namesake(
    hooked: Api, receiver: WebhookReceiver
) -> None:
    ws = hooked.engine.registry.workspace("acme")
    body = hooked.admin("GET", "/webhooks/backend").json()
    body.pop("status")
    assert hooked.admin("DELETE", "/webhooks/backend").status_code == 204
    # a batch prepared before the delete still enqueued a row for it
    from iotman.storage.ports import AppendBatch

    hooked.engine.store.append(
        AppendBatch(ws.id, "readings", ['{"device_id":"x"}'], "{}", 0, deliveries=[(0, "webhook:backend")])
    )
    assert hooked.engine.store.delivery_counts(ws.id, "webhook:backend")["pending"] == 1
    body.pop("secret", None)
    body["headers"] = {}
    assert hooked.admin("POST", "/webhooks", json=body).status_code == 201
    assert hooked.engine.store.delivery_counts(ws.id, "webhook:backend")["pending"] == 0
