package sqlite

import (
	"context"
	"strings"
	"testing"
)

// TestIdentityLookupsProbeTheirIndex checks the plans of the identity
// index's lookups, one and batched: each kind of index is probed through
// its own index (by whatever name a rebuild gave it), never by walking the
// workspace's rows.
func TestIdentityLookupsProbeTheirIndex(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	plan := func(q string, args ...any) string {
		t.Helper()
		rows, err := s.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			out = append(out, detail)
		}
		return strings.Join(out, "; ")
	}
	check := func() {
		t.Helper()
		for _, col := range []string{"ext_bidx", "email_bidx", "phone_bidx"} {
			one := plan(identityLookupSQL(col), "ws", "x")
			many := plan(identityBatchSQL(col), `["x"]`, "ws")
			short := strings.TrimSuffix(col, "_bidx")
			for _, p := range []string{one, many} {
				if !strings.Contains(p, "USING INDEX") || !strings.Contains(p, "_"+short+" (workspace=? AND "+col+"=?)") {
					t.Fatalf("lookup by %s: plan %q, want a probe of its index", col, p)
				}
			}
		}
	}
	check()
	// The rebuilt table, under the live name, with its own indexes' names.
	if err := s.CreateShadow(ctx, "identities", "g1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SwitchShadow(ctx, "identities", "g1", nil); err != nil {
		t.Fatal(err)
	}
	check()
}
