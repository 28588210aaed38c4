package sqlite

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/contactledger/ledger/internal/storetest"
)

// TestShadowIndexes runs the shadow-index checks on SQLite's schema.
func TestShadowIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.RunShadowIndexes(t, storetest.ShadowIndexes{
		Store: s, Shadow: s, Want: len(viewIndexes("t")),
		Table: func(name string) string { table, _ := viewTable(name); return table },
		Indexes: func(table string) []string {
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
				q = strings.ReplaceAll(strings.Replace(q, name, "N", 1), `"`, "")
				out = append(out, strings.ReplaceAll(q, table, "T"))
			}
			slices.Sort(out)
			return out
		},
	})
}
