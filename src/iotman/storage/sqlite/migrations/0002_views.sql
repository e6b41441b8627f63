-- iotman SQLite schema, version 2: view rows (SPEC §4.1).
-- One row per (workspace, view, key); the value is JSON text. Keys are ordered, so a
-- prefix scan is one index range.
CREATE TABLE view_rows (
    ws_id INTEGER NOT NULL,
    view TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at_us INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (ws_id, view, key)
) WITHOUT ROWID;
