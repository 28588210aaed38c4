package main_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/jackc/pgx/v5"
)

// exec runs a statement on the ledger's database behind its back, as an
// intruder with access to the database would: "?" placeholders, rewritten
// to $n for PostgreSQL. It returns the number of rows affected.
func (l *ledgerUnderTest) exec(query string, args ...any) int64 {
	l.t.Helper()
	ctx := context.Background()
	if l.store == "postgres" {
		n := 0
		query = rewritePlaceholders(query, &n)
		conn, err := pgx.Connect(ctx, l.Config.DatabaseURL)
		if err != nil {
			l.t.Fatal(err)
		}
		defer conn.Close(ctx)
		tag, err := conn.Exec(ctx, query, args...)
		if err != nil {
			l.t.Fatalf("%s: %v", query, err)
		}
		return tag.RowsAffected()
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(l.Config.DataDir, sqlite.FileName)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		l.t.Fatal(err)
	}
	defer db.Close()
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		l.t.Fatalf("%s: %v", query, err)
	}
	n, _ := res.RowsAffected()
	return n
}

func rewritePlaceholders(q string, n *int) string {
	var b strings.Builder
	for _, r := range q {
		if r == '?' {
			*n++
			fmt.Fprintf(&b, "$%d", *n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// query runs a query on the ledger's database and returns its rows as strings.
func (l *ledgerUnderTest) query(query string, args ...any) [][]string {
	l.t.Helper()
	ctx := context.Background()
	var out [][]string
	if l.store == "postgres" {
		n := 0
		query = rewritePlaceholders(query, &n)
		conn, err := pgx.Connect(ctx, l.Config.DatabaseURL)
		if err != nil {
			l.t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, query, args...)
		if err != nil {
			l.t.Fatalf("%s: %v", query, err)
		}
		defer rows.Close()
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				l.t.Fatal(err)
			}
			row := make([]string, len(vals))
			for i, v := range vals {
				row[i] = fmt.Sprint(v)
			}
			out = append(out, row)
		}
		if err := rows.Err(); err != nil {
			l.t.Fatal(err)
		}
		return out
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(l.Config.DataDir, sqlite.FileName)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		l.t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		l.t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			l.t.Fatal(err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			row[i] = fmt.Sprint(v)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		l.t.Fatal(err)
	}
	return out
}
