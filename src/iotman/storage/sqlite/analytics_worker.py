"""The analytics worker: a child process answering DuckDB queries over the SQLite file.

Run as ``python -m iotman.storage.sqlite.analytics_worker PATH THREADS MEMORY_MB``.
It reads frames from stdin and writes frames to stdout; a frame is a 4-byte
big-endian length and a msgpack map. Request ``{"sql", "params"}``; answer
``{"rows": [[...], ...]}`` or ``{"error": "..."}``. The first frame it writes is
``{"ready": DuckDB version}`` (or ``{"error": ...}`` when DuckDB cannot start). It
exits when stdin closes, so it never outlives the server.

DuckDB runs in its own process because its SQLite extension links a second copy of
SQLite: two copies in one process break SQLite's POSIX file locks (closing one copy's
file descriptor drops the other's locks), which can corrupt a database.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from iotman.storage.sqlite.analytics_frames import read_frame, write_frame

__all__ = ["main"]


def _sqlite_extension(version: str) -> Path:
    import duckdb_extension_sqlite_scanner  # type: ignore[import-untyped]

    folder = Path(duckdb_extension_sqlite_scanner.__file__).parent / "extensions" / f"v{version}"
    found = sorted(folder.glob("*.duckdb_extension"))
    if not found:
        raise RuntimeError(f"no DuckDB sqlite extension for DuckDB {version} in {folder}")
    return found[0]


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _connect(path: str, threads: int, memory_mb: int) -> Any:
    import duckdb

    temp = Path(path).resolve().parent / "analytics-tmp"
    conn = duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "threads": threads,
            "memory_limit": f"{memory_mb}MB",
            "temp_directory": str(temp),
        }
    )
    conn.execute(f"LOAD {_quoted(str(_sqlite_extension(duckdb.__version__)))}")
    for index in range(threads):  # one SQLite connection each: sqlite_query reads them in parallel
        conn.execute(f"ATTACH {_quoted(path)} AS log{index} (TYPE sqlite, READ_ONLY)")
    conn.execute("SELECT * FROM sqlite_query('log0', 'SELECT pos FROM events LIMIT 1')")  # an iotman log?
    return conn


def _exit_with_parent() -> None:
    """Exit as soon as the server is gone, even in the middle of a query (stdin only
    tells us between queries)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _exit_with_parent()
    path, threads, memory_mb = args[0], int(args[1]), int(args[2])
    stdin = sys.stdin.buffer
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    try:
        import duckdb

        conn = _connect(path, threads, memory_mb)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which falls back to SQLite
        write_frame(stdout, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    write_frame(stdout, {"ready": duckdb.__version__})
    while (request := read_frame(stdin)) is not None:
        try:
            rows = conn.execute(request["sql"], request["params"]).fetchall()
        except duckdb.Error as exc:
            write_frame(stdout, {"error": f"{type(exc).__name__}: {exc}"})
            continue
        write_frame(stdout, {"rows": [list(row) for row in rows]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
