package postgres

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/contactledger/ledger/projections"
	"github.com/jackc/pgx/v5"
)

// TestShadowIndexes checks that a rebuild's table is copied into with its
// primary key only and gets every index of the view before it goes live:
// from IndexShadow, or from the switch itself when IndexShadow never ran.
func TestShadowIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.URL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	indexes := func(table string) []string {
		t.Helper()
		rows, err := s.pool.Query(ctx, `SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i
			JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass AND NOT i.indisprimary`, table)
		if err != nil {
			t.Fatal(err)
		}
		defs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			var name, def string
			err := r.Scan(&name, &def)
			// Compare the definitions without the names, which follow the
			// table the index was created on.
			return strings.ReplaceAll(strings.Replace(def, name, "N", 1), table, "T"), err
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(defs)
		return defs
	}
	want := indexes("rm_active")
	if len(want) != len(viewIndexes("rm_active")) {
		t.Fatalf("the live view has indexes %v, want %d", want, len(viewIndexes("rm_active")))
	}
	for _, gen := range []string{"g1", "g2"} {
		if err := s.CreateShadow(ctx, "active", gen); err != nil {
			t.Fatal(err)
		}
		shadow, _ := viewTable(projections.Shadow("active", gen))
		if got := indexes(shadow); len(got) != 0 {
			t.Fatalf("a new shadow has indexes %v, want none until it is loaded", got)
		}
		if gen == "g1" {
			if err := s.IndexShadow(ctx, "active", gen); err != nil {
				t.Fatal(err)
			}
			if got := indexes(shadow); !slices.Equal(got, want) {
				t.Fatalf("after IndexShadow:\n%v\nwant\n%v", got, want)
			}
		}
		if err := s.Commit(ctx, projections.Batch{Projection: projections.Shadow("active", gen), To: contact.Position{Commit: 1, Prepare: 1}}); err != nil {
			t.Fatal(err)
		}
		if err := s.SwitchShadow(ctx, "active", gen, nil); err != nil {
			t.Fatal(err)
		}
		if got := indexes("rm_active"); !slices.Equal(got, want) {
			t.Fatalf("live after switching %s in:\n%v\nwant\n%v", gen, got, want)
		}
	}
}
