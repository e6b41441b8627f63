"""The views benchmark (issue 4), against a real ``iotman serve`` in one run:

(h) batched ingest (wrk, NDJSON batches of 1,000, 4 connections) into a source with 3
    views (a ``last`` view, a counting/aggregating JSONata reducer, a view keyed by a
    tag) vs. the same batches into a source with none, alternated twice, the better of
    two each -> share kept, target >= 40%
(i) point reads of a view (``?key=``) at 1,000 reads/s (4 keep-alive connections of
    250/s each, one process each) while another process ingests 10,000 events/s (100
    batches of 100 a second) into the viewed source -> p50/p99, target p99 < 2 ms; a
    read's latency counts from its scheduled time when the server held the client up,
    else from when it was sent. Also: the same reads while wrk ingests flat out, and
    without ingest

Loopback only, free ports, a temporary folder removed at the end; the server is
stopped by its PID. Results: bench/results/views.json.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.iotman_workspace import WORKSPACE, create_workspace_and_token
from bench.machine_info import machine_info
from bench.process_bench import NDJSON, admin, batched_rates, events, ndjson
from bench.results_report import write_results
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


def _read_connection(
    base_url: str, token: str, per_second: float, count: int, offset: float, start: float
) -> list[float]:
    """One keep-alive connection reading at ``per_second`` (its own process: no client GIL).

    A read's latency counts from its scheduled time when the previous answer came after it
    (the server held the client up: queueing counts), else from when it was sent (a late
    wake-up of the client's own ``sleep``, up to ~1 ms here, is not the server's).
    """
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    previous_end = 0.0
    for i in range(count):
        scheduled = start + (i + offset) / per_second
        delay = scheduled - time.time()
        if delay > 0:
            time.sleep(delay)
        sent = time.time()
        conn.request("GET", f"/views/{WORKSPACE}/stats/data?key=d-{(i * 7 + int(offset * 4)) % 50}", headers=headers)
        response = conn.getresponse()
        response.read()
        end = time.time()
        latencies.append(end - (scheduled if previous_end > scheduled else sent))
        previous_end = end
        if response.status != 200:
            raise ServerError(f"point read answered HTTP {response.status}")
    conn.close()
    return latencies


def point_reads(server: ServerProcess, token: str, rate: int, seconds: float, connections: int = 4) -> list[float]:
    """Latencies (s) of ``rate`` reads/s for ``seconds``, each from its scheduled start.

    Each connection runs in a process of its own, so the client's GIL never delays a read.
    """
    per_connection = rate / connections
    count = int(per_connection * seconds)
    with ProcessPoolExecutor(connections, mp_context=multiprocessing.get_context("spawn")) as pool:
        # start every process (and its imports) before the clock starts
        for warm in [pool.submit(time.sleep, 0.2) for _ in range(connections)]:
            warm.result()
        start = time.time() + 0.2
        futures = [
            pool.submit(_read_connection, server.base_url, token, per_connection, count, n / connections, start)
            for n in range(connections)
        ]
        return [latency for future in futures for latency in future.result(timeout=seconds + 60)]


def _paced_ingest(base_url: str, source: str, body: bytes, per_second: float, seconds: float) -> int:
    """POST ``body`` (an NDJSON batch) ``per_second`` times a second for ``seconds``; the count sent."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    start = time.time()
    sent = 0
    while (scheduled := start + sent / per_second) < start + seconds:
        delay = scheduled - time.time()
        if delay > 0:
            time.sleep(delay)
        conn.request("POST", f"/data/{WORKSPACE}/{source}", body=body, headers={"Content-Type": NDJSON})
        response = conn.getresponse()
        response.read()
        if response.status >= 300:
            raise ServerError(f"paced ingest answered HTTP {response.status}")
        sent += 1
    conn.close()
    return sent


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run and of the read test")
    parser.add_argument("--read-rate", type=int, default=1000, help="point reads per second in (i)")
    parser.add_argument("--paced-rate", type=int, default=10000, help="events per second ingested during (i)")
    parser.add_argument("--paced-source", default="viewed", help="`viewed` (3 views) or `plain` (none) in (i)")
    parser.add_argument("--paced-batch", type=int, default=100, help="events per batch of the paced ingest")
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
            # (i): reads at a fixed rate while a paced client ingests batches into the viewed source
            paced_body = ndjson(events(args.paced_batch))
            batches_per_s = args.paced_rate / args.paced_batch
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                paced = pool.submit(
                    _paced_ingest, server.base_url, args.paced_source, paced_body, batches_per_s, args.duration + 2
                )
                time.sleep(1.0)
                latencies = point_reads(server, token, args.read_rate, args.duration)
                sent = paced.result(timeout=args.duration + 120)
            paced_rate = sent * args.paced_batch / (args.duration + 2)
            p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
            print(
                f"(i) point reads at {args.read_rate:,}/s while ingesting {paced_rate:,.0f} events/s "
                f"(batches of {args.paced_batch}): p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                f"max {max(latencies) * 1000:.1f} ms over {len(latencies):,} reads (target p99 < 2 ms)"
            )
            results.update(
                point_reads=len(latencies),
                point_read_rate=args.read_rate,
                point_read_p50_ms=round(p50, 3),
                point_read_p99_ms=round(p99, 3),
                point_read_max_ms=round(max(latencies) * 1000, 3),
                ingest_during_reads_events_per_s=round(paced_rate),
            )
            # the same reads while wrk ingests as fast as the server takes it (every core busy)
            url = f"{server.base_url}/data/{WORKSPACE}/viewed"
            load: dict[str, Any] = {}

            def ingest() -> None:
                load["run"] = run_wrk(wrk, url, settings, body, NDJSON, duration_s=args.duration + 2)

            loader = threading.Thread(target=ingest)
            loader.start()
            time.sleep(1.0)
            saturated = point_reads(server, token, args.read_rate, args.duration)
            loader.join()
            saturated_rate = load["run"].ok_requests_per_s * 1000
            print(
                f"    while wrk ingests flat out ({saturated_rate:,.0f} events/s): "
                f"p50 {percentile(saturated, 0.5) * 1000:.2f} ms, p99 {percentile(saturated, 0.99) * 1000:.2f} ms"
            )
            quiet = point_reads(server, token, args.read_rate, min(args.duration, 5))
            print(f"    the same reads without ingest: p99 {percentile(quiet, 0.99) * 1000:.2f} ms")
            results.update(
                saturated_ingest_events_per_s=round(saturated_rate),
                saturated_point_read_p50_ms=round(percentile(saturated, 0.5) * 1000, 3),
                saturated_point_read_p99_ms=round(percentile(saturated, 0.99) * 1000, 3),
                quiet_point_read_p99_ms=round(percentile(quiet, 0.99) * 1000, 3),
                quiet_point_read_p50_ms=round(statistics.median(quiet) * 1000, 3),
            )
        finally:
            server.stop()
    write_results(RESULTS, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
