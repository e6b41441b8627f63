"""Reading and running the official jsonata-js test suite (../shared/compliance/jsonata-suite)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from iotman.compute.jsonata_engine import UNDEFINED, EvalLimits, JsonataEngine, JsonataFailure

__all__ = ["Case", "load_cases", "run_case"]


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    spec: dict[str, Any]


def load_cases(suite: Path) -> list[Case]:
    # the stdlib parser: some cases hold lone surrogates, which orjson refuses
    datasets = {p.stem: json.loads(p.read_text()) for p in (suite / "datasets").glob("*.json")}
    cases: list[Case] = []
    for path in sorted((suite / "groups").glob("*/*.json")):
        loaded = json.loads(path.read_text())
        items = loaded if isinstance(loaded, list) else [loaded]
        for i, item in enumerate(items):
            spec = dict(item)
            if "expr-file" in spec:
                spec["expr"] = (path.parent / spec["expr-file"]).read_text()
            if "error" in spec and "code" not in spec:
                spec["code"] = spec["error"]["code"]
            if "data" not in spec:
                name = spec.get("dataset")
                spec["data"] = UNDEFINED if name is None else datasets[name]
            suffix = f"[{i}]" if isinstance(loaded, list) else ""
            cases.append(Case(f"{path.parent.name}/{path.stem}{suffix}", spec))
    return cases


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or math.isclose(a, b, rel_tol=1e-13, abs_tol=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b) and type(a) is type(b)


def run_case(engine: JsonataEngine, case: Case) -> str | None:
    """None when the engine gives the expected answer, else what went wrong (one line)."""
    spec = case.spec
    # a case's time limit matters when it expects the evaluation to be stopped; otherwise
    # it is jsonata-js's budget on a fast machine, and a loaded CI machine must not fail it
    time_limit = spec["timelimit"] / 1000 if spec.get("timelimit") else None
    limits = EvalLimits(
        timeout_s=time_limit if time_limit and "code" in spec else max(time_limit or 0, 30.0),
        max_steps=None,
        max_depth=spec.get("depth"),
        max_result_bytes=None,
    )
    try:
        compiled = engine.compile(spec["expr"])
        result = compiled.evaluate(spec["data"], spec.get("bindings") or None, limits)
    except JsonataFailure as exc:
        if "code" in spec:
            return None if exc.code == spec["code"] else f"error {exc.code}, expected {spec['code']}"
        return f"error {exc.code}: {exc.message[:80]}"
    except Exception as exc:  # an engine bug, not a JSONata error: report it as a difference
        return f"crash {type(exc).__name__}: {str(exc)[:80]}"
    if "code" in spec:
        return f"no error, expected {spec['code']}"
    if spec.get("undefinedResult"):
        return None if result is UNDEFINED else f"got {_short(result)}, expected undefined"
    if "result" in spec:
        return None if _same(result, spec["result"]) else f"got {_short(result)}, expected {_short(spec['result'])}"
    return "case has no expectation"


def _short(value: Any) -> str:
    if value is UNDEFINED:
        return "undefined"
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def iter_failures(engine: JsonataEngine, cases: list[Case]) -> Iterator[tuple[str, str]]:
    for case in cases:
        problem = run_case(engine, case)
        if problem is not None:
            yield case.id, problem
