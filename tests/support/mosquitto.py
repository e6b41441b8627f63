"""A private Mosquitto broker on a free loopback port, and a subscriber that records what arrives."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Mosquitto:
    folder: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.port = self.port or free_port()
        conf = self.folder / f"mosquitto-{self.port}.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        log = open(self.folder / f"mosquitto-{self.port}.log", "ab")  # noqa: SIM115 - kept open while it runs
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@dataclass
class Subscriber:
    """Subscribes to ``topic`` (QoS 1) and records (topic, payload, retain) of each message."""

    port: int
    topic: str = "#"
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: mqtt.Client | None = None

    def start(self) -> Subscriber:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        connected = threading.Event()

        def on_connect(c: mqtt.Client, userdata: object, flags: object, rc: object, props: object = None) -> None:
            c.subscribe(self.topic, qos=1)

        def on_subscribe(*args: object) -> None:
            connected.set()

        def on_message(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
            with self.lock:
                self.messages.append((message.topic, message.payload, bool(message.retain)))

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        assert connected.wait(10), "the subscriber did not connect"
        self.client = client
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()
