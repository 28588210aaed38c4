package main_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/ledger"
	"github.com/jackc/pgx/v5"
)

// keyMaterial returns a contact's data key and the wrapped form the key vault stores.
func (l *ledgerUnderTest) keyMaterial(workspace, id string) [][]byte {
	l.t.Helper()
	cid, err := contact.ParseID(id)
	if err != nil {
		l.t.Fatal(err)
	}
	k, err := l.Vault().ContactKey(context.Background(), workspace, cid)
	if err != nil || k.Destroyed {
		l.t.Fatalf("key of %s: %v (destroyed %v)", id, err, k.Destroyed)
	}
	rows, err := l.State().(ledger.KeyStore).GetKeys(context.Background(), workspace, []string{id})
	if err != nil || len(rows) != 1 {
		l.t.Fatalf("wrapped key of %s: %v", id, err)
	}
	return [][]byte{bytes.Clone(k.Key[:]), rows[id].Wrapped}
}

// assertErased waits until none of the secrets and none of the key bytes is
// left in the store: on SQLite in the bytes of the database file and its
// WAL, on PostgreSQL in a logical dump of every table of the schema.
// Erasure maintenance runs right after the projections, hence the wait.
func (l *ledgerUnderTest) assertErased(secrets []string, keys ...[][]byte) {
	l.t.Helper()
	var needles [][]byte
	for _, s := range secrets {
		needles = append(needles, []byte(s))
	}
	for _, k := range keys {
		for _, b := range k {
			needles = append(needles, b, []byte(hex.EncodeToString(b)))
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		found := l.find(needles)
		if len(found) == 0 {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("erased data still in the %s store: %v", l.store, found)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *ledgerUnderTest) find(needles [][]byte) []string {
	var haystacks = map[string][]byte{}
	switch l.store {
	case "sqlite":
		for _, f := range []string{sqlite.FileName, sqlite.FileName + "-wal"} {
			b, err := os.ReadFile(filepath.Join(l.Config.DataDir, f))
			if err != nil && !os.IsNotExist(err) {
				l.t.Fatal(err)
			}
			haystacks[f] = b
		}
	case "postgres":
		haystacks = dumpTables(l.t, l.Config.DatabaseURL)
	}
	var found []string
	for name, h := range haystacks {
		for _, n := range needles {
			if bytes.Contains(h, n) {
				s := string(n)
				if len(s) > 12 {
					s = s[:12] + "..."
				}
				found = append(found, fmt.Sprintf("%s: %q", name, s))
			}
		}
	}
	return found
}

// dumpTables returns every row of every table in the ledger's schema, as text.
func dumpTables(t interface {
	Helper()
	Fatal(...any)
}, url string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, table := range tables {
		rows, err := conn.Query(ctx, `SELECT t::text FROM `+pgx.Identifier{table}.Sanitize()+` t`)
		if err != nil {
			t.Fatal(err)
		}
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		out[table] = []byte(strings.Join(texts, "\n"))
	}
	return out
}
