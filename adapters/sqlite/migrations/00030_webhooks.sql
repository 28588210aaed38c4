-- +goose Up
-- Webhook subscriptions. Their signing secrets are in data_keys (owner
-- "whsec:<secret id>"), wrapped by the key-encryption key like every key;
-- secrets here lists their ids, creation and expiry (JSON).
CREATE TABLE webhooks (
    id               TEXT    PRIMARY KEY,
    workspace        TEXT    NOT NULL,
    url              TEXT    NOT NULL,
    description      TEXT    NOT NULL,
    types            TEXT    NOT NULL, -- JSON array of public types; [] = every type
    include_personal INTEGER NOT NULL,
    enabled          INTEGER NOT NULL,
    disabled_reason  TEXT    NOT NULL,
    disabled_at      INTEGER,
    secrets          TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    created_by       TEXT    NOT NULL,
    revision         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX webhooks_workspace ON webhooks (workspace, id);

-- How far delivery to each subscription has got: its checkpoint in the log.
CREATE TABLE webhook_progress (
    webhook         TEXT    PRIMARY KEY REFERENCES webhooks (id) ON DELETE CASCADE,
    commit_pos      INTEGER NOT NULL,
    prepare_pos     INTEGER NOT NULL,
    since           INTEGER,
    generation      INTEGER NOT NULL,
    last_success_at INTEGER,
    failing_since   INTEGER,
    last_error      TEXT    NOT NULL,
    updated_at      INTEGER NOT NULL
) WITHOUT ROWID;

-- Events waiting for a retry, or queued behind an earlier event of the
-- same contact that is (next_at NULL).
CREATE TABLE webhook_pending (
    webhook     TEXT    NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    commit_pos  INTEGER NOT NULL,
    prepare_pos INTEGER NOT NULL,
    stream      TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    next_at     INTEGER,
    first_at    INTEGER,
    PRIMARY KEY (webhook, commit_pos, prepare_pos)
) WITHOUT ROWID;

-- Every delivery attempt: status, latency, the ledger's own error text;
-- never the receiver's answer, which could echo personal data.
CREATE TABLE webhook_attempts (
    id          TEXT    NOT NULL,
    webhook     TEXT    NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id    TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    contact_id  TEXT    NOT NULL,
    commit_pos  INTEGER NOT NULL,
    prepare_pos INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    status      INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    latency_us  INTEGER NOT NULL,
    error       TEXT    NOT NULL,
    PRIMARY KEY (webhook, id)
) WITHOUT ROWID;
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);
CREATE INDEX webhook_attempts_event ON webhook_attempts (webhook, event_id);

-- Erasure notices sent to each subscription and their acknowledgments
-- (2xx), for the erasure receipt. Kept when a subscription is deleted.
CREATE TABLE webhook_erasures (
    workspace       TEXT    NOT NULL,
    contact_id      TEXT    NOT NULL,
    webhook         TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    notified_at     INTEGER NOT NULL,
    acknowledged_at INTEGER,
    PRIMARY KEY (workspace, contact_id, webhook)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE webhook_erasures;
DROP TABLE webhook_attempts;
DROP TABLE webhook_pending;
DROP TABLE webhook_progress;
DROP TABLE webhooks;
