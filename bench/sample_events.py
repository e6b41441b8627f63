"""The events the benchmark sends: one small JSON reading, and an NDJSON batch of them."""

from __future__ import annotations

from pathlib import Path

import orjson

__all__ = ["BATCH_EVENTS", "SINGLE_EVENT", "batch_events", "ndjson_body", "write_bodies"]

SINGLE_EVENT = {"device_id": "d-17", "value": 21.5, "ts": 1732356000}
BATCH_EVENTS = 1000


def batch_events(count: int = BATCH_EVENTS) -> list[dict[str, object]]:
    """``count`` readings shaped like SINGLE_EVENT, from 50 devices."""
    return [
        {"device_id": f"d-{i % 50}", "value": round(15.0 + (i % 200) * 0.1, 1), "ts": 1732356000 + i}
        for i in range(count)
    ]


def ndjson_body(events: list[dict[str, object]]) -> bytes:
    return b"".join(orjson.dumps(event) + b"\n" for event in events)


def write_bodies(folder: Path) -> tuple[Path, Path]:
    """Write the single-event JSON body and the batch NDJSON body; returns their paths."""
    single = folder / "single-event.json"
    single.write_bytes(orjson.dumps(SINGLE_EVENT))
    batch = folder / f"batch-{BATCH_EVENTS}.ndjson"
    batch.write_bytes(ndjson_body(batch_events()))
    return single, batch
