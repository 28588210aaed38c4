-- +goose Up
-- PostgreSQL's planner statistics (pg_statistic, written by ANALYZE and by
-- autovacuum) keep sample values of each column: most common values and
-- histogram bounds. For a column with personal data or key material those
-- samples are copies that the erasure of a contact never reaches: a test
-- found names, phones and wrapped data keys of erased contacts in
-- pg_statistic and its TOAST table. Such columns keep no statistics (their
-- lookups go through blind indexes or ids, which the planner estimates
-- well enough without), and changing each to its own type drops the
-- statistics gathered so far (ALTER ... SET STATISTICS alone keeps them).
-- The views' tables get the same in EnsureViews; here, only those that
-- already exist need their old statistics dropped.
ALTER TABLE data_keys
    ALTER COLUMN wrapped SET STATISTICS 0, ALTER COLUMN wrapped TYPE bytea;
ALTER TABLE idempotency
    ALTER COLUMN key SET STATISTICS 0, ALTER COLUMN key TYPE text,
    ALTER COLUMN body SET STATISTICS 0, ALTER COLUMN body TYPE bytea;
ALTER TABLE contact_identities
    ALTER COLUMN doc SET STATISTICS 0, ALTER COLUMN doc TYPE jsonb,
    ALTER COLUMN email_bidx SET STATISTICS 0, ALTER COLUMN email_bidx TYPE text,
    ALTER COLUMN phone_bidx SET STATISTICS 0, ALTER COLUMN phone_bidx TYPE text,
    ALTER COLUMN ext_bidx SET STATISTICS 0, ALTER COLUMN ext_bidx TYPE text;
-- +goose StatementBegin
DO $$
DECLARE
    t text;
    c text;
BEGIN
    FOREACH t IN ARRAY ARRAY['rm_active', 'rm_archived', 'rm_trash', 'rm_anonymized'] LOOP
        IF to_regclass(t) IS NOT NULL THEN
            FOREACH c IN ARRAY ARRAY['name', 'email', 'phone', 'phone_norm', 'email_bidx', 'phone_bidx'] LOOP
                EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET STATISTICS 0, ALTER COLUMN %I TYPE text', t, c, c);
            END LOOP;
            EXECUTE format('ALTER TABLE %I ALTER COLUMN doc SET STATISTICS 0, ALTER COLUMN doc TYPE jsonb', t);
        END IF;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE data_keys ALTER COLUMN wrapped SET STATISTICS -1;
ALTER TABLE idempotency ALTER COLUMN key SET STATISTICS -1, ALTER COLUMN body SET STATISTICS -1;
ALTER TABLE contact_identities ALTER COLUMN doc SET STATISTICS -1, ALTER COLUMN email_bidx SET STATISTICS -1,
    ALTER COLUMN phone_bidx SET STATISTICS -1, ALTER COLUMN ext_bidx SET STATISTICS -1;
