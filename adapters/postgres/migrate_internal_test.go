package postgres

import (
	"context"
	"io/fs"
	"testing"

	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/contactledger/ledger/internal/storetest"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// TestTrashedOperationMigration takes a database back to before migration
// 51 (its views' tables already made, as a deployment's are) and opens it
// again: the migration adds the trashed_op column and its index to the
// tables that exist, and the trash view filters by operation.
func TestTrashedOperationMigration(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	s, err := Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDBFromPool(s.pool)
	sub, _ := fs.Sub(migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithAllowOutofOrder(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 50); err != nil {
		t.Fatal(err)
	}
	column := func(s *Store) int {
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'rm_trash' AND column_name = 'trashed_op'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if column(s) != 0 {
		t.Fatal("migration 51's down left the column")
	}
	db.Close()
	s.Close()

	s, err = Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var idx int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE indexname = 'rm_trash_op'`).Scan(&idx); err != nil || column(s) != 1 || idx != 1 {
		t.Fatalf("after the migration: column %d, index %d, %v", column(s), idx, err)
	}
	storetest.TrashByOperation(t, s)
}
