"""Presenting one benchmark run: the console table, markdown rows and bench/results/ingest.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ["RESULTS_DIR", "Figure", "Ratio", "console_table", "markdown_rows", "write_atomically", "write_results"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(slots=True)
class Figure:
    key: str  # "a" .. "d"
    title: str
    rate: float | None  # events/s (rows/s for the sqlite baseline); None if the phase failed
    unit: str = "events/s"
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "rate": self.rate, "unit": self.unit, **self.details}


@dataclass(frozen=True, slots=True)
class Ratio:
    name: str
    measured: str  # figure key
    baseline: str  # figure key
    target: float
    value: float | None

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "n/a"
        return "meets target" if self.value >= self.target else "BELOW TARGET"

    def to_json(self) -> dict[str, Any]:
        return {
            "measured": self.measured,
            "baseline": self.baseline,
            "value": None if self.value is None else round(self.value, 3),
            "target": self.target,
            "meets_target": None if self.value is None else self.value >= self.target,
        }


def ratio(name: str, figures: dict[str, Figure], measured: str, baseline: str, target: float) -> Ratio:
    top, bottom = figures[measured].rate, figures[baseline].rate
    value = top / bottom if top is not None and bottom else None
    return Ratio(name, measured, baseline, target, value)


def _rate(value: float | None) -> str:
    return "failed" if value is None else f"{value:,.0f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def console_table(figures: dict[str, Figure], ratios: list[Ratio]) -> str:
    width = max(len(f"({f.key}) {f.title}") for f in figures.values())
    lines = [f"{'figure':<{width}}  {'rate':>12}  unit", "-" * (width + 26)]
    lines += [f"{f'({f.key}) {f.title}':<{width}}  {_rate(f.rate):>12}  {f.unit}" for f in figures.values()]
    lines.append("")
    for r in ratios:
        lines.append(
            f"{r.name}: ({r.measured}) / ({r.baseline}) = {_percent(r.value)}"
            f"  (target >= {100 * r.target:.0f}%: {r.verdict})"
        )
    return "\n".join(lines)


MARKDOWN_HEADER = (
    "| Date | CPUs | Python | SQLite | (a) iotman, 1 event/request | (b) bare Starlette | (a)/(b)"
    " | (c) iotman, NDJSON batches of 1,000 | (d) raw SQLite, same rows | (c)/(d) |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def markdown_rows(figures: dict[str, Figure], ratios: list[Ratio], machine: dict[str, Any]) -> str:
    """The header and this run's row of the docs/performance.md results table."""
    by_name = {r.measured: r for r in ratios}
    cells = [
        str(machine["date"])[:10],
        str(machine["cpu_count"]),
        str(machine["python"]),
        str(machine["sqlite"]),
        f"{_rate(figures['a'].rate)} events/s",
        f"{_rate(figures['b'].rate)} events/s",
        _percent(by_name["a"].value),
        f"{_rate(figures['c'].rate)} events/s",
        f"{_rate(figures['d'].rate)} rows/s",
        _percent(by_name["c"].value),
    ]
    return MARKDOWN_HEADER + "\n| " + " | ".join(cells) + " |\n"


def write_atomically(path: Path, data: bytes) -> None:
    """Write via ``<name>.tmp`` and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_bytes(data)
    os.replace(scratch, path)


def json_bytes(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def write_results(path: Path, results: dict[str, Any]) -> None:
    """A benchmark's figures as JSON (atomically), and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (json.dumps(results, indent=2) + "\n").encode())
    print(f"Wrote {path}")
