-- +goose Up
-- When a projection's batches started failing (NULL while it works), so
-- that every replica can show it, not only the one that runs it.
ALTER TABLE projections ADD COLUMN failed_at timestamptz;

-- +goose Down
ALTER TABLE projections DROP COLUMN failed_at;
