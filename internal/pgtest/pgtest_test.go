package pgtest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/contactledger/ledger/internal/pgtest"
)

// connect opens a connection to url that is closed when the test finishes.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// currentDatabase returns the name of the database conn is connected to.
func currentDatabase(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var name string
	if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatalf("query current_database: %v", err)
	}
	return name
}

func TestURLGivesDistinctEmptyDatabases(t *testing.T) {
	t.Parallel()
	urlA := pgtest.URL(t)
	urlB := pgtest.URL(t)
	if urlA == urlB {
		t.Fatalf("URL returned %q twice", urlA)
	}

	connA := connect(t, urlA)
	connB := connect(t, urlB)
	nameA := currentDatabase(t, connA)
	nameB := currentDatabase(t, connB)
	if nameA == nameB {
		t.Fatalf("both URLs connect to database %q", nameA)
	}
	for _, name := range []string{nameA, nameB} {
		if !strings.HasPrefix(name, "t_") {
			t.Errorf("database name %q lacks the t_ prefix", name)
		}
	}

	// A table created in one database is not visible in the other, and the
	// databases start with no tables of their own.
	if _, err := connA.Exec(t.Context(), "CREATE TABLE only_in_a (id int)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	var tables int
	err := connB.QueryRow(t.Context(),
		"SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").Scan(&tables)
	if err != nil {
		t.Fatalf("count tables: %v", err)
	}
	if tables != 0 {
		t.Errorf("new database %q has %d tables, want 0", nameB, tables)
	}
}

func TestURLDatabaseIsDroppedAfterTest(t *testing.T) {
	t.Parallel()
	// pg_database is shared by all databases, so any of them can see
	// whether the subtest's database still exists.
	conn := connect(t, pgtest.URL(t))

	var (
		name string
		open *pgx.Conn
	)
	t.Run("uses database", func(t *testing.T) {
		// Left open on purpose: the drop must not wait for it.
		c, err := pgx.Connect(t.Context(), pgtest.URL(t))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		open = c
		name = currentDatabase(t, c)
	})
	if open != nil {
		defer open.Close(context.Background())
	}
	if name == "" {
		t.Fatal("subtest did not report its database name")
	}

	var exists bool
	err := conn.QueryRow(t.Context(),
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		t.Fatalf("query pg_database: %v", err)
	}
	if exists {
		t.Errorf("database %q still exists after its test finished", name)
	}
}

func TestDataDir(t *testing.T) {
	dir := pgtest.DataDir()
	if dir == "" {
		t.Skip("LEDGER_TEST_PGDATA not set; the server was not started by scripts/with-postgres.sh")
	}
	if !pgtest.Available() {
		t.Errorf("DataDir is %q but Available reports false", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
		t.Errorf("data directory %q has no PG_VERSION: %v", dir, err)
	}
}
