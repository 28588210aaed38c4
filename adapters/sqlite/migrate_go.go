package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/pressly/goose/v3"
)

// goMigrations are the migrations SQL alone cannot write: SQLite has no
// conditional ALTER, and the views' tables are made by the store
// (EnsureViews, rebuilds), so a migration must look for them first.
func goMigrations() []*goose.Migration {
	return []*goose.Migration{
		// 51: every view's table (live, or a rebuild's shadow) gets the
		// operation that moved its contact to trash, so that a restore job
		// can ask for what one operation trashed. New tables have it from
		// viewTableDDL; projections.Version 3 rebuilds the views, which
		// fills it for the contacts already in trash.
		goose.NewGoMigration(51, &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
			tables, err := viewTables(ctx, tx)
			if err != nil {
				return err
			}
			for _, t := range tables {
				var has int
				if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = 'trashed_op'`, t).Scan(&has); err != nil {
					return err
				}
				if has == 0 {
					if _, err := tx.ExecContext(ctx, `ALTER TABLE `+t+` ADD COLUMN trashed_op TEXT NOT NULL DEFAULT ''`); err != nil {
						return fmt.Errorf("add trashed_op to %s: %w", t, err)
					}
				}
				if _, err := tx.ExecContext(ctx, opIndex(t)); err != nil {
					return fmt.Errorf("index trashed_op of %s: %w", t, err)
				}
			}
			return nil
		}}, &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
			tables, err := viewTables(ctx, tx)
			if err != nil {
				return err
			}
			for _, t := range tables {
				if _, err := tx.ExecContext(ctx, `DROP INDEX IF EXISTS `+t+`_op`); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `ALTER TABLE `+t+` DROP COLUMN trashed_op`); err != nil {
					return err
				}
			}
			return nil
		}}),
	}
}

// viewTables lists the tables of the views, live and shadow.
func viewTables(ctx context.Context, tx *sql.Tx) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'rm\_%' ESCAPE '\'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		if !strings.ContainsAny(n, `"'; `) {
			out = append(out, n)
		}
	}
	return out, rows.Err()
}
