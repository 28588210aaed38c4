package postgres

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/contactledger/ledger/ledger"
)

// TestLookupPlans checks how PostgreSQL answers an exact email or phone
// lookup in a view of many contacts: one probe of the blind index's own
// index, never a walk of the view's order index filtering every row. The
// blind-index columns keep no planner statistics (they would hold copies
// of erased data), so the planner guesses that thousands of rows match; an
// index without the view's order made it walk the whole view for a page of
// 50 (370 ms at a million contacts).
func TestLookupPlans(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	s, err := Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO rm_active (workspace, id, sort_at, created_at, version, pos_commit, pos_prepare,
			name, email, phone, phone_norm, email_bidx, phone_bidx, source, tags, doc)
		SELECT 'plans', lpad(i::text, 26, '0'), now() - i * interval '1 second', now(), 1, i, i, '', '', '', '',
			md5('e' || i), md5('p' || i), '', '{}', '{}'
		FROM generate_series(1, 200000) i`); err != nil {
		t.Fatal(err)
	}
	// A database from before migration 00012: the old indexes, one of them
	// named after the shadow the view was rebuilt as.
	if _, err := s.pool.Exec(ctx, `DROP INDEX rm_active_email; DROP INDEX rm_active_phone;
		CREATE INDEX rm_active_email ON rm_active (workspace, email_bidx) WHERE email_bidx <> '';
		CREATE INDEX rm_active_g01_phone ON rm_active (workspace, phone_bidx) WHERE phone_bidx <> '';
		DELETE FROM goose_db_version WHERE version_id = 12`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(ctx, url, nil); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	defer s.Close()
	if _, err := s.pool.Exec(ctx, `ANALYZE rm_active`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		q     ledger.ListQuery
		index string
	}{
		{"email", ledger.ListQuery{EmailIndex: "c0ffee"}, "_email"},
		{"phone", ledger.ListQuery{PhoneIndex: "c0ffee"}, "_phone"},
		{"email, next page", ledger.ListQuery{EmailIndex: "c0ffee", After: &ledger.Cursor{ID: "01ARZ3NDEKTSV4RRFFQ69G5FAV"}}, "_email"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.Workspace, q.View, q.Limit = "plans", "active", 51
			sql, args, err := listQuery(q)
			if err != nil {
				t.Fatal(err)
			}
			var plan []map[string]any
			var raw []byte
			if err := s.pool.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+sql, args...).Scan(&raw); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &plan); err != nil {
				t.Fatal(err)
			}
			var indexes []string
			var walk func(n map[string]any)
			walk = func(n map[string]any) {
				if ix, ok := n["Index Name"].(string); ok {
					indexes = append(indexes, ix)
				}
				if f, ok := n["Filter"].(string); ok && strings.Contains(f, "bidx") {
					t.Errorf("the plan filters on a blind index instead of probing it: %s", f)
				}
				children, _ := n["Plans"].([]any)
				for _, c := range children {
					walk(c.(map[string]any))
				}
			}
			walk(plan[0]["Plan"].(map[string]any))
			if len(indexes) != 1 || !strings.HasSuffix(indexes[0], tc.index) {
				t.Fatalf("plan uses indexes %v, want only the view's %s index:\n%s", indexes, tc.index, raw)
			}
		})
	}
}
