"""$send_email (SPEC §4.2): written in the function's transaction, delivered after commit through
the workspace's SMTP settings, retried until sent or dead. Against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import Api, wait_for


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


NOTIFY = """(
  $id := $send_email($input.to, "Alert: " & $input.device, "Temperature " & $string($input.value) & " C");
  $input.value > 100 ? $fail(422, "implausible") : {"queued": $id}
)"""


def setup(api: Api, port: int, password: str | None = "s3cret") -> None:
    settings = {"host": "127.0.0.1", "port": port, "security": "none", "from_address": "iotman@example.com"}
    if password is not None:
        settings |= {"username": "iot", "password": password}
    assert api.admin("PUT", "/settings/smtp", json=settings).status_code == 200
    api.admin("POST", "/clients", json={"name": "mailer", "is_worker": True})
    created = api.admin("POST", "/functions", json={"name": "notify", "body": NOTIFY, "worker": "mailer"})
    assert created.status_code == 201, created.text


def call(api: Api, body: Any, test: bool = False) -> Any:
    suffix = "/test" if test else ""
    return api.client.post(f"/functions/{api.ws}/notify{suffix}", json=body, headers=api.auth)


def outbox(api: Api) -> list[dict[str, Any]]:
    answer = api.admin("GET", "/email-outbox")
    assert answer.status_code == 200
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def test_smtp_settings_never_give_the_password_back(api: Api) -> None:
    assert api.admin("GET", "/settings/smtp").status_code == 404
    setup(api, 2525)
    read = api.admin("GET", "/settings/smtp").json()
    assert "password" not in read
    assert read["password_set"] is True
    assert read["from_address"] == "iotman@example.com"
    # a PUT without the password keeps it; an explicit null clears it
    kept = {"host": "mail.example.com", "port": 587, "from_address": "ops@example.com"}
    assert api.admin("PUT", "/settings/smtp", json=kept).json()["password_set"] is True
    cleared = api.admin("PUT", "/settings/smtp", json={**kept, "password": None})
    assert cleared.json()["password_set"] is False
    bad = api.admin("PUT", "/settings/smtp", json={**kept, "from_address": "not an address"})
    assert bad.status_code == 422
    assert api.admin("DELETE", "/settings/smtp").status_code == 204
    assert api.admin("GET", "/settings/smtp").status_code == 404
    reader = api.token_for(preset="read-only")
    assert api.admin("PUT", "/settings/smtp", json=kept, token=reader).status_code == 403


def test_an_email_leaves_only_when_the_function_commits(api: Api, smtp: SmtpServer) -> None:
    setup(api, smtp.port, password=None)
    sent = call(api, {"to": "ops@example.com", "device": "d-1", "value": 21.5})
    assert sent.status_code == 200, sent.text
    email_id = sent.json()["result"]["queued"]
    wait_for(lambda: len(smtp.inbox.messages) == 1)
    recipients, message = smtp.inbox.messages[0]
    assert recipients == ["ops@example.com"]
    assert message["Subject"] == "Alert: d-1"
    assert message["From"] == "iotman@example.com"
    assert message.get_payload().strip() == "Temperature 21.5 C"
    wait_for(lambda: outbox(api)[0]["state"] == "sent")
    assert outbox(api)[0]["id"] == email_id
    # a function that stops after $send_email sends nothing; neither does a test run
    assert call(api, {"to": "ops@example.com", "device": "d-2", "value": 500}).status_code == 422
    report = call(api, {"to": "ops@example.com", "device": "d-3", "value": 1}, test=True).json()
    assert [c["function"] for c in report["calls"]] == ["send_email"]
    time.sleep(1.5)  # the sender looks at least once a second
    assert len(smtp.inbox.messages) == 1
    assert len(outbox(api)) == 1


def test_bad_addresses_stop_the_function(api: Api) -> None:
    setup(api, 2525)
    refused = call(api, {"to": "nobody", "device": "d", "value": 1})
    assert refused.status_code == 500
    assert refused.json()["error"]["code"] == "invalid_email"
    assert outbox(api) == []


def test_an_unreachable_server_is_retried_with_backoff_then_delivered(api: Api) -> None:
    server = SmtpServer(free_port())  # not started yet: nothing listens
    setup(api, server.port, password=None)
    assert call(api, {"to": ["a@example.com", "b@example.com"], "device": "d-1", "value": 3}).status_code == 200
    wait_for(lambda: outbox(api)[0]["attempts"] == 1)
    first = outbox(api)[0]
    assert first["state"] == "pending"
    assert "Error" in first["last_error"] or "refused" in first["last_error"].lower()
    server.start()
    try:
        time.sleep(1.5)
        assert server.inbox.messages == []  # not due yet: the retry waits its backoff
        api.clock.advance(5)
        wait_for(lambda: len(server.inbox.messages) == 1)
        assert sorted(server.inbox.messages[0][0]) == ["a@example.com", "b@example.com"]
        wait_for(lambda: outbox(api)[0]["state"] == "sent")
        assert outbox(api)[0]["attempts"] == 2
    finally:
        server.stop()


def test_an_email_that_keeps_failing_is_dead_with_its_last_error(api: Api) -> None:
    setup(api, free_port(), password=None)  # nothing will ever listen there
    assert call(api, {"to": "x@example.com", "device": "d", "value": 1}).status_code == 200
    for attempt in range(1, 9):
        wait_for(lambda n=attempt: outbox(api)[0]["attempts"] == n)
        api.clock.advance(700)  # past the longest backoff
    final = outbox(api)[0]
    assert final["state"] == "dead"
    assert final["attempts"] == 8
    assert final["last_error"]
