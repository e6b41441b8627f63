"""A real HTTP webhook receiver on a free loopback port, for tests: verifies Standard Webhooks
signatures with the `standardwebhooks` library, dedupes on webhook-id, and can be told to
fail, rate-limit or go down."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Received:
    msg_id: str
    body: Any
    headers: dict[str, str]
    verified: bool
    at: float


@dataclass
class WebhookReceiver:
    secret: str | None = None
    port: int = 0
    received: list[Received] = field(default_factory=list)
    unique: dict[str, Any] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    """Answer these statuses to the next requests, in order (then 200)."""
    retry_after: str | None = None
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    verified = False
                    if receiver.secret is not None:
                        try:
                            Webhook(receiver.secret).verify(body, headers)
                            verified = True
                        except Exception:
                            verified = False
                    if status == 200:
                        item = Received(headers.get("webhook-id", ""), json.loads(body), headers, verified, time.time())
                        receiver.received.append(item)
                        receiver.unique.setdefault(item.msg_id, item.body)
                self.send_response(status)
                if status in (429, 503) and receiver.retry_after is not None:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
