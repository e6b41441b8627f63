"""Cron jobs (SPEC §4.4): once per tick, across servers on one store; one catch-up run; status."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from iotman.app import build_engine
from iotman.core.clock import FixedClock
from iotman.settings import load_settings
from iotman.storage.ports import EventQuery
from tests.conftest import START_US, Api, wait_for

ROLLUP = '($iotman_call("POST", "/data/acme/rollups", {"job": "hourly", "at": $now()}); $input.fail ? $fail(409, "no"))'


def prepare(api: Api, **job: Any) -> None:
    api.source(name="rollups")
    api.admin("POST", "/clients", json={"name": "cron", "scopes": ["iotman:data:*"], "is_worker": True})
    assert api.admin("POST", "/functions", json={"name": "rollup", "body": ROLLUP, "worker": "cron"}).status_code == 201
    created = api.admin("POST", "/cron-jobs", json={"name": "hourly", "function": "rollup", **job})
    assert created.status_code == 201, created.text


def runs(api: Api) -> int:
    ws = api.engine.registry.workspace(api.ws)
    return len(api.engine.store.read_events(EventQuery(ws.id, sources=("rollups",), limit=1000)))


def test_a_job_runs_once_per_tick_and_once_after_downtime(api: Api) -> None:
    prepare(api, every_seconds=60)
    time.sleep(1.5)
    assert runs(api) == 0  # created between ticks: the tick already past does not run
    api.clock.advance(60)
    wait_for(lambda: runs(api) == 1)
    status = api.admin("GET", "/cron-jobs/hourly").json()["status"]
    assert status["runs"] == 1
    assert status["last_error"] is None
    assert status["next_run"] > status["last_run"]
    time.sleep(1.5)
    assert runs(api) == 1  # the same tick never twice
    api.clock.advance(600)  # ten ticks missed: one catch-up run
    wait_for(lambda: runs(api) == 2)
    time.sleep(1.5)
    assert runs(api) == 2


def test_a_failing_run_is_undone_reported_and_its_tick_consumed(api: Api) -> None:
    prepare(api, every_seconds=60, input={"fail": True})
    api.clock.advance(60)
    wait_for(lambda: api.admin("GET", "/cron-jobs/hourly").json()["status"]["runs"] == 1)
    status = api.admin("GET", "/cron-jobs/hourly").json()["status"]
    assert status["last_error"]["status"] == 409
    assert runs(api) == 0


def test_schedules_are_checked_when_saved(api: Api) -> None:
    api.admin("POST", "/clients", json={"name": "cron", "is_worker": True})
    api.admin("POST", "/functions", json={"name": "f", "body": "1", "worker": "cron"})
    for bad in (
        {"schedule": "61 * * * *"},
        {"schedule": "* * * *"},
        {"schedule": "0 * * * *", "every_seconds": 60},
        {},
        {"schedule": "0 * * * *", "timezone": "Mars/Olympus"},
    ):
        answer = api.admin("POST", "/cron-jobs", json={"name": "j", "function": "f", **bad})
        assert answer.status_code == 422, (bad, answer.text)
    missing = api.admin("POST", "/cron-jobs", json={"name": "j", "function": "nope", "every_seconds": 5})
    assert missing.json()["error"]["code"] == "unknown_function"
    ok = api.admin(
        "POST", "/cron-jobs", json={"name": "j", "function": "f", "schedule": "0 9 * * 1-5", "timezone": "Europe/Paris"}
    )
    assert ok.status_code == 201
    assert api.admin("DELETE", "/functions/f").status_code == 409  # a cron job runs it


def test_two_servers_on_one_store_run_a_tick_once(tmp_path: Path) -> None:
    settings = load_settings(environ={}, data=str(tmp_path / "data"))
    clock_a, clock_b = FixedClock(START_US), FixedClock(START_US)
    a = build_engine(settings, clock=clock_a)
    a.open()
    b = build_engine(settings, clock=clock_b)
    b.open()
    try:
        a.admin.create_workspace("acme")
        a.admin.create_source("acme", {"name": "rollups"})
        a.admin.create("acme", "clients", {"name": "cron", "scopes": ["iotman:data:*"], "is_worker": True})
        a.admin.create("acme", "functions", {"name": "rollup", "body": ROLLUP, "worker": "cron"})
        a.admin.create("acme", "cron-jobs", {"name": "hourly", "function": "rollup", "every_seconds": 60})
        for round_no in range(1, 6):
            clock_a.advance(60)
            clock_b.advance(60)
            counts: list[int] = []

            def run(engine: Any, into: list[int] = counts) -> None:
                into.append(engine.cron.run_due())

            threads = [threading.Thread(target=run, args=(e,)) for e in (a, b)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert sorted(counts) == [0, 1], counts  # one of them ran it
            ws = a.registry.workspace("acme")
            events = a.store.read_events(EventQuery(ws.id, sources=("rollups",), limit=100))
            assert len(events) == round_no
            assert json.loads(events[0].payload)["job"] == "hourly"
    finally:
        b.close()
        a.close()
