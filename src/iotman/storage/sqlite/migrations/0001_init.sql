-- iotman SQLite schema, version 1.
CREATE TABLE workspaces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: it prefixes event positions
    slug TEXT NOT NULL UNIQUE,
    uuid TEXT NOT NULL UNIQUE,
    created_at_us INTEGER NOT NULL
);

CREATE TABLE definitions (
    ws_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT,
    body TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (ws_id, kind, name)
);
CREATE UNIQUE INDEX definitions_path ON definitions (ws_id, kind, path) WHERE path IS NOT NULL;

CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    ws_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER
);

-- The log. pos = (workspace id << 40) | seq, so one workspace's log is one
-- contiguous rowid range and needs no extra index for order or seq lookups.
CREATE TABLE events (
    pos INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at_us INTEGER NOT NULL,
    payload TEXT NOT NULL,
    metadata TEXT NOT NULL,
    tags TEXT
);
CREATE UNIQUE INDEX events_id ON events (id);
CREATE INDEX events_by_source ON events (source);  -- entries are (source, pos)

CREATE TABLE idempotency (
    ws_id INTEGER NOT NULL,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    ids TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    received_at_us INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL,
    PRIMARY KEY (ws_id, scope, key)
);
CREATE INDEX idempotency_age ON idempotency (created_at_us);

CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ws_id INTEGER NOT NULL,
    at_us INTEGER NOT NULL,
    source TEXT,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    principal TEXT,
    content_type TEXT,
    body_size INTEGER NOT NULL,
    body_head BLOB NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX quarantine_ws ON quarantine (ws_id, id);
