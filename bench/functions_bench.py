"""The reactions benchmark (issue 5), against a real ``iotman serve``:

(j) trigger firing throughput: 5,000 command events ingested at once (NDJSON batches of
    500); a trigger fires a small function for each, which appends one event through
    ``$iotman_call`` and replies -> functions/s from the first append until every event has
    fired (target >= 2,000/s)
(k) ingest-to-reply latency: single events ingested at 500/s for 10 s by a paced client,
    each carrying its send time; the fired function returns that time and ``$millis()``
    (same machine, same clock), which its reply carries -> p50/p99 (target p99 < 50 ms)

Loopback only, free ports, a temporary folder removed at the end; the server is stopped by
its PID. Results: bench/results/functions.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.iotman_workspace import WORKSPACE, create_workspace_and_token
from bench.machine_info import machine_info
from bench.process_bench import NDJSON, admin
from bench.results_report import write_results
from bench.servers import ServerError, ServerProcess, connection, start_iotman

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results" / "functions.json"
BODY = '($iotman_call("POST", "/data/bench/results", {"for": $input.id}); {"sent": $input.payload.t, "at": $millis()})'


def setup(server: ServerProcess, token: str) -> None:
    for name in ("commands", "results", "replies"):
        admin(server, token, "/sources", {"name": name, "read_access": True})
    admin(server, token, "/clients", {"name": "w", "scopes": ["iotman:data:*"], "is_worker": True})
    admin(server, token, "/functions", {"name": "act", "body": BODY, "worker": "w"})
    admin(server, token, "/triggers", {"name": "t", "source": "commands", "function": "act", "reply_to": "replies"})


def _post(conn: http.client.HTTPConnection, body: bytes, content_type: str) -> None:
    conn.request("POST", f"/data/{WORKSPACE}/commands", body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    response.read()
    if response.status != 202:
        raise ServerError(f"ingest answered HTTP {response.status}")


def fired(server: ServerProcess, token: str) -> int:
    conn = connection(server)
    conn.request("GET", f"/api/v1/workspaces/{WORKSPACE}/triggers/t", headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return int(body["status"]["fired"])


def read_all(server: ServerProcess, token: str, source: str) -> list[dict[str, Any]]:
    conn = connection(server)
    headers = {"Authorization": f"Bearer {token}", "Accept": NDJSON}
    conn.request("GET", f"/data/{WORKSPACE}/{source}?order=asc", headers=headers)
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    if response.status != 200:
        raise ServerError(f"read {source} answered HTTP {response.status}: {text[:200]}")
    return [json.loads(line) for line in text.splitlines() if line]


def throughput(server: ServerProcess, token: str, total: int, batch: int = 500) -> float:
    start_fired = fired(server, token)
    conn = connection(server)
    started = time.perf_counter()
    for first in range(0, total, batch):
        body = "\n".join(json.dumps({"n": first + k}) for k in range(batch)).encode()
        _post(conn, body, NDJSON)
    conn.close()
    deadline = started + 300
    while fired(server, token) < start_fired + total:
        if time.perf_counter() > deadline:
            raise ServerError("the trigger did not fire every event within 300 s")
        time.sleep(0.05)
    return total / (time.perf_counter() - started)


def paced(server: ServerProcess, rate: int, seconds: float) -> int:
    conn = connection(server)
    start = time.perf_counter()
    sent = 0
    while (scheduled := start + sent / rate) < start + seconds:
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        _post(conn, json.dumps({"paced": sent, "t": time.time() * 1000}).encode(), "application/json")
        sent += 1
    conn.close()
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="events fired in (j)")
    parser.add_argument("--rate", type=int, default=500, help="events/s ingested in (k)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of (k)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": machine_info(None)}
    with tempfile.TemporaryDirectory(prefix="iotman-bench-functions-") as tmp:
        folder = Path(tmp)
        token = create_workspace_and_token(folder / "data")
        server = start_iotman(folder / "data", folder / "serve.log")
        try:
            setup(server, token)
            throughput(server, token, 500)  # warm-up
            rate = throughput(server, token, args.events)
            print(f"(j) trigger firing: {rate:,.0f} functions/s over {args.events:,} events (target >= 2,000/s)")
            before = fired(server, token)
            sent = paced(server, args.rate, args.seconds)
            deadline = time.perf_counter() + 120
            while fired(server, token) < before + sent and time.perf_counter() < deadline:
                time.sleep(0.1)
            latencies = sorted(
                r["result"]["at"] - r["result"]["sent"]
                for r in read_all(server, token, "replies")
                if r.get("ok") and r["result"].get("sent") is not None
            )
            if len(latencies) < sent:
                raise ServerError(f"only {len(latencies)} of {sent} paced events replied")
            p50 = statistics.median(latencies)
            p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
            print(
                f"(k) ingest-to-reply at {args.rate}/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                f"max {latencies[-1]:.1f} ms over {len(latencies):,} events (target p99 < 50 ms)"
            )
            results.update(
                firing_functions_per_s=round(rate),
                firing_events=args.events,
                reply_rate=args.rate,
                reply_events=len(latencies),
                reply_p50_ms=round(p50, 2),
                reply_p99_ms=round(p99, 2),
                reply_max_ms=round(latencies[-1], 2),
            )
        finally:
            server.stop()
    write_results(RESULTS, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
