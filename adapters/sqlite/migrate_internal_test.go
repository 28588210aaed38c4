package sqlite

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
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
	b, _ := shred.NewBlindIndex(make([]byte, 32))
	at := time.Now().UTC().Truncate(time.Microsecond)
	by := contact.Actor{Principal: "tok_m", Role: contact.RoleMember}
	var rows []projections.Row
	for _, op := range []string{"bulk:r1", "bulk:r2"} {
		sn := contact.Snapshot{ID: contact.NewID(), Workspace: "ws", State: contact.StateTrashed, Version: 2, CreatedAt: at, UpdatedAt: at,
			TrashedAt: &at, TrashedBy: &by, TrashedFrom: contact.StateActive, TrashedOperation: op, Tags: []string{}}
		rows = append(rows, projections.BuildRow(sn, b, contact.Position{Commit: 1, Prepare: 1}))
	}
	if err := s.Commit(ctx, projections.Batch{Projection: "trash", To: contact.Position{Commit: 1, Prepare: 1}, Upserts: rows}); err != nil {
		t.Fatal(err)
	}
	items, err := s.List(ctx, ledger.ListQuery{Workspace: "ws", View: "trash", Operations: []string{"bulk:r2"}, Limit: 10})
	if err != nil || len(items) != 1 || items[0].Contact.ID != rows[1].Contact.ID {
		t.Fatalf("trash by operation after the migration: %v, %v", items, err)
	}
}
