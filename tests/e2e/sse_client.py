"""A small Server-Sent Events reader for tests: parses frames as the EventSource spec says."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SseEvent:
    id: str | None
    event: str
    data: str


def parse_frames(text: str) -> list[SseEvent]:
    """Complete events in ``text`` (comments and keep-alives skipped)."""
    events: list[SseEvent] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data: list[str] = []
        event_id, kind = None, "message"
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "id":
                event_id = value
            elif name == "event":
                kind = value
        if data:
            events.append(SseEvent(event_id, kind, "\n".join(data)))
    return events


@dataclass
class SseReader:
    """Reads a stream in a thread until it ends or ``close()``; ``events`` fills as frames arrive."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: list[SseEvent] = field(default_factory=list)
    status: int | None = None
    ended: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    received_at: list[float] = field(default_factory=list)

    def start(self) -> SseReader:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while self.status is None and not self.ended and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        buffer = ""
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=httpx.Timeout(30, read=60)) as response:
                self.status = response.status_code
                for text in response.iter_text():
                    if self._stop.is_set():
                        return
                    buffer = (buffer + text).replace("\r\n", "\n")
                    if "\n\n" in buffer:
                        complete, _, buffer = buffer.rpartition("\n\n")
                        parsed = parse_frames(complete)
                        now = time.monotonic()
                        self.events.extend(parsed)
                        self.received_at.extend(now for _ in parsed)
        except httpx.HTTPError:
            pass
        finally:
            self.ended = True

    def close(self) -> None:
        self._stop.set()

    def wait(self, count: int, timeout_s: float = 15) -> list[SseEvent]:
        deadline = time.monotonic() + timeout_s
        while len(self.events) < count and time.monotonic() < deadline and not self.ended:
            time.sleep(0.01)
        assert len(self.events) >= count, f"got {len(self.events)} of {count} events: {self.events[-3:]}"
        return self.events

    def messages(self) -> list[tuple[int, Any]]:
        import json

        return [(int(e.id or 0), json.loads(e.data)) for e in self.events if e.event == "message"]
