"""Webhook and MQTT push definitions (SPEC §5.2, §5.3): where each match of an output is pushed."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from iotman.core.definition_fields import UrlName

__all__ = [
    "HIDDEN",
    "MQTT_PUSH_TARGET",
    "WEBHOOK_TARGET",
    "MqttPushDefinition",
    "TopicTemplate",
    "WebhookDefinition",
    "new_webhook_secret",
]

HIDDEN = "***"
"""What reads show instead of a header value; sent back with PUT, it keeps the stored value."""
WEBHOOK_TARGET = "webhook:"
MQTT_PUSH_TARGET = "mqtt-push:"
"""Prefixes of a delivery's target: the kind, then the definition's name."""

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
_RESERVED_HEADERS = frozenset(
    {"webhook-id", "webhook-timestamp", "webhook-signature", "iotman-webhook", "content-type", "content-length", "host"}
)
_SECRET = re.compile(r"whsec_[A-Za-z0-9+/]{16,}={0,2}")


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class _Pushed(BaseModel):
    """What webhooks and MQTT pushes share: which matches they push and how hard they try."""

    model_config = ConfigDict(extra="forbid")

    name: UrlName
    output: str | None = Field(default=None, description="The output whose matches are pushed.")
    endpoint: str | None = Field(default=None, description="Or an export endpoint: its output's matches.")
    max_attempts: int = Field(default=12, ge=1, le=100, description="Attempts before a delivery is dead-lettered.")
    description: str = Field(default="", max_length=2000)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @model_validator(mode="after")
    def _one_selection(self) -> _Pushed:
        if (self.output is None) == (self.endpoint is None):
            raise ValueError("give exactly one of output and endpoint")
        return self


class WebhookDefinition(_Pushed):
    url: str = Field(description="Where each match is POSTed (http or https).")
    secret: str | None = Field(
        default=None, description="Standard Webhooks signing secret (whsec_…); generated when absent, shown once."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    timeout_ms: int = Field(default=10000, ge=100, le=120000, description="Per-attempt timeout.")
    max_concurrency: int = Field(default=16, ge=1, le=256, description="Deliveries in flight to this URL at once.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value[:200]!r} is not an http(s) URL like https://example.com/hooks/iotman")
        if parts.username or parts.password:
            raise ValueError("put credentials in headers, not in the URL")
        return value

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        if value is not None:
            if not _SECRET.fullmatch(value):
                raise ValueError("secret must be whsec_ followed by base64 of at least 12 bytes")
            base64.b64decode(value.removeprefix("whsec_"), validate=True)
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name[:130]!r} is not a header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by iotman")
            if any(c in text for c in "\r\n\0") or len(text) > 8192:
                raise ValueError(f"the value of header {name!r} has a line break or is too long")
        if len(value) > 32:
            raise ValueError("at most 32 headers")
        return value

    def stored(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        if data["secret"] is None:
            data["secret"] = new_webhook_secret()
        return data

    @staticmethod
    def hidden_headers(headers: dict[str, str]) -> dict[str, str]:
        """Header values as reads show them (they may hold credentials)."""
        return dict.fromkeys(headers, HIDDEN)


class TopicTemplate:
    """An MQTT topic with ``{tags.x}``, ``{payload.x.y}``, ``{source}``, ``{seq}``, ``{id}`` filled in."""

    _FIELD = re.compile(r"\{([^{}]*)\}")
    _VAR = re.compile(r"(source|seq|id)|(tags|payload)((?:\.[A-Za-z0-9_-]+)+)")

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts: list[str | tuple[str, tuple[str, ...]]] = []
        last = 0
        for match in self._FIELD.finditer(text):
            var = self._VAR.fullmatch(match.group(1))
            if var is None:
                raise ValueError(
                    f"{match.group(0)!r} at {match.start()} is not a topic variable; use {{tags.name}}, "
                    "{payload.field}, {source}, {seq} or {id}"
                )
            self.parts.append(text[last : match.start()])
            if var.group(1):
                self.parts.append((var.group(1), ()))
            else:
                self.parts.append((var.group(2), tuple(var.group(3)[1:].split("."))))
            last = match.end()
        self.parts.append(text[last:])
        rest = self._FIELD.sub("", text)
        if "{" in rest or "}" in rest:
            raise ValueError("unbalanced { or } in the topic")
        if not text or len(text) > 1024 or any(c in text for c in "+#\0"):
            raise ValueError("topic must be 1 to 1024 characters without the wildcards + and #")

    def render(self, fields: dict[str, Any]) -> str:
        """The topic for one event (``fields``: source, seq, id, tags, payload); a missing or
        non-scalar value raises ValueError naming it."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, steps = part
            value: Any = fields.get(name)
            for step in steps:
                value = value.get(step) if isinstance(value, dict) else None
            label = ".".join((name, *steps))
            if value is None or isinstance(value, (dict, list)):
                raise ValueError(f"topic variable {{{label}}} has no scalar value in this event")
            text = str(value).lower() if isinstance(value, bool) else str(value)
            if not text:
                raise ValueError(f"topic variable {{{label}}} is empty in this event")
            if any(c in text for c in "+#/\0"):
                raise ValueError(f"the value of {{{'.'.join((name, *steps))}}} holds '/', '+' or '#'")
            out.append(text)
        topic = "".join(out)
        if len(topic.encode("utf-8", errors="replace")) > 65535 or "\0" in topic:
            raise ValueError("the topic of this event is longer than MQTT allows (65,535 bytes)")
        try:
            topic.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the topic of this event is not valid UTF-8") from None
        return topic


class MqttPushDefinition(_Pushed):
    broker: str = Field(description="mqtt://[user:password@]host[:port] of the external broker.")
    topic: str = Field(description="Topic template, e.g. out/{tags.device_id}.")
    qos: int = Field(default=1, ge=0, le=1, description="0 (at most once to the broker) or 1 (acknowledged).")
    retain: bool = False

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "mqtt" or not parts.hostname:
            raise ValueError("broker must be a URL like mqtt://[user:password@]broker.example.com:1883")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"the broker URL has a bad port: {exc}") from None
        return value

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        TopicTemplate(value)
        return value

    def public(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        parts = urlsplit(self.broker)
        if parts.password:
            data["broker"] = self.broker.replace(":" + parts.password + "@", ":***@", 1)
        return data
