"""At-least-once pushes against a real `iotman serve` (issue 6 reliability tests): a webhook
receiver down for 30 s during ingest, the server killed mid-delivery, an MQTT broker down."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server_process import ServerProcess, cli
from tests.support.mosquitto import Mosquitto, Subscriber
from tests.support.webhook_receiver import WebhookReceiver

FAST_RETRIES = {
    "IOTMAN_DELIVERY_BACKOFF_BASE_MS": "200",
    "IOTMAN_DELIVERY_BACKOFF_MAX_MS": "2000",
    "IOTMAN_DELIVERY_LEASE_SECONDS": "3",
}


class Plant:
    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        cli(self.data, "workspace", "create", "demo")
        self.token = cli(self.data, "token", "create", "--workspace", "demo", "--preset", "full-access")
        self.server = ServerProcess(self.data, env=FAST_RETRIES).start()
        self.auth = {"Authorization": f"Bearer {self.token}"}

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        url = f"{self.server.url}/api/v1/workspaces/demo{path}"
        return httpx.request(method, url, json=body, headers=self.auth, timeout=30)

    def setup(self) -> None:
        for path, body in [
            ("/sources", {"name": "readings"}),
            ("/tag-rules", {"name": "device_id", "method": "value", "path": "$.device_id"}),
            ("/outputs", {"name": "out", "select": {"tags": {"device_id": "*"}}, "constructor": "{d: $.device_id}"}),
        ]:
            assert self.admin("POST", path, body).status_code == 201

    def post(self, values: list[dict[str, Any]]) -> list[str]:
        body = "\n".join(httpx.Response(200, json=v).text for v in values)
        response = httpx.post(
            f"{self.server.url}/data/demo/readings",
            content=body,
            headers={**self.auth, "Content-Type": "application/x-ndjson"},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        ids: list[str] = response.json()["ids"]
        return ids

    def dead(self, collection: str, name: str) -> int:
        count: int = self.admin("GET", f"/{collection}/{name}").json()["status"]["deliveries"]["dead"]
        return count


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[Plant]:
    plant = Plant(tmp_path)
    plant.setup()
    try:
        yield plant
    finally:
        plant.server.terminate()


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_a_receiver_down_for_30_s_gets_every_match_exactly_once_after_dedupe(plant: Plant) -> None:
    receiver = WebhookReceiver().start()
    created = plant.admin("POST", "/webhooks", {"name": "hook", "output": "out", "url": receiver.url})
    assert created.status_code == 201
    receiver.secret = created.json()["secret"]
    sent: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            sent.extend(plant.post([{"device_id": f"d{n}-{i}"} for i in range(10)]))
            n += 1
            time.sleep(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(3)
        receiver.stop()  # down for 30 s while events keep coming
        time.sleep(30)
        receiver.start()  # same port
        time.sleep(3)
    finally:
        stop.set()
        producer.join()
    wait_until(lambda: len(receiver.unique) == len(sent), 60, f"{len(sent)} deliveries")
    assert set(receiver.unique) == set(sent)
    assert all(r.verified for r in receiver.received)
    assert plant.dead("webhooks", "hook") == 0
    receiver.stop()


def test_killing_the_server_mid_delivery_loses_nothing(plant: Plant) -> None:
    receiver = WebhookReceiver(delay_s=0.05).start()
    created = plant.admin("POST", "/webhooks", {"name": "hook", "output": "out", "url": receiver.url})
    receiver.secret = created.json()["secret"]
    sent = plant.post([{"device_id": f"d{i}"} for i in range(400)])
    wait_until(lambda: len(receiver.unique) >= 50, 30, "some deliveries")
    plant.server.kill()  # SIGKILL: deliveries in flight, most still pending
    assert len(receiver.unique) < len(sent)
    plant.server.start()
    wait_until(lambda: len(receiver.unique) == len(sent), 90, "every delivery after the restart")
    assert set(receiver.unique) == set(sent)
    assert plant.dead("webhooks", "hook") == 0
    receiver.stop()


def test_an_mqtt_broker_down_during_ingest_gets_every_match(plant: Plant, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path).start()
    # retained: the subscriber that connects after the restart gets what was published before it did
    push = {"name": "fleet", "output": "out", "broker": broker.url, "topic": "out/{tags.device_id}", "retain": True}
    assert plant.admin("POST", "/mqtt-pushes", push).status_code == 201
    subscriber = Subscriber(broker.port).start()
    sent = plant.post([{"device_id": f"a{i}"} for i in range(50)])
    wait_until(lambda: len(subscriber.messages) >= 50, 30, "the first publishes")
    subscriber.stop()
    broker.stop()
    sent += plant.post([{"device_id": f"b{i}"} for i in range(50)])  # while the broker is down
    time.sleep(5)
    broker.start()
    late = Subscriber(broker.port).start()
    try:
        wait_until(lambda: len({t for t, _, _ in late.messages}) == 50, 60, "the publishes after the outage")
        topics = {t for t, _, _ in subscriber.messages} | {t for t, _, _ in late.messages}
        assert topics == {f"out/a{i}" for i in range(50)} | {f"out/b{i}" for i in range(50)}
        assert plant.dead("mqtt-pushes", "fleet") == 0
    finally:
        late.stop()
        broker.stop()
