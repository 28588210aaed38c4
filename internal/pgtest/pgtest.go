// Package pgtest gives tests their own empty PostgreSQL database on the
// throwaway server started by scripts/with-postgres.sh (or any server named
// by LEDGER_TEST_DATABASE_URL).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	envURL     = "LEDGER_TEST_DATABASE_URL"
	envDataDir = "LEDGER_TEST_PGDATA"

	// timeout bounds each administrative statement, so that an unreachable
	// server fails the test instead of hanging it.
	timeout = 30 * time.Second
)

// Available reports whether a PostgreSQL server for tests is configured,
// that is whether LEDGER_TEST_DATABASE_URL is set.
func Available() bool {
	return os.Getenv(envURL) != ""
}

// DataDir returns the data directory of the test server started by
// scripts/with-postgres.sh (LEDGER_TEST_PGDATA), or "" if it is not known.
func DataDir() string {
	return os.Getenv(envDataDir)
}

// URL returns the connection URL of a new, empty database created for this
// test on the server named by LEDGER_TEST_DATABASE_URL. The database is
// dropped, even if connections to it are still open, when the test finishes.
//
// Without LEDGER_TEST_DATABASE_URL the test is skipped, or fails if the CI
// environment variable is true, since CI must not silently skip tests.
func URL(tb testing.TB) string {
	tb.Helper()
	admin := os.Getenv(envURL)
	if admin == "" {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			tb.Fatalf("pgtest: PostgreSQL is required under CI but %s is not set; "+
				"run the tests via `make test` (scripts/with-postgres.sh go test ./...) "+
				"or set %s to a superuser URL", envURL, envURL)
		}
		tb.Skipf("pgtest: %s not set; run `make test` or "+
			"`scripts/with-postgres.sh go test ./...` to test against PostgreSQL", envURL)
	}

	name, err := randomName()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	dbURL, err := withDatabase(admin, name)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	ident := pgx.Identifier{name}.Sanitize()
	if err := adminExec(admin, "CREATE DATABASE "+ident+" TEMPLATE template0"); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if err := adminExec(admin, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return dbURL
}

// randomName returns a fresh database name such as t_0123456789abcdef.
func randomName() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random database name: %w", err)
	}
	return "t_" + hex.EncodeToString(b), nil
}

// withDatabase returns connString, a URL or keyword/value string, with its
// database replaced by name.
func withDatabase(connString, name string) (string, error) {
	if !strings.HasPrefix(connString, "postgres://") && !strings.HasPrefix(connString, "postgresql://") {
		// Keyword/value form: a later keyword overrides an earlier one.
		return connString + " dbname=" + name, nil
	}
	u, err := url.Parse(connString)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", envURL, err)
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

// adminExec runs one statement on a new connection to connString.
func adminExec(connString, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return nil
}
