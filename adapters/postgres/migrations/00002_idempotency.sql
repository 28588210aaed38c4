-- +goose Up
-- Outcomes of requests sent with an Idempotency-Key, kept 48 hours. An
-- answer about a contact holds personal data, so its row names the contact
-- and goes when the contact is erased.
CREATE TABLE idempotency (
    workspace    text        NOT NULL,
    key          text        NOT NULL,
    fingerprint  bytea,
    done         boolean     NOT NULL,
    locked_until timestamptz NOT NULL,
    status       integer     NOT NULL,
    header       jsonb       NOT NULL,
    body         bytea,
    contact_id   text        NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace, key)
);
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
CREATE INDEX idempotency_contact ON idempotency (workspace, contact_id) WHERE contact_id <> '';

-- +goose Down
DROP TABLE idempotency;
