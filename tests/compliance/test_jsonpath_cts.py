"""The RFC 9535 JSONPath Compliance Test Suite against iotman's query layer (engine and fast path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from iotman.errors import DefinitionInvalid
from iotman.process.jsonpath_query import compile_query


def _expected(case: dict[str, Any]) -> list[list[Any]]:
    return [case["result"]] if "result" in case else case["results"]


def test_every_cts_case(compliance: Path) -> None:
    cases = json.loads((compliance / "jsonpath-cts" / "cts.json").read_text())["tests"]
    assert len(cases) == 703
    failures: list[str] = []
    singular = 0
    for case in cases:
        name, selector = case["name"], case["selector"]
        if case.get("invalid_selector"):
            try:
                compile_query(selector, "selector")
            except DefinitionInvalid:
                continue
            failures.append(f"{name}: accepted invalid {selector!r}")
            continue
        try:
            query = compile_query(selector, "selector")
        except DefinitionInvalid as exc:
            failures.append(f"{name}: refused valid {selector!r}: {exc.message}")
            continue
        expected = _expected(case)
        if query.engine_find(case["document"]) not in expected:
            failures.append(f"{name}: engine gave {query.engine_find(case['document'])!r}")
        if query.find(case["document"]) not in expected:
            failures.append(f"{name}: find gave {query.find(case['document'])!r}")
        if query.singular:
            singular += 1
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:20])
    assert singular > 50, "the fast path must be exercised by the suite's singular queries"
