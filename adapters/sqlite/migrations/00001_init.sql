-- +goose Up
-- The log: one row per event, in commit order. Positions come from the
-- single writer, so they never have holes a reader could skip.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    id             BLOB    NOT NULL UNIQUE,
    stream         TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    time           INTEGER NOT NULL, -- unix microseconds
    workspace      TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    actor_role     TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    causation_id   TEXT    NOT NULL,
    schema         INTEGER NOT NULL,
    data           BLOB    NOT NULL,
    sealed         BLOB,
    prev_hash      BLOB,
    hash           BLOB    NOT NULL,
    UNIQUE (stream, version)
);
CREATE INDEX events_workspace ON events (workspace, position);

-- The key vault: data keys wrapped by the key-encryption key. Deleting a row is the erasure.
CREATE TABLE data_keys (
    owner      TEXT    PRIMARY KEY,
    workspace  TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    kek_id     TEXT    NOT NULL,
    wrapped    BLOB    NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE workspaces (
    name       TEXT    PRIMARY KEY,
    created_at INTEGER NOT NULL,
    policy     TEXT    NOT NULL
) WITHOUT ROWID;

CREATE TABLE tokens (
    id         TEXT    PRIMARY KEY,
    workspace  TEXT    NOT NULL REFERENCES workspaces (name),
    role       TEXT    NOT NULL,
    hash       BLOB    NOT NULL,
    label      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) WITHOUT ROWID;

-- Projection checkpoints; each is moved in the same transaction as the rows it covers.
CREATE TABLE projections (
    name        TEXT    PRIMARY KEY,
    commit_pos  INTEGER NOT NULL,
    prepare_pos INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- +goose Down
DROP TABLE projections;
DROP TABLE tokens;
DROP TABLE workspaces;
DROP TABLE data_keys;
DROP TABLE events;
