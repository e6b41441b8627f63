"""The ingest benchmark (``make bench``): four figures and two ratios in one run.

(a) iotman, one JSON event per POST      (wrk, many keep-alive connections)
(b) bare Starlette + uvicorn endpoint    (same wrk settings)  -> (a)/(b), target >= 50%
(c) iotman, NDJSON batches of 1,000      (wrk, a few connections)
(d) raw SQLite, same rows (one transaction per batch; the faster of executemany and
    iotman's one-statement batch INSERT) -> (c)/(d), target >= 50%

Everything runs on 127.0.0.1 and free ports, in one temporary folder that is removed
at the end; only the servers started here are stopped, by their PID. Results go to
bench/results/ingest.json (and ingest.md: rows for docs/performance.md). The exit
status is 1 if any request failed, a server logged errors, or the stored-event check failed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench.iotman_workspace import SOURCE, WORKSPACE, check_stored, create_source, create_workspace_and_token
from bench.machine_info import machine_info, system_busy_seconds
from bench.results_report import (
    RESULTS_DIR,
    Figure,
    console_table,
    json_bytes,
    markdown_rows,
    ratio,
    write_atomically,
)
from bench.sample_events import BATCH_EVENTS, batch_events, write_bodies
from bench.servers import ServerError, ServerProcess, start_bare_endpoint, start_iotman
from bench.sqlite_baseline import run_sqlite_baseline
from bench.wrk_load import WrkError, WrkRun, WrkSettings, find_wrk, run_wrk

__all__ = ["main"]

JSON = "application/json"
NDJSON = "application/x-ndjson"
TARGET = 0.5
OTHER_CPU_WARNING = 15.0  # percent of one CPU


class TimeLimitError(Exception):
    """The whole run exceeded --time-limit."""


class Phase:
    """Problems (the run fails) and warnings (figures may be off) of one run, printed as they happen."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)
        print(f"  PROBLEM: {text}", file=sys.stderr, flush=True)

    def warning(self, text: str) -> None:
        self.warnings.append(text)
        print(f"  WARNING: {text}", file=sys.stderr, flush=True)


def say(text: str) -> None:
    print(text, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description="iotman ingest benchmark")
    parser.add_argument("--duration", type=int, default=6, help="seconds of each measured wrk run (6)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of (a), (c), (b), (d); figures are medians over rounds (3)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="seconds of the warm-up before each run (2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections, single events (64)")
    parser.add_argument("--batch-connections", type=int, default=4, help="wrk connections, batches (4)")
    parser.add_argument("--sqlite-batches", type=int, default=200, help="batches timed by baseline (d) (200)")
    parser.add_argument("--time-limit", type=int, default=420, help="abort the whole run after this many s (420)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder for ingest.json and ingest.md")
    return parser.parse_args(argv)


def measure(
    phase: Phase,
    wrk: str,
    server: ServerProcess,
    settings: WrkSettings,
    warmup_s: int,
    body: Path,
    content_type: str,
    events_per_request: int,
    what: str,
) -> tuple[WrkRun, int, dict[str, Any]]:
    """A warm-up then the measured wrk run; returns the run, events acknowledged in both, details."""
    url = f"{server.base_url}/data/{WORKSPACE}/{SOURCE}"
    warm = run_wrk(wrk, url, settings, body, content_type, duration_s=warmup_s)
    for text in warm.problems(f"{what} warm-up"):
        phase.problem(text)
    cpu_before, busy_before = server.cpu_seconds(), system_busy_seconds()
    run = run_wrk(wrk, url, settings, body, content_type)
    cpu_after, busy_after = server.cpu_seconds(), system_busy_seconds()
    for text in run.problems(what):
        phase.problem(text)
    if not server.alive():
        phase.problem(f"{what}: {server.name} (pid {server.pid}) exited with code {server.process.returncode}")
    details: dict[str, Any] = {
        "wrk": {"threads": settings.threads, "connections": settings.connections, "duration_s": settings.duration_s},
        "warmup_s": warmup_s,
        "events_per_request": events_per_request,
        **run.to_json(),
    }
    if cpu_before is not None and cpu_after is not None and run.duration_s > 0:
        server_cpu = cpu_after - cpu_before
        details["server_cpu_percent"] = round(100 * server_cpu / run.duration_s, 1)
        if busy_before is not None and busy_after is not None and run.wrk_cpu_seconds is not None:
            # CPU used by anything else on the machine while we measured (other jobs skew the figures)
            other = max(0.0, busy_after - busy_before - server_cpu - run.wrk_cpu_seconds)
            details["other_cpu_percent"] = round(100 * other / run.duration_s, 1)
            if details["other_cpu_percent"] > OTHER_CPU_WARNING:
                phase.warning(
                    f"{what}: other processes used {details['other_cpu_percent']}% CPU during the run;"
                    " the figure is probably low"
                )
    say(
        f"  {run.requests_per_s:,.0f} requests/s = {run.ok_requests_per_s * events_per_request:,.0f} events/s accepted"
        f" ({run.requests} requests, p50 {run.latency_ms.get('p50', '?')} ms, p99 {run.latency_ms.get('p99', '?')} ms,"
        f" CPU: server {details.get('server_cpu_percent', '?')}%, wrk {run.wrk_cpu_percent}%,"
        f" other {details.get('other_cpu_percent', '?')}%)"
    )
    acknowledged = (warm.ok_requests + run.ok_requests) * events_per_request
    return run, acknowledged, details


def verify_stored(phase: Phase, server: ServerProcess, token: str, acknowledged: int, what: str) -> dict[str, Any]:
    check = check_stored(server, token, acknowledged)
    say(
        f"  stored-event check: probe seq {check.probe_seq:,} >= {check.expected_at_least:,} acknowledged"
        f" (+ probe); newest seq read back {check.newest_seq_read}: {'ok' if check.ok else 'FAILED'}"
    )
    if not check.ok:
        phase.problem(
            f"{what}: stored-event check failed: probe seq {check.probe_seq}, newest read {check.newest_seq_read},"
            f" expected at least {check.expected_at_least}"
        )
    return {
        "probe_seq": check.probe_seq,
        "newest_seq_read": check.newest_seq_read,
        "expected_at_least": check.expected_at_least,
        "ok": check.ok,
    }


def stop_and_check(phase: Phase, server: ServerProcess) -> None:
    trouble = server.stop()
    errors = server.log_errors()
    if trouble is not None:
        phase.problem(f"{server.name} (pid {server.pid}) did not stop cleanly: {trouble}; log:\n{server.log_tail()}")
    if errors:
        phase.problem(f"{server.name} logged {len(errors)} error lines, e.g.:\n" + "\n".join(errors[:10]))


def empty_figures() -> dict[str, Figure]:
    return {
        "a": Figure("a", "iotman: 1 JSON event per POST", None),
        "b": Figure("b", "bare Starlette + uvicorn endpoint (baseline of a)", None),
        "c": Figure("c", f"iotman: NDJSON batches of {BATCH_EVENTS:,} events", None),
        "d": Figure("d", f"raw SQLite, {BATCH_EVENTS:,} rows/txn (baseline of c)", None, "rows/s"),
    }


def iotman_figures(
    phase: Phase,
    figures: dict[str, Figure],
    wrk: str,
    tmp: Path,
    bodies: tuple[Path, Path],
    single: WrkSettings,
    batch: WrkSettings,
    warmup: int,
) -> None:
    fig_a, fig_c = figures["a"], figures["c"]
    data_dir = tmp / "iotman-data"
    say("iotman: creating workspace, token and source; starting `iotman serve`")
    try:
        token = create_workspace_and_token(data_dir)
        server = start_iotman(data_dir, tmp / "iotman-serve.log")
    except ServerError as exc:
        phase.problem(str(exc))
        return
    say(f"  pid {server.pid}, {server.base_url}")
    acknowledged = 0
    try:
        create_source(server, token)
        say(f"(a) iotman, single events: wrk -t{single.threads} -c{single.connections} -d{single.duration_s}s")
        run, count, details = measure(phase, wrk, server, single, warmup, bodies[0], JSON, 1, "(a)")
        fig_a.rate, fig_a.details = run.ok_requests_per_s, details
        acknowledged += count
        details["stored_check"] = verify_stored(phase, server, token, acknowledged, "(a)")
        acknowledged += 1
        say(f"(c) iotman, NDJSON batches: wrk -t{batch.threads} -c{batch.connections} -d{batch.duration_s}s")
        run, count, details = measure(phase, wrk, server, batch, warmup, bodies[1], NDJSON, BATCH_EVENTS, "(c)")
        fig_c.rate, fig_c.details = run.ok_requests_per_s * BATCH_EVENTS, details
        acknowledged += count
        details["stored_check"] = verify_stored(phase, server, token, acknowledged, "(c)")
    except (ServerError, WrkError, OSError) as exc:
        phase.problem(f"iotman: {exc}; server log tail:\n{server.log_tail()}")
    finally:
        stop_and_check(phase, server)


def bare_figure(
    phase: Phase, figure: Figure, wrk: str, tmp: Path, body: Path, single: WrkSettings, warmup: int
) -> None:
    say("(b) bare endpoint: starting `python -m bench.bare_endpoint`")
    try:
        server = start_bare_endpoint(tmp / "bare-endpoint.log")
    except ServerError as exc:
        phase.problem(str(exc))
        return
    say(f"  pid {server.pid}, {server.base_url}; wrk -t{single.threads} -c{single.connections} -d{single.duration_s}s")
    try:
        run, _, details = measure(phase, wrk, server, single, warmup, body, JSON, 1, "(b)")
        figure.rate, figure.details = run.ok_requests_per_s, details
    except (ServerError, WrkError, OSError) as exc:
        phase.problem(f"bare endpoint: {exc}; log tail:\n{server.log_tail()}")
    finally:
        stop_and_check(phase, server)


def sqlite_figure(phase: Phase, figure: Figure, tmp: Path, batches: int) -> None:
    say(f"(d) raw sqlite3: {batches} transactions of {BATCH_EVENTS:,} rows, 3 fresh databases, median")
    folder = tmp / "sqlite-baseline"
    folder.mkdir()
    try:
        result = run_sqlite_baseline(folder, batch_events(), batches=batches)
    except Exception as exc:
        phase.problem(f"sqlite baseline: {exc!r}")
        return
    figure.rate, figure.details = result.rows_per_s, result.to_json()
    say(f"  {result.rows_per_s:,.0f} rows/s (runs: {', '.join(f'{r:,.0f}' for r in result.rows_per_s_runs)})")


def median_figures(rounds: list[dict[str, Figure]]) -> dict[str, Figure]:
    """Per figure, the round with the median rate (its details kept)."""
    out = empty_figures()
    for key in out:
        measured = sorted((r[key] for r in rounds if r[key].rate is not None), key=lambda f: f.rate or 0.0)
        if measured:
            out[key] = measured[len(measured) // 2]
    return out


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise TimeLimitError("the benchmark exceeded its time limit")


def _on_term(signum: int, frame: FrameType | None) -> None:
    print("SIGTERM: stopping the servers and removing the temporary folder", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = find_wrk()
    if wrk is None:
        print("wrk is not installed (it generates the HTTP load); `make system-deps` installs it.", file=sys.stderr)
        return 2
    single = WrkSettings(threads=1, connections=args.connections, duration_s=args.duration)
    batch = WrkSettings(threads=1, connections=args.batch_connections, duration_s=args.duration)
    machine = machine_info(wrk)
    phase = Phase()
    load = machine["load_average_1min_at_start"]
    if load is not None and load > 0.5:
        phase.warning(f"load average is {load} before the run: other jobs share the CPUs, figures may be low")
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(args.time_limit)
    started = time.monotonic()
    say(f"iotman ingest benchmark: {machine['cpu_count']} CPUs, Python {machine['python']}, SQLite {machine['sqlite']}")
    # This machine's speed drifts by 20-30% within minutes, so every figure and its
    # baseline are measured in each of several rounds and the medians are reported.
    rounds: list[dict[str, Figure]] = []
    try:
        for number in range(1, args.rounds + 1):
            say(f"\n-- round {number} of {args.rounds} --")
            figures = empty_figures()
            with tempfile.TemporaryDirectory(prefix="iotman-bench-") as scratch:
                tmp = Path(scratch)
                bodies = write_bodies(tmp)
                iotman_figures(phase, figures, wrk, tmp, bodies, single, batch, args.warmup)
                bare_figure(phase, figures["b"], wrk, tmp, bodies[0], single, args.warmup)
                sqlite_figure(phase, figures["d"], tmp, args.sqlite_batches)
            rounds.append(figures)
    except TimeLimitError as exc:
        phase.problem(f"{exc} ({args.time_limit} s); servers were stopped, figures are partial")
    finally:
        signal.alarm(0)
    figures = median_figures(rounds)
    per_round = [
        {
            "a/b": round(r["a"].rate / r["b"].rate, 3) if r["a"].rate and r["b"].rate else None,
            "c/d": round(r["c"].rate / r["d"].rate, 3) if r["c"].rate and r["d"].rate else None,
        }
        for r in rounds
    ]
    say("ratios per round: " + "; ".join(f"a/b {p['a/b']}, c/d {p['c/d']}" for p in per_round))
    ratios = [
        ratio("single-event ingest vs bare endpoint", figures, "a", "b", TARGET),
        ratio("batched ingest vs raw sqlite3", figures, "c", "d", TARGET),
    ]
    table = console_table(figures, ratios)
    rows = markdown_rows(figures, ratios, machine)
    document = {
        "benchmark": "ingest",
        "machine": machine,
        "elapsed_s": round(time.monotonic() - started, 1),
        "note": "wrk runs on the same machine as the server: load generator and server share the CPUs",
        "rounds": len(rounds),
        "ratios_per_round": per_round,
        "figures": {key: figure.to_json() for key, figure in figures.items()},
        "ratios": {r.measured + "/" + r.baseline: r.to_json() for r in ratios},
        "problems": phase.problems,
        "warnings": phase.warnings,
    }
    write_atomically(args.results / "ingest.json", json_bytes(document))
    write_atomically(args.results / "ingest.md", rows.encode())
    say("\n" + table + "\n\nRows for docs/performance.md:\n" + rows)
    say(f"Wrote {args.results / 'ingest.json'} and {args.results / 'ingest.md'} in {document['elapsed_s']} s.")
    if phase.problems:
        print(f"\n{len(phase.problems)} PROBLEM(S):", file=sys.stderr)
        for text in phase.problems:
            print(f"- {text}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
