-- +goose Up
-- Identity uniqueness: which contact holds each email and phone of a
-- workspace, by blind index (never the value). A claim is written before the
-- append of the event that gives a contact the value, under this primary
-- key, so that of two commands racing for one value exactly one gets it, on
-- any replica. The ledger checks a claim against the log before it refuses
-- anyone: a claim whose contact no longer holds the value is taken over. An
-- erasure deletes the contact's claims with its key. The blind indexes keep
-- no statistics (see 00004).
CREATE TABLE identity_claims (
    workspace  text        NOT NULL,
    kind       text        NOT NULL,
    bidx       text        NOT NULL,
    contact_id text        NOT NULL,
    claimed_at timestamptz NOT NULL,
    PRIMARY KEY (workspace, kind, bidx)
);
ALTER TABLE identity_claims ALTER COLUMN bidx SET STATISTICS 0;
CREATE INDEX identity_claims_contact ON identity_claims (workspace, contact_id);
-- The contacts of the identity index claim what they hold now (one of
-- several sharing a value gets it; the index still knows the others).
INSERT INTO identity_claims (workspace, kind, bidx, contact_id, claimed_at)
    SELECT workspace, 'email', email_bidx, id, sort_at FROM contact_identities WHERE email_bidx <> '' ORDER BY id
    ON CONFLICT DO NOTHING;
INSERT INTO identity_claims (workspace, kind, bidx, contact_id, claimed_at)
    SELECT workspace, 'phone', phone_bidx, id, sort_at FROM contact_identities WHERE phone_bidx <> '' ORDER BY id
    ON CONFLICT DO NOTHING;

-- Legal holds: the identity index, which keeps every live contact, says
-- which are held (the hold itself is in the row's snapshot), so that the
-- holds of a workspace are one index probe.
ALTER TABLE contact_identities ADD COLUMN hold_id text NOT NULL DEFAULT '';
CREATE INDEX contact_identities_held ON contact_identities (workspace, id) WHERE hold_id <> '';

-- +goose Down
DROP INDEX contact_identities_held;
ALTER TABLE contact_identities DROP COLUMN hold_id;
DROP TABLE identity_claims;
