package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// TestStatementCache checks the per-connection cache of prepared
// statements: a statement is prepared once and reused; a statement used
// again while its rows are still being read gets a second one, without
// disturbing the first; the cache stays bounded; and a cached statement
// follows the schema (a view's table swapped by a rebuild's rename).
func TestStatementCache(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open(driverName, "file:"+filepath.Join(t.TempDir(), "cache.db")+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	cached := func() (n int) {
		t.Helper()
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.Raw(func(dc any) error { n = dc.(*cachingConn).lru.Len(); return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (x INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')`); err != nil {
		t.Fatal(err)
	}
	const q = `SELECT v FROM t WHERE x >= ? ORDER BY x`
	read := func(from int) []string {
		t.Helper()
		rows, err := db.QueryContext(ctx, q, from)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := cached()
	for range 10 {
		if got := fmt.Sprint(read(2)); got != "[b c]" {
			t.Fatalf("got %s, want [b c]", got)
		}
	}
	if n := cached(); n != before+1 {
		t.Fatalf("ten runs of one statement cached %d statements, want 1", n-before)
	}

	// The same statement inside a loop over its own rows, in one transaction.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := tx.QueryContext(ctx, q, 1)
	if err != nil {
		t.Fatal(err)
	}
	var outer, inner []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		outer = append(outer, v)
		var w string
		if err := tx.QueryRowContext(ctx, q, 3).Scan(&w); err != nil {
			t.Fatal(err)
		}
		inner = append(inner, w)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(outer) != "[a b c]" || fmt.Sprint(inner) != "[c c c]" {
		t.Fatalf("nested use: outer %v, inner %v; want [a b c] and [c c c]", outer, inner)
	}

	// A rebuild swaps a table by renames: the cached statement reads the new one.
	if _, err := db.ExecContext(ctx, `CREATE TABLE t_new (x INTEGER PRIMARY KEY, v TEXT); INSERT INTO t_new VALUES (5, 'new');
		ALTER TABLE t RENAME TO t_old; ALTER TABLE t_new RENAME TO t; DROP TABLE t_old`); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(read(0)); got != "[new]" {
		t.Fatalf("after the swap: got %s, want [new]", got)
	}

	// Bounded.
	for i := range stmtCacheSize + 50 {
		if _, err := db.ExecContext(ctx, fmt.Sprintf(`SELECT %d FROM t`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := cached(); n > stmtCacheSize {
		t.Fatalf("cache holds %d statements, want at most %d", n, stmtCacheSize)
	}
	if got := fmt.Sprint(read(0)); got != "[new]" {
		t.Fatalf("after evictions: got %s, want [new]", got)
	}
}
