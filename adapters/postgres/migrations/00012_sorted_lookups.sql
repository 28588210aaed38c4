-- +goose Up
-- An exact email or phone lookup in a view asks for its newest rows first.
-- The planner keeps no statistics on the blind-index columns (see 00004),
-- so it guesses that thousands of rows match and, for a page of 50, prefers
-- walking the view's order index and filtering: one lookup read the whole
-- view (370 ms at a million contacts). Indexes that hold the order after
-- the blind index answer the lookup and its order in one probe. Each index
-- keeps its name (a rebuilt view's indexes are named after its shadow).
-- +goose StatementBegin
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT i.indexname, i.tablename, c.col
        FROM pg_indexes i
        CROSS JOIN (VALUES ('email_bidx'), ('phone_bidx')) AS c(col)
        WHERE i.schemaname = current_schema() AND i.tablename LIKE 'rm\_%'
          AND i.indexdef LIKE '%(workspace, ' || c.col || ') WHERE%'
    LOOP
        EXECUTE format('DROP INDEX %I', r.indexname);
        EXECUTE format('CREATE INDEX %I ON %I (workspace, %I, sort_at DESC, id DESC) WHERE %I <> %L',
            r.indexname, r.tablename, r.col, r.col, '');
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT i.indexname, i.tablename, c.col
        FROM pg_indexes i
        CROSS JOIN (VALUES ('email_bidx'), ('phone_bidx')) AS c(col)
        WHERE i.schemaname = current_schema() AND i.tablename LIKE 'rm\_%'
          AND i.indexdef LIKE '%(workspace, ' || c.col || ', sort_at DESC, id DESC) WHERE%'
    LOOP
        EXECUTE format('DROP INDEX %I', r.indexname);
        EXECUTE format('CREATE INDEX %I ON %I (workspace, %I) WHERE %I <> %L',
            r.indexname, r.tablename, r.col, r.col, '');
    END LOOP;
END
$$;
-- +goose StatementEnd
