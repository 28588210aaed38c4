-- +goose Up
-- Every view's table (live, or a rebuild's shadow) gets the operation that
-- moved its contact to trash, so that a restore job can ask for what one
-- operation trashed, with an index probe. The views' tables are made by the
-- store (EnsureViews, rebuilds), so they may not exist yet: new ones have
-- the column from the start. projections.Version 3 rebuilds the views,
-- which fills it for the contacts already in trash.
-- +goose StatementBegin
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN
        SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'rm\_%'
    LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS trashed_op text NOT NULL DEFAULT %L', t, '');
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (workspace, trashed_op) WHERE trashed_op <> %L', t || '_op', t, '');
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN
        SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'rm\_%'
    LOOP
        EXECUTE format('DROP INDEX IF EXISTS %I', t || '_op');
        EXECUTE format('ALTER TABLE %I DROP COLUMN IF EXISTS trashed_op', t);
    END LOOP;
END
$$;
-- +goose StatementEnd
