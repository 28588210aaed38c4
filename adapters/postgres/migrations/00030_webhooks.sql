-- +goose Up
-- Webhook subscriptions. Their signing secrets are in data_keys (owner
-- "whsec:<secret id>"), wrapped by the key-encryption key like every key;
-- secrets here lists their ids, creation and expiry.
CREATE TABLE webhooks (
    id               text        PRIMARY KEY,
    workspace        text        NOT NULL,
    url              text        NOT NULL,
    description      text        NOT NULL,
    types            jsonb       NOT NULL, -- public types; [] = every type
    include_personal boolean     NOT NULL,
    enabled          boolean     NOT NULL,
    disabled_reason  text        NOT NULL,
    disabled_at      timestamptz,
    secrets          jsonb       NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    created_by       text        NOT NULL,
    revision         bigint      NOT NULL
);
CREATE INDEX webhooks_workspace ON webhooks (workspace, id);

-- How far delivery to each subscription has got: its checkpoint in the log.
CREATE TABLE webhook_progress (
    webhook         text        PRIMARY KEY REFERENCES webhooks (id) ON DELETE CASCADE,
    commit_pos      numeric(20) NOT NULL,
    prepare_pos     numeric(20) NOT NULL,
    since           timestamptz,
    generation      bigint      NOT NULL,
    last_success_at timestamptz,
    failing_since   timestamptz,
    last_error      text        NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- Events waiting for a retry, or queued behind an earlier event of the
-- same contact that is (next_at NULL).
CREATE TABLE webhook_pending (
    webhook     text        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    commit_pos  numeric(20) NOT NULL,
    prepare_pos numeric(20) NOT NULL,
    stream      text        NOT NULL,
    event_id    text        NOT NULL,
    attempts    integer     NOT NULL,
    next_at     timestamptz,
    first_at    timestamptz,
    PRIMARY KEY (webhook, commit_pos, prepare_pos)
);

-- Every delivery attempt: status, latency, the ledger's own error text;
-- never the receiver's answer, which could echo personal data.
CREATE TABLE webhook_attempts (
    id          text        NOT NULL,
    webhook     text        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id    text        NOT NULL,
    event_type  text        NOT NULL,
    contact_id  text        NOT NULL,
    commit_pos  numeric(20) NOT NULL,
    prepare_pos numeric(20) NOT NULL,
    attempt     integer     NOT NULL,
    at          timestamptz NOT NULL,
    status      integer     NOT NULL,
    outcome     text        NOT NULL,
    latency_us  bigint      NOT NULL,
    error       text        NOT NULL,
    PRIMARY KEY (webhook, id)
);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);
CREATE INDEX webhook_attempts_event ON webhook_attempts (webhook, event_id);

-- Erasure notices sent to each subscription and their acknowledgments
-- (2xx), for the erasure receipt. Kept when a subscription is deleted.
CREATE TABLE webhook_erasures (
    workspace       text        NOT NULL,
    contact_id      text        NOT NULL,
    webhook         text        NOT NULL,
    event_id        text        NOT NULL,
    notified_at     timestamptz NOT NULL,
    acknowledged_at timestamptz,
    PRIMARY KEY (workspace, contact_id, webhook)
);

-- +goose Down
DROP TABLE webhook_erasures;
DROP TABLE webhook_attempts;
DROP TABLE webhook_pending;
DROP TABLE webhook_progress;
DROP TABLE webhooks;
