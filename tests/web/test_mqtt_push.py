"""MQTT push (SPEC §5.3) against a real Mosquitto: topic templates, QoS, retain, broker outages."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api, wait_for
from tests.support.mosquitto import Mosquitto, Subscriber


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def pushing(api: Api, broker: Mosquitto) -> Api:
    api.source(name="readings")
    api.create("tag-rules", name="device_id", method="value", path="$.device_id")
    output = {"name": "out", "select": {"tags": {"device_id": "*"}}, "constructor": "{d: $.device_id, v: $.value}"}
    api.create("outputs", **output)
    push = {"name": "fleet", "output": "out", "broker": broker.url, "topic": "out/{tags.device_id}/v", "qos": 1}
    created = api.admin("POST", "/mqtt-pushes", json=push)
    assert created.status_code == 201, created.text
    return api


def post(api: Api, values: list[Any]) -> None:
    response = api.post("readings", "\n".join(json.dumps(v) for v in values), "application/x-ndjson")
    assert response.status_code == 202, response.text


def log(api: Api) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.admin("GET", "/mqtt-pushes/fleet/deliveries").json()["data"]
    return items


def test_each_match_is_published_on_its_topic(pushing: Api, broker: Mosquitto) -> None:
    subscriber = Subscriber(broker.port).start()
    try:
        post(pushing, [{"device_id": "d1", "value": 1}, {"x": 1}, {"device_id": "d2", "value": 2}])
        wait_for(lambda: len(subscriber.messages) == 2, what="two publishes")
        got = sorted(subscriber.messages)
        assert got == [("out/d1/v", b'{"d":"d1","v":1}', False), ("out/d2/v", b'{"d":"d2","v":2}', False)]
        wait_for(lambda: [d["state"] for d in log(pushing)] == ["delivered"] * 2, what="the log")
    finally:
        subscriber.stop()


def test_retain_keeps_the_last_value_for_late_subscribers(pushing: Api, broker: Mosquitto) -> None:
    body = pushing.admin("GET", "/mqtt-pushes/fleet").json()
    body.pop("status")
    body["retain"] = True
    assert pushing.admin("PUT", "/mqtt-pushes/fleet", json=body).status_code == 200
    post(pushing, [{"device_id": "d9", "value": 7}])
    wait_for(lambda: log(pushing) and log(pushing)[0]["state"] == "delivered", what="the publish")
    late = Subscriber(broker.port, "out/d9/v").start()
    try:
        wait_for(lambda: len(late.messages) == 1, what="the retained message")
        assert late.messages[0] == ("out/d9/v", b'{"d":"d9","v":7}', True)
    finally:
        late.stop()


def test_a_broker_outage_delays_but_loses_nothing(pushing: Api, broker: Mosquitto) -> None:
    broker.stop()
    post(pushing, [{"device_id": f"d{i}", "value": i} for i in range(20)])
    wait_for(lambda: any(d["attempts"] for d in log(pushing)), what="failed attempts")
    assert all(d["state"] == "pending" for d in log(pushing))
    assert "broker" in next(d["last_error"] for d in log(pushing) if d["last_error"])
    broker.start()  # same port
    subscriber = Subscriber(broker.port).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len({t for t, _, _ in subscriber.messages}) < 20:
            pushing.clock.advance(60)  # past the backoff of the failed attempts
            pushing.engine.deliveries.wake()
            time.sleep(0.1)
        assert {t for t, _, _ in subscriber.messages} == {f"out/d{i}/v" for i in range(20)}
        wait_for(lambda: all(d["state"] == "delivered" for d in log(pushing)), what="all recorded")
    finally:
        subscriber.stop()


def test_a_topic_variable_missing_from_an_event_dead_letters_it(pushing: Api, broker: Mosquitto) -> None:
    body = pushing.admin("GET", "/mqtt-pushes/fleet").json()
    body.pop("status")
    body["topic"] = "out/{payload.site}"
    assert pushing.admin("PUT", "/mqtt-pushes/fleet", json=body).status_code == 200
    post(pushing, [{"device_id": "d1", "value": 1}])
    wait_for(lambda: log(pushing) and log(pushing)[0]["state"] == "dead", what="a dead letter")
    assert "{payload.site}" in log(pushing)[0]["last_error"]


def test_push_definitions_are_checked(pushing: Api) -> None:
    for body in (
        {"name": "x", "output": "out", "broker": "http://b", "topic": "t"},
        {"name": "x", "output": "out", "broker": "mqtt://b", "topic": "t/#"},
        {"name": "x", "output": "out", "broker": "mqtt://b", "topic": "t/{nope}"},
        {"name": "x", "output": "out", "broker": "mqtt://b", "topic": "t", "qos": 2},
    ):
        response = pushing.admin("POST", "/mqtt-pushes", json=body)
        assert response.status_code == 422, (body, response.text)
    secret = pushing.admin(
        "POST", "/mqtt-pushes", json={"name": "s", "output": "out", "broker": "mqtt://u:pw@b", "topic": "t"}
    )
    assert secret.status_code == 201
    assert "pw" not in secret.text
    # a read, sent back unchanged, keeps the stored password
    body = pushing.admin("GET", "/mqtt-pushes/s").json()
    body.pop("status")
    assert pushing.admin("PUT", "/mqtt-pushes/s", json=body).status_code == 200
    stored = pushing.engine.store.get_definition(pushing.engine.registry.workspace("acme").id, "mqtt-push", "s")
    assert stored is not None
    assert stored.body["broker"] == "mqtt://u:pw@b"
