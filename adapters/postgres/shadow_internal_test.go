package postgres

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/contactledger/ledger/internal/storetest"
	"github.com/jackc/pgx/v5"
)

// TestShadowIndexes runs the shadow-index checks on PostgreSQL's schema.
func TestShadowIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.URL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.RunShadowIndexes(t, storetest.ShadowIndexes{
		Store: s, Shadow: s, Want: len(viewIndexes("t")),
		Table: func(name string) string { table, _ := viewTable(name); return table },
		Indexes: func(table string) []string {
			t.Helper()
			rows, err := s.pool.Query(ctx, `SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i
				JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass AND NOT i.indisprimary`, table)
			if err != nil {
				t.Fatal(err)
			}
			defs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
				var name, def string
				err := r.Scan(&name, &def)
				return strings.ReplaceAll(strings.Replace(def, name, "N", 1), table, "T"), err
			})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(defs)
			return defs
		},
	})
}
