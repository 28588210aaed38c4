-- +goose Up
-- Console sign-ins. Only the SHA-256 hash of a session's secret is kept;
-- the token is checked on every use, so a revoked token's sessions end.
CREATE TABLE console_sessions (
    hash       bytea       NOT NULL PRIMARY KEY,
    token_id   text        NOT NULL,
    workspace  text        NOT NULL,
    created_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
CREATE INDEX console_sessions_seen ON console_sessions (seen_at);

-- +goose Down
DROP TABLE console_sessions;
