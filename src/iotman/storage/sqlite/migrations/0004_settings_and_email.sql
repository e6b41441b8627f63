-- iotman SQLite schema, version 4: workspace settings and the email outbox (SPEC §4.2).
-- A setting is one JSON document per (workspace, name), e.g. "smtp". Secrets in it are
-- never returned by the admin API.
CREATE TABLE workspace_settings (
    ws_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (ws_id, name)
) WITHOUT ROWID;

-- Emails a function sent ($send_email): written in the function's transaction, delivered
-- after commit by the sender, retried with backoff until sent or dead.
CREATE TABLE email_outbox (
    id INTEGER PRIMARY KEY,
    ws_id INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL,
    recipients TEXT NOT NULL,          -- JSON array of addresses
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    lease_until_us INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at_us INTEGER
);
CREATE INDEX email_outbox_due ON email_outbox (state, next_attempt_us) WHERE state = 'pending';
CREATE INDEX email_outbox_ws ON email_outbox (ws_id, id);
