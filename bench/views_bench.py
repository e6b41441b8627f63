"""The views benchmark (issue 4), against a real ``iotman serve`` in one run:

(h) batched ingest (wrk, NDJSON batches of 1,000, 4 connections) into a source with 3
    views (a ``last`` view, a counting/aggregating JSONata reducer, a view keyed by a
    tag) vs. the same batches into a source with none, alternated twice, the better of
    two each -> share kept, target >= 40%
(i) point reads of a view (``?key=``) at 1,000 reads/s (4 keep-alive connections of
    250/s each, latency measured from each read's scheduled time) while wrk ingests
    batches into the viewed source -> p50/p99, target p99 < 2 ms

Loopback only, free ports, a temporary folder removed at the end; the server is
stopped by its PID. Results: bench/results/views.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.iotman_workspace import WORKSPACE, create_workspace_and_token
from bench.machine_info import machine_info
from bench.process_bench import NDJSON, admin, batched_rates, events, ndjson
from bench.servers import ServerError, ServerProcess, start_iotman
from bench.wrk_load import WrkSettings, find_wrk, run_wrk

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results" / "views.json"
STATS = "{'count': prev.count + 1, 'sum': prev.sum + event.payload.value, 'max': $max([prev.max, event.payload.value])}"
VIEWS: list[dict[str, Any]] = [
    {"name": "latest", "key": "payload.device_id", "reducer": "last"},
    {"name": "stats", "key": "payload.device_id", "reducer": STATS, "init": "{'count': 0, 'sum': 0}"},
    {"name": "per-site", "key": "tags.site", "reducer": "count"},
]


def setup(server: ServerProcess, token: str) -> None:
    admin(server, token, "/sources", {"name": "plain"})
    admin(server, token, "/sources", {"name": "viewed"})
    admin(
        server, token, "/tag-rules", {"name": "site", "method": "value", "path": "$.meta.site", "sources": ["viewed"]}
    )
    for view in VIEWS:
        admin(server, token, "/views", {**view, "sources": ["viewed"]})


def point_reads(server: ServerProcess, token: str, rate: int, seconds: float, connections: int = 4) -> list[float]:
    """Latencies (s) of ``rate`` reads/s for ``seconds``, each from its scheduled start."""
    parts = urlsplit(server.base_url)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_connection = rate / connections
    started = time.perf_counter() + 0.1

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        headers = {"Authorization": f"Bearer {token}"}
        mine: list[float] = []
        count = int(per_connection * seconds)
        for i in range(count):
            scheduled = started + (i + offset / connections) / per_connection
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn.request("GET", f"/views/{WORKSPACE}/stats/data?key=d-{(i * 7 + offset) % 50}", headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - scheduled)
            if response.status != 200:
                with lock:
                    errors.append(f"HTTP {response.status}")
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    if errors:
        raise ServerError(f"{len(errors)} point reads failed, first: {errors[0]}")
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run and of the read test")
    parser.add_argument("--read-rate", type=int, default=1000, help="point reads per second in (i)")
    args = parser.parse_args(argv)
    wrk = find_wrk()
    if wrk is None:
        print("wrk is not installed: `make system-deps` installs it", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"machine": machine_info(wrk)}
    with tempfile.TemporaryDirectory(prefix="iotman-bench-views-") as tmp:
        folder = Path(tmp)
        token = create_workspace_and_token(folder / "data")
        server = start_iotman(folder / "data", folder / "serve.log")
        try:
            setup(server, token)
            body = folder / "batch.ndjson"
            body.write_bytes(ndjson(events(1000)))
            settings = WrkSettings(threads=1, connections=4, duration_s=args.duration)
            rates = batched_rates(wrk, server, settings, body, ("plain", "viewed", "plain", "viewed"))
            share = rates["viewed"] / rates["plain"]
            print(
                f"(h) NDJSON ingest, no views: {rates['plain']:,.0f} events/s; 3 views: {rates['viewed']:,.0f} "
                f"events/s; kept {share:.0%} (target >= 40%)"
            )
            results.update(
                ingest_no_views_events_per_s=round(rates["plain"]),
                ingest_3_views_events_per_s=round(rates["viewed"]),
                views_share=round(share, 3),
            )
            # (i): reads at a fixed rate while wrk ingests into the viewed source
            url = f"{server.base_url}/data/{WORKSPACE}/viewed"
            load: dict[str, Any] = {}

            def ingest() -> None:
                load["run"] = run_wrk(wrk, url, settings, body, NDJSON, duration_s=args.duration + 2)

            loader = threading.Thread(target=ingest)
            loader.start()
            time.sleep(1.0)
            latencies = point_reads(server, token, args.read_rate, args.duration)
            loader.join()
            p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
            ingest_rate = load["run"].ok_requests_per_s * 1000
            print(
                f"(i) point reads at {args.read_rate:,}/s while ingesting {ingest_rate:,.0f} events/s: "
                f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(latencies) * 1000:.1f} ms over {len(latencies):,} "
                "reads (target p99 < 2 ms)"
            )
            quiet = point_reads(server, token, args.read_rate, min(args.duration, 5))
            print(f"    the same reads without ingest: p99 {percentile(quiet, 0.99) * 1000:.2f} ms")
            results.update(
                point_reads=len(latencies),
                point_read_rate=args.read_rate,
                point_read_p50_ms=round(p50, 3),
                point_read_p99_ms=round(p99, 3),
                point_read_max_ms=round(max(latencies) * 1000, 3),
                ingest_during_reads_events_per_s=round(ingest_rate),
                quiet_point_read_p99_ms=round(percentile(quiet, 0.99) * 1000, 3),
                quiet_point_read_p50_ms=round(statistics.median(quiet) * 1000, 3),
            )
        finally:
            server.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
