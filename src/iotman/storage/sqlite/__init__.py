"""The SQLite adapter (embedded default store)."""

from iotman.storage.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
