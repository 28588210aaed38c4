-- +goose Up
-- Idempotency keys belong to the token that sent them: (workspace, key,
-- principal). An answer about a contact that was erased since keeps only
-- ids (erased_by names the tombstone) and is answered 410, never replayed.
-- Records stored before this change do not say whose they were: their
-- answers (which could hold personal data) are dropped here, and a repeat
-- of one gets "answer not kept" instead of running again; claims whose
-- request died (the server stopped for the upgrade) are dropped, so a
-- repeat runs again, as after any lapsed claim.
CREATE TABLE idempotency_scoped (
    workspace    TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    principal    TEXT    NOT NULL,
    fingerprint  BLOB,
    done         INTEGER NOT NULL,
    locked_until INTEGER NOT NULL,
    status       INTEGER NOT NULL,
    header       TEXT    NOT NULL,
    body         BLOB,
    contact_id   TEXT    NOT NULL,
    erased_by    TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace, key, principal)
) WITHOUT ROWID;
INSERT INTO idempotency_scoped (workspace, key, principal, fingerprint, done, locked_until, status, header, body, contact_id, erased_by, created_at, expires_at)
    SELECT workspace, key, '', fingerprint, done, locked_until, 0, '{}', NULL, contact_id, '', created_at, expires_at FROM idempotency WHERE done = 1;
DROP TABLE idempotency;
ALTER TABLE idempotency_scoped RENAME TO idempotency;
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
CREATE INDEX idempotency_contact ON idempotency (workspace, contact_id) WHERE contact_id <> '';

-- +goose Down
CREATE TABLE idempotency_unscoped (
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
INSERT OR IGNORE INTO idempotency_unscoped
    SELECT workspace, key, fingerprint, done, locked_until, 0, '{}', NULL, contact_id, created_at, expires_at FROM idempotency;
DROP TABLE idempotency;
ALTER TABLE idempotency_unscoped RENAME TO idempotency;
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
CREATE INDEX idempotency_contact ON idempotency (workspace, contact_id) WHERE contact_id <> '';
