-- +goose Up
-- Idempotency keys belong to the token that sent them: (workspace, key,
-- principal). An answer about a contact that was erased since keeps only
-- ids (erased_by names the tombstone) and is answered 410, never replayed.
-- Records stored before this change do not say whose they were: their
-- answers (which could hold personal data) are dropped here, and a repeat
-- of one gets "answer not kept" instead of running again; claims whose
-- request died (the server stopped for the upgrade) are dropped, so a
-- repeat runs again, as after any lapsed claim.
ALTER TABLE idempotency
    ADD COLUMN principal text NOT NULL DEFAULT '',
    ADD COLUMN erased_by text NOT NULL DEFAULT '';
DELETE FROM idempotency WHERE NOT done;
UPDATE idempotency SET status = 0, header = '{}', body = NULL;
ALTER TABLE idempotency DROP CONSTRAINT idempotency_pkey, ADD PRIMARY KEY (workspace, key, principal);
ALTER TABLE idempotency ALTER COLUMN principal SET STATISTICS 0;

-- +goose Down
DELETE FROM idempotency WHERE principal <> '';
ALTER TABLE idempotency DROP CONSTRAINT idempotency_pkey, ADD PRIMARY KEY (workspace, key);
ALTER TABLE idempotency DROP COLUMN principal, DROP COLUMN erased_by;
