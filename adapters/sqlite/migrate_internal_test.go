package sqlite

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/contactledger/ledger/internal/storetest"
	"github.com/pressly/goose/v3"
)

// TestTrashedOperationMigration takes a store back to before migration 51
// (its views' tables already made, as a deployment's are) and opens it
// again: the migration adds the trashed_op column and its index to the
// tables that exist, and the trash view filters by operation.
func TestTrashedOperationMigration(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open(driverName, "file:"+filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := fs.Sub(migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub, goose.WithAllowOutofOrder(true), goose.WithGoMigrations(goMigrations()...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 50); err != nil {
		t.Fatal(err)
	}
	hasColumn := func() bool {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('rm_trash') WHERE name = 'trashed_op'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if hasColumn() {
		t.Fatal("migration 51's down left the column")
	}
	db.Close()

	s, err = Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'rm_trash_op'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the operation index: %d, %v", n, err)
	}
	storetest.TrashByOperation(t, s)
}
