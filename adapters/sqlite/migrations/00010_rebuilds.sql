-- +goose Up
-- Projection rebuilds, so that any process can show a rebuild's progress.
-- No personal data: ids, counts, times and non-personal error summaries.
CREATE TABLE projection_rebuilds (
    id               TEXT    PRIMARY KEY,
    projection       TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    phase            TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    workspace        TEXT    NOT NULL,
    requested_by     TEXT    NOT NULL,
    events_done      INTEGER NOT NULL,
    events_total     INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    error            TEXT    NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX projection_rebuilds_started ON projection_rebuilds (started_at DESC);

-- +goose Down
DROP TABLE projection_rebuilds;
