"""SSE subscribers for the export benchmark, in their own process: ``--count`` connections to one
stream; for every event received, the latency from the send time the event carries (``"t"``,
Unix ms) to its arrival. Prints one JSON line: events per subscriber and the latencies' quantiles.

Run: ``python -m bench.sse_subscribers --url U --count 100 --expect N --ready-file F``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["main"]

_T = re.compile(rb'"t":([0-9.]+)')
notices: list[str] = []
connected: list[int] = []


async def _subscribe(url: str, expect: int, latencies: list[float], counts: list[int], index: int) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    await reader.readuntil(b"\n\n")  # the stream's first frame: the server has subscribed it
    connected.append(index)
    pending = b""
    while counts[index] < expect:
        chunk = await reader.read(1 << 16)
        if not chunk:
            break
        now = time.time() * 1000
        pending += chunk
        cut = pending.rfind(b"\n\n")
        if cut < 0:
            continue
        complete, pending = pending[:cut], pending[cut + 2 :]
        if b"event: dropped" in complete:
            notices.append(complete[complete.find(b"event: dropped") :][:300].decode(errors="replace"))
            break
        found = _T.findall(complete)
        counts[index] += complete.count(b"data: ")
        latencies.extend(now - float(t) for t in found)
    writer.close()


async def _run(url: str, count: int, expect: int, ready_file: Path, timeout_s: float) -> dict[str, object]:
    latencies: list[float] = []
    counts = [0] * count
    tasks = [asyncio.create_task(_subscribe(url, expect, latencies, counts, i)) for i in range(count)]
    while len(connected) < count:  # every stream subscribed before the producer starts  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.to_thread(ready_file.write_text, "ready")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=timeout_s)
    latencies.sort()
    n = len(latencies)

    def q(p: float) -> float:
        return round(latencies[min(n - 1, int(p * n))], 2) if n else float("nan")

    return {
        "subscribers": count,
        "dropped": len(notices),
        "notices": notices[:2],
        "min_events": min(counts),
        "samples": n,
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
        "max_ms": round(latencies[-1], 2) if n else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    print(json.dumps(asyncio.run(_run(args.url, args.count, args.expect, args.ready_file, args.timeout))))


if __name__ == "__main__":
    main()
