-- +goose Up
-- The log. Global order is (tx, seq): tx is the appending transaction's id,
-- seq comes from a sequence. Readers only read rows whose transaction is
-- older than every transaction still running (pg_snapshot_xmin), so a
-- transaction that commits late can never hide behind a position a reader
-- has already passed: no event is ever skipped.
CREATE TABLE events (
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    tx             xid8        NOT NULL DEFAULT pg_current_xact_id(),
    id             bytea       NOT NULL,
    stream         text        NOT NULL,
    version        bigint      NOT NULL,
    type           text        NOT NULL,
    time           timestamptz NOT NULL,
    workspace      text        NOT NULL,
    actor          text        NOT NULL,
    actor_role     text        NOT NULL,
    correlation_id text        NOT NULL,
    causation_id   text        NOT NULL,
    schema         integer     NOT NULL,
    data           bytea       NOT NULL,
    sealed         bytea,
    prev_hash      bytea,
    hash           bytea       NOT NULL,
    PRIMARY KEY (tx, seq),
    UNIQUE (id),
    UNIQUE (stream, version)
);
CREATE INDEX events_workspace ON events (workspace, tx, seq);

-- The key vault: data keys wrapped by the key-encryption key. Deleting a row is the erasure.
CREATE TABLE data_keys (
    owner      text        PRIMARY KEY,
    workspace  text        NOT NULL,
    key_id     text        NOT NULL,
    kek_id     text        NOT NULL,
    wrapped    bytea       NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX data_keys_kek ON data_keys (kek_id);

CREATE TABLE workspaces (
    name       text        PRIMARY KEY,
    created_at timestamptz NOT NULL,
    policy     jsonb       NOT NULL
);

CREATE TABLE tokens (
    id         text        PRIMARY KEY,
    workspace  text        NOT NULL REFERENCES workspaces (name),
    role       text        NOT NULL,
    hash       bytea       NOT NULL,
    label      text        NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);

-- Projection checkpoints; each is moved in the same transaction as the rows it covers.
CREATE TABLE projections (
    name        text        PRIMARY KEY,
    commit_pos  numeric(20) NOT NULL,
    prepare_pos numeric(20) NOT NULL,
    version     integer     NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- +goose Down
DROP TABLE projections;
DROP TABLE tokens;
DROP TABLE workspaces;
DROP TABLE data_keys;
DROP TABLE events;
