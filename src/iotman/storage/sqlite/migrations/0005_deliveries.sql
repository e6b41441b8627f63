-- iotman SQLite schema, version 5: the delivery outbox of webhooks and MQTT pushes (SPEC §5.2, §5.3).
-- One row per (matching event, target), written in the ingest transaction; the sender
-- claims due rows with a lease, so a crashed sender's rows are tried again when it expires.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    ws_id INTEGER NOT NULL,
    target TEXT NOT NULL,                  -- 'webhook:<name>' or 'mqtt-push:<name>'
    seq INTEGER NOT NULL,                  -- the event
    state TEXT NOT NULL DEFAULT 'pending', -- pending | delivered | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    lease_until_us INTEGER NOT NULL DEFAULT 0,
    created_at_us INTEGER NOT NULL,
    done_at_us INTEGER,
    last_status INTEGER,                   -- HTTP status of the last attempt (webhooks)
    last_latency_us INTEGER,
    last_error TEXT
);
-- the sender claims per target, oldest due first: a target it skips (busy, paused) costs nothing
CREATE INDEX deliveries_due ON deliveries (ws_id, target, next_attempt_us) WHERE state = 'pending';
CREATE INDEX deliveries_target ON deliveries (ws_id, target, id);
CREATE INDEX deliveries_done ON deliveries (done_at_us) WHERE state = 'delivered';
