-- +goose Up
-- Outcomes of requests sent with an Idempotency-Key, kept 48 hours. An
-- answer about a contact holds personal data, so its row names the contact
-- and goes when the contact is erased.
CREATE TABLE idempotency (
    workspace    TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    fingerprint  BLOB,
    done         INTEGER NOT NULL,
    locked_until INTEGER NOT NULL,
    status       INTEGER NOT NULL,
    header       TEXT    NOT NULL,
    body         BLOB,
    contact_id   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
CREATE INDEX idempotency_contact ON idempotency (workspace, contact_id) WHERE contact_id <> '';

-- +goose Down
DROP TABLE idempotency;
