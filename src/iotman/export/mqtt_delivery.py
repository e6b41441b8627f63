"""MQTT push (SPEC §5.3): one connection per broker, kept open and reopened on demand, over aiomqtt.

A QoS 1 publish counts as delivered when the broker acknowledges it (PUBACK); QoS 0 when
it is handed to the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from urllib.parse import unquote, urlsplit

import aiomqtt

from iotman.export.push_outcome import AttemptOutcome

__all__ = ["MqttPublisher"]

CONNECT_TIMEOUT_S = 5.0
PUBLISH_TIMEOUT_S = 10.0


class _Connection:
    def __init__(self, broker: str, client_id: str) -> None:
        parts = urlsplit(broker)
        self.client = aiomqtt.Client(
            parts.hostname or "localhost",
            parts.port or 1883,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            identifier=client_id,
            timeout=CONNECT_TIMEOUT_S,
            max_inflight_messages=64,
        )
        self.lock = asyncio.Lock()
        self.open = False


class MqttPublisher:
    def __init__(self, client_id_prefix: str = "iotman-push") -> None:
        self._prefix = client_id_prefix
        self._connections: dict[str, _Connection] = {}

    async def _connected(self, broker: str) -> _Connection:
        connection = self._connections.get(broker)
        if connection is None:
            client_id = f"{self._prefix}-{len(self._connections)}-{int(time.time() * 1000) % 100_000_000}"
            connection = self._connections[broker] = _Connection(broker, client_id)
        if not connection.open:
            async with connection.lock:
                if not connection.open:
                    await connection.client.__aenter__()
                    connection.open = True
                    # aiomqtt fails this future when the broker goes away; note it (and retrieve
                    # the error, which asyncio would otherwise log as never retrieved)
                    lost = getattr(connection.client, "_disconnected", None)
                    if isinstance(lost, asyncio.Future):
                        lost.add_done_callback(functools.partial(self._lost, broker, connection))
        return connection

    def _lost(self, broker: str, connection: _Connection, future: asyncio.Future[None]) -> None:
        """The connection ended: the next publish opens a new one."""
        connection.open = False
        if self._connections.get(broker) is connection:
            del self._connections[broker]
        if not future.cancelled():
            future.exception()

    async def _drop(self, broker: str) -> None:
        connection = self._connections.pop(broker, None)
        if connection is not None and connection.open:
            connection.open = False
            with contextlib.suppress(Exception):
                await connection.client.__aexit__(None, None, None)

    async def publish(self, broker: str, topic: str, payload: bytes, qos: int, retain: bool) -> AttemptOutcome:
        started = time.perf_counter()
        try:
            connection = await self._connected(broker)
            await connection.client.publish(topic, payload, qos=qos, retain=retain, timeout=PUBLISH_TIMEOUT_S)
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            await self._drop(broker)
            text = str(exc) or type(exc).__name__
            return AttemptOutcome(False, error=f"broker {_safe(broker)}: {text}"[:500], latency_us=_since(started))
        return AttemptOutcome(True, latency_us=_since(started))

    async def close(self) -> None:
        for broker in list(self._connections):
            await self._drop(broker)


def _safe(broker: str) -> str:
    parts = urlsplit(broker)
    return f"{parts.hostname}:{parts.port or 1883}"


def _since(started: float) -> int:
    return int((time.perf_counter() - started) * 1_000_000)
