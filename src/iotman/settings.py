"""The one settings table.

Each setting has a name, a default, the environment variable that overrides it and
a help line. ``docs/settings.md`` is generated from this table and a test checks it
is current, so no setting goes undocumented. CLI flags override environment
variables, which override defaults.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from iotman.errors import ConfigurationError

__all__ = ["SETTINGS_TABLE", "Setting", "Settings", "load_settings", "settings_markdown"]


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    @property
    def env(self) -> str:
        return "IOTMAN_" + self.name.upper()


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return value

    return parse


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 or more, not {value}")
    return value


SETTINGS_TABLE: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "Address the HTTP server listens on."),
    Setting("port", 8080, "TCP port of the HTTP server.", int),
    Setting("data", "./iotman-data", "Folder of the embedded SQLite store (used when `store` is empty)."),
    Setting("store", "", "Store URL: `sqlite:///path/to/file.db`; empty means `<data>/iotman.db`."),
    Setting(
        "sqlite_synchronous",
        "normal",
        "SQLite `synchronous` pragma: `normal` survives a crash of the server process "
        "(kill -9); `full` also survives a power loss, at a lower write rate.",
        _choice("normal", "full"),
    ),
    Setting("writer_max_events", 20000, "Most events one group commit may hold.", int),
    Setting("max_body_bytes", 1048576, "Default ingest body limit in bytes (a source may set its own).", int),
    Setting("idempotency_ttl_seconds", 86400, "How long an `Idempotency-Key` answer is remembered.", int),
    Setting("quarantine_keep", 10000, "Most quarantine entries kept per workspace (oldest are dropped).", int),
    Setting("token_cache_seconds", 10.0, "How long a verified bearer token is cached in memory.", float),
    Setting(
        "log_level", "info", "Log level: debug, info, warning, error.", _choice("debug", "info", "warning", "error")
    ),
    Setting("log_format", "json", "Log format: `json` (one object a line) or `console`.", _choice("json", "console")),
    Setting("access_log", False, "Log every HTTP request (costs ingest throughput).", _bool),
    Setting("read_threads", 8, "Threads that serve store reads.", int),
    Setting(
        "analytics_min_events",
        20000,
        "Aggregations (`?agg=`) over at least this many log positions run in DuckDB, in a "
        "worker process, over the SQLite file; smaller ones in SQLite. `0` turns DuckDB off.",
        int,
    ),
    Setting("analytics_threads", 2, "Threads of the DuckDB analytics worker.", int),
    Setting(
        "analytics_memory_mb", 1024, "Memory limit of the DuckDB analytics worker (it spills to disk beyond).", int
    ),
    Setting(
        "jsonata_engine",
        "jlens",
        "JSONata engine: `jlens` (Rust, the default) or `jsonata2py` (pure Python; timeout and recursion limits only).",
        _choice("jlens", "jsonata2py"),
    ),
    Setting(
        "gil_switch_interval_us",
        500,
        "How long a Python thread may hold the GIL while others wait (`sys.setswitchinterval`); "
        "CPython's default is 5000. Every store call hands the GIL over and waits up to this long to "
        "get it back, so a short interval keeps point reads fast while ingest is busy.",
        int,
    ),
    Setting(
        "gc_gen0_threshold",
        50000,
        "Allocations between young-generation garbage collections (`gc.set_threshold`; CPython's default "
        "is 700, 0 keeps it). Larger lets a batch's short-lived objects die before a collection moves "
        "them on; `iotman serve` also freezes what it loaded at start out of collection.",
        _non_negative,
    ),
    Setting(
        "function_timeout_ms",
        5000,
        "Longest a function's body may run, in milliseconds (its steps, depth and result size are capped "
        "by the `jsonata_*` settings).",
        int,
    ),
    Setting(
        "email_max_attempts",
        8,
        "Attempts to deliver an email (`$send_email`) before it is dead; retried after 1, 2, 4… times "
        "`email_backoff_base_ms` (at most 10 minutes, jittered).",
        _non_negative,
    ),
    Setting("email_backoff_base_ms", 1000, "The first retry delay of a failed email, in milliseconds.", _non_negative),
    Setting(
        "stream_buffer_events",
        10000,
        "Matches a live stream (SSE, WebSocket) may have waiting to be sent; a client that falls this far "
        "behind is dropped with a final notice and resumes from the log when it reconnects.",
        int,
    ),
    Setting(
        "stream_flush_ms",
        10,
        "Shortest time between two reads of the log for one streamed endpoint (0.2 ms per subscriber if "
        "longer): commits within it reach subscribers together, in one write each.",
        _non_negative,
    ),
    Setting(
        "stream_poll_ms",
        1000,
        "How often streamed endpoints look for events this process did not append itself "
        "(functions' appends are seen at once; another server on the same file within this).",
        int,
    ),
    Setting(
        "stream_recheck_seconds",
        30,
        "How often an open live stream checks again that its token may still read the endpoint "
        "(expired or revoked tokens, a changed `auth` or `required_scope` end it).",
        float,
    ),
    Setting("stream_ping_seconds", 15, "Keep-alive comment interval of SSE streams, in seconds.", int),
    Setting(
        "stream_send_timeout_seconds",
        30,
        "A live stream whose client has not taken a write for this long is closed.",
        int,
    ),
    Setting(
        "delivery_lease_seconds",
        300,
        "How long a server holds the webhook and MQTT push deliveries it took; a crashed server's are tried "
        "again when it runs out.",
        int,
    ),
    Setting(
        "delivery_backoff_base_ms",
        1000,
        "First retry delay of a failed delivery; doubled each attempt (jittered) up to `delivery_backoff_max_ms`.",
        _non_negative,
    ),
    Setting("delivery_backoff_max_ms", 3600000, "Longest delay between two attempts of a delivery.", _non_negative),
    Setting(
        "delivery_keep_hours",
        72,
        "How long delivered deliveries stay in the delivery log (dead letters stay until replayed or "
        "their target is deleted).",
        int,
    ),
    Setting("jsonata_timeout_ms", 1000, "Longest one JSONata evaluation may run, in milliseconds.", int),
    Setting("jsonata_max_steps", 1000000, "Most evaluation steps of one JSONata evaluation (`0`: no cap).", int),
    Setting("jsonata_max_depth", 200, "Deepest nesting of function calls in one JSONata evaluation.", int),
    Setting(
        "jsonata_max_result_bytes",
        1048576,
        "Largest result (and string or array built on the way) of one JSONata evaluation, in bytes.",
        int,
    ),
)


def _settings_fields() -> dict[str, Any]:
    return {s.name: s.default for s in SETTINGS_TABLE}


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data: str = "./iotman-data"
    store: str = ""
    sqlite_synchronous: str = "normal"
    writer_max_events: int = 20000
    max_body_bytes: int = 1048576
    idempotency_ttl_seconds: int = 86400
    quarantine_keep: int = 10000
    token_cache_seconds: float = 10.0
    log_level: str = "info"
    log_format: str = "json"
    access_log: bool = False
    read_threads: int = 8
    analytics_min_events: int = 20000
    analytics_threads: int = 2
    analytics_memory_mb: int = 1024
    gil_switch_interval_us: int = 500
    gc_gen0_threshold: int = 50000
    jsonata_engine: str = "jlens"
    jsonata_timeout_ms: int = 1000
    function_timeout_ms: int = 5000
    email_max_attempts: int = 8
    email_backoff_base_ms: int = 1000
    jsonata_max_steps: int = 1000000
    stream_buffer_events: int = 10000
    delivery_lease_seconds: int = 300
    delivery_backoff_base_ms: int = 1000
    delivery_backoff_max_ms: int = 3600000
    delivery_keep_hours: int = 72
    stream_flush_ms: int = 10
    stream_poll_ms: int = 1000
    stream_recheck_seconds: float = 30.0
    stream_ping_seconds: int = 15
    stream_send_timeout_seconds: int = 30
    jsonata_max_depth: int = 200
    jsonata_max_result_bytes: int = 1048576

    def store_url(self) -> str:
        if self.store:
            return self.store
        return "sqlite:///" + os.path.abspath(os.path.join(self.data, "iotman.db"))

    def with_overrides(self, **overrides: Any) -> Settings:
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **clean)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults, then ``IOTMAN_*`` environment variables, then explicit overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS_TABLE:
        raw = env.get(setting.env)
        if raw is None:
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{setting.env}: {exc}", field=setting.name) from exc
    settings = Settings(**values)
    return settings.with_overrides(**overrides)


def settings_markdown() -> str:
    """The generated body of docs/settings.md."""
    lines = [
        "# Settings",
        "",
        "Generated from `iotman.settings.SETTINGS_TABLE` (a test keeps this file current).",
        "Each setting is read from its environment variable; `iotman serve` flags override them.",
        "",
        "| name | environment variable | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for s in SETTINGS_TABLE:
        default = f"`{s.default}`" if s.default != "" else "(empty)"
        lines.append(f"| `{s.name}` | `{s.env}` | {default} | {s.help} |")
    return "\n".join(lines) + "\n"


assert set(_settings_fields()) == {f.name for f in fields(Settings)}, "settings table drifted"
