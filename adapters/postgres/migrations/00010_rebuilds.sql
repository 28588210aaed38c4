-- +goose Up
-- Projection rebuilds, so that any replica can show a rebuild's progress.
-- No personal data: ids, counts, times and non-personal error summaries.
CREATE TABLE projection_rebuilds (
    id               text        PRIMARY KEY,
    projection       text        NOT NULL,
    state            text        NOT NULL,
    phase            text        NOT NULL,
    reason           text        NOT NULL,
    workspace        text        NOT NULL,
    requested_by     text        NOT NULL,
    events_done      bigint      NOT NULL,
    events_total     bigint      NOT NULL,
    started_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    error            text        NOT NULL,
    cancel_requested boolean     NOT NULL DEFAULT false
);
CREATE INDEX projection_rebuilds_started ON projection_rebuilds (started_at DESC);

-- +goose Down
DROP TABLE projection_rebuilds;
