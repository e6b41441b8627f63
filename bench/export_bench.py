"""The export benchmark (issue 6), against a real ``iotman serve``:

(l) webhook deliveries/s: 20,000 matching events ingested in NDJSON batches of 1,000; a
    webhook POSTs each to a fast local receiver (bench/fast_receiver.py, its own process)
    -> deliveries/s from the first append until the receiver has every distinct
    webhook-id (target >= 3,000/s). Baseline, same run: a bare aiohttp client POSTing the
    same number of bodies to the same receiver, 64 at a time -> the ratio.
(m) SSE fan-out: 100 subscribers (their own process) on one stream while 8 paced clients
    ingest 1,000 single events/s in all for 10 s, each event carrying its send time -> p50/p99
    ingest-to-receive latency over every (subscriber, event) (target p99 < 50 ms).
    Baseline, same run: one subscriber.

Loopback only, free ports, a temporary folder removed at the end; servers are stopped by
their PID. Results: bench/results/export.json.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.iotman_workspace import WORKSPACE, create_workspace_and_token
from bench.machine_info import machine_info
from bench.process_bench import NDJSON, admin
from bench.results_report import write_results
from bench.servers import REPO_ROOT, ServerError, ServerProcess, connection, start_bench_server, start_iotman

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results" / "export.json"
PRODUCERS = 8
"""Devices posting at once in (m): the paced rate does not hang on one request's latency."""


def received(receiver: ServerProcess) -> int:
    conn = connection(receiver)
    conn.request("GET", "/count")
    body = json.loads(conn.getresponse().read())
    conn.close()
    return int(body["unique"])


def post(conn: http.client.HTTPConnection, source: str, body: bytes, content_type: str) -> None:
    conn.request("POST", f"/data/{WORKSPACE}/{source}", body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    response.read()
    if response.status != 202:
        raise ServerError(f"ingest answered HTTP {response.status}")


def webhook_rate(server: ServerProcess, receiver: ServerProcess, events: int) -> float:
    before = received(receiver)
    conn = connection(server)
    started = time.perf_counter()
    for first in range(0, events, 1000):
        body = "\n".join(json.dumps({"n": first + k, "v": k * 0.5}) for k in range(1000)).encode()
        post(conn, "hooked", body, NDJSON)
    conn.close()
    deadline = started + 300
    while received(receiver) < before + events:
        if time.perf_counter() > deadline:
            raise ServerError(f"only {received(receiver) - before} of {events} deliveries within 300 s")
        time.sleep(0.02)
    return events / (time.perf_counter() - started)


async def _bare_client(url: str, count: int, concurrency: int) -> float:
    body = json.dumps({"n": 1, "v": 0.5}).encode()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        queue = iter(range(count))

        async def worker() -> None:
            for n in queue:
                headers = {"Content-Type": "application/json", "webhook-id": f"bare-{n}"}
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


def _produce(server: ServerProcess, index: int, producers: int, total: int, rate: int, start: float) -> None:
    """Events index, index + producers, ... of ``total``, each at its time in a ``rate``/s schedule."""
    conn = connection(server)
    for sent in range(index, total, producers):
        delay = start + sent / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        post(conn, "live", json.dumps({"t": time.time() * 1000, "n": sent}).encode(), "application/json")
    conn.close()


def sse_latency(server: ServerProcess, token: str, folder: Path, subscribers: int, rate: int, seconds: float) -> Any:
    expect = int(rate * seconds)
    ready = folder / f"ready-{subscribers}"
    url = f"{server.base_url}/data/{WORKSPACE}/live/events?access_token={token}"
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.sse_subscribers", "--url", url, "--count", str(subscribers),
         "--expect", str(expect), "--ready-file", str(ready), "--timeout", str(seconds + 60)],
        stdout=subprocess.PIPE, cwd=REPO_ROOT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if time.monotonic() > deadline or child.poll() is not None:
                raise ServerError("the SSE subscribers did not connect")
            time.sleep(0.05)
        start = time.perf_counter() + 0.05
        threads = [
            threading.Thread(target=_produce, args=(server, n, PRODUCERS, expect, rate, start))
            for n in range(PRODUCERS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        achieved = expect / (time.perf_counter() - start)
        out, _ = child.communicate(timeout=seconds + 90)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result["ingest_rate"] = round(achieved)
    if result["min_events"] < expect:
        raise ServerError(f"a subscriber got only {result['min_events']} of {expect} events: {result}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000, help="webhook deliveries in (l)")
    parser.add_argument("--subscribers", type=int, default=100, help="SSE subscribers in (m)")
    parser.add_argument("--rate", type=int, default=1000, help="events/s ingested in (m)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of (m)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": machine_info(None)}
    with tempfile.TemporaryDirectory(prefix="iotman-bench-export-") as tmp:
        folder = Path(tmp)
        token = create_workspace_and_token(folder / "data")
        receiver = start_bench_server("fast receiver", "bench.fast_receiver", folder / "receiver.log")
        server = start_iotman(folder / "data", folder / "serve.log")
        try:
            hook_url = f"{receiver.base_url}/hook"
            admin(server, token, "/sources", {"name": "hooked"})
            admin(server, token, "/sources", {"name": "live", "read_access": True})
            admin(server, token, "/outputs", {"name": "hooked", "select": {"sources": ["hooked"]}})
            webhook = {"name": "fast", "output": "hooked", "url": hook_url, "max_concurrency": 64}
            admin(server, token, "/webhooks", webhook)
            baseline = asyncio.run(_bare_client(hook_url, args.events, 64))
            webhook_rate(server, receiver, 2000)  # warm-up
            rate = webhook_rate(server, receiver, args.events)
            print(
                f"(l) webhooks: {rate:,.0f} deliveries/s over {args.events:,} events (target >= 3,000/s); "
                f"bare aiohttp client {baseline:,.0f} req/s -> {rate / baseline:.0%}"
            )
            one = sse_latency(server, token, folder, 1, args.rate, args.seconds)
            many = sse_latency(server, token, folder, args.subscribers, args.rate, args.seconds)
            print(
                f"(m) SSE at {args.rate}/s: {args.subscribers} subscribers p50 {many['p50_ms']} ms, "
                f"p99 {many['p99_ms']} ms, max {many['max_ms']} ms (target p99 < 50 ms); "
                f"1 subscriber p50 {one['p50_ms']} ms, p99 {one['p99_ms']} ms"
            )
            results.update(
                webhook_deliveries_per_s=round(rate),
                webhook_events=args.events,
                bare_client_requests_per_s=round(baseline),
                webhook_ratio=round(rate / baseline, 3),
                sse_rate=args.rate,
                sse_seconds=args.seconds,
                sse_many=many,
                sse_one=one,
            )
        finally:
            server.stop()
            receiver.stop()
    write_results(RESULTS, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
