package sqlite

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/projections"
)

// TestShadowIndexes checks that a rebuild's table is loaded with its
// primary key only and gets every index of the view before it goes live:
// from IndexShadow, or from the switch itself when IndexShadow never ran.
func TestShadowIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	indexes := func(table string) []string {
		t.Helper()
		rows, err := s.r.QueryContext(ctx, `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL`, table)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var name, q string
			if err := rows.Scan(&name, &q); err != nil {
				t.Fatal(err)
			}
			// Compare the definitions without the table's name, which the
			// indexes' names follow.
			q = strings.ReplaceAll(strings.Replace(q, name, "N", 1), `"`, "")
			out = append(out, strings.ReplaceAll(q, table, "T"))
		}
		slices.Sort(out)
		return out
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
				t.Fatalf("after IndexShadow: %v, want %v", got, want)
			}
		}
		if err := s.Commit(ctx, projections.Batch{Projection: projections.Shadow("active", gen), To: contact.Position{Commit: 1, Prepare: 1}}); err != nil {
			t.Fatal(err)
		}
		if err := s.SwitchShadow(ctx, "active", gen, nil); err != nil {
			t.Fatal(err)
		}
		if got := indexes("rm_active"); !slices.Equal(got, want) {
			t.Fatalf("live after switching %s in: %v, want %v", gen, got, want)
		}
	}
}
