package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// target is a contact of TestErasureUnderLoad whose bytes are looked for in the store's files.
type target struct {
	id, tag, phone string
	erase          string // "purge", "anonymize" or "" (kept)
	key            [][]byte
}

// needles are the bytes that must not outlive an erased contact: its tag
// (which every personal string of it carries: name, email, job title,
// address, custom field, note), its phone, its data key and the wrapped key.
func (c target) needles() [][]byte {
	return append([][]byte{[]byte(c.tag), []byte(c.phone)}, c.key...)
}

// TestErasureUnderLoad purges and anonymizes contacts while other clients
// keep reading and writing, and then looks for their personal strings and
// key bytes in every file the store keeps: the embedded database file and
// its WAL; for PostgreSQL, every file of the test database and the WAL in
// the server's data directory (LEDGER_TEST_PGDATA), once the ledger's own
// VACUUM has run and again after the maintenance step the README gives
// operators (`ledger maintenance compact --full`). The contacts that were
// kept must be found, or the search proves nothing.
func TestErasureUnderLoad(t *testing.T) { eachStore(t, testErasureUnderLoad) }

func testErasureUnderLoad(t *testing.T, store string) {
	began := time.Now()
	if store == "postgres" && pgtest.DataDir() == "" && pgtest.Available() {
		msg := "LEDGER_TEST_PGDATA is not set: the server's files cannot be read (run through scripts/with-postgres.sh)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	l := start(t, store)
	run := "erz" + strings.ToLower(randomString(8)) // unique to this run: the shared server's WAL holds other tests' data
	n := sized(12, 60)
	targets := make([]target, n)
	for i := range targets {
		c := &targets[i]
		c.tag = fmt.Sprintf("%s-c%03d", run, i)
		c.phone = fmt.Sprintf("+1 %03d %07d", 200+i%700, 1000000+randomInt(8000000))
		c.erase = []string{"purge", "purge", "anonymize", ""}[i%4]
		r := l.as("POST", "/v1/contacts", map[string]any{
			"name": c.tag + " Person", "email": c.tag + "@example.com", "phone": c.phone, "job_title": c.tag + " job",
			"address": c.tag + " street", "custom_fields": map[string]any{"ref": c.tag + " custom"}, "tags": []string{"erasure", c.tag + "-tag"},
		}, "Idempotency-Key", randomString(16)) // the stored answer holds personal data too
		want(t, r, 201, "")
		c.id = r.str("id")
		// Every free-text field a contact has carries its unique string:
		// note, tags, list name, link id, a legal hold's case and every reason.
		key := func() []string { return []string{"Idempotency-Key", randomString(16)} }
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/notes", map[string]any{"text": c.tag + " note"}, key()...), 201, "")
		want(t, l.as("PATCH", "/v1/contacts/"+c.id, map[string]any{"job_title": c.tag + " new job"}), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/tags", map[string]any{"add": []string{c.tag + "-added"}}, key()...), 200, "")
		want(t, l.as("PUT", "/v1/contacts/"+c.id+"/lists/"+c.tag+"-list", map[string]any{"status": "subscribed"}), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/links", map[string]any{"kind": "deal", "id": c.tag + "-deal"}, key()...), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/spam", map[string]any{"reason": c.tag + " spam reason"}, key()...), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/unspam", map[string]any{"reason": c.tag + " unspam reason"}, key()...), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/archive", map[string]any{"reason": c.tag + " archive reason"}, key()...), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/unarchive", map[string]any{"reason": c.tag + " unarchive reason"}, key()...), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/trash", map[string]any{"reason": c.tag + " first trash"}, key()...), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/restore", map[string]any{"reason": c.tag + " restore reason"}, key()...), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/hold", map[string]any{"case": c.tag + " case", "reason": c.tag + " hold reason"}, key()...), 200, "")
		want(t, l.as("DELETE", "/v1/contacts/"+c.id+"/hold", map[string]any{"reason": c.tag + " release reason"}), 200, "")
		c.key = l.keyMaterial("default", c.id)
	}

	if store == "postgres" {
		// Sample the tables for the planner, as autovacuum does once enough
		// rows changed, and write the targets' pages to the table files, as
		// the server's own checkpoints do every few minutes (until then they
		// are only in the WAL).
		pgExec(t, l.Config.DatabaseURL, "ANALYZE")
		pgExec(t, l.Config.DatabaseURL, "CHECKPOINT")
	}

	// Other clients write, and readers search the views and read contacts,
	// while the targets are erased one by one.
	w := newWorkload(t, "Load", l.admin, l.url())
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.run(ctx, 4) })
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				for _, q := range []string{"view=active&q=" + run, "view=trash&tag=erasure", "view=anonymized"} {
					try(w.http, l.url(), l.admin, "GET", "/v1/contacts?"+q, nil)
				}
				try(w.http, l.url(), l.admin, "GET", "/v1/contacts/"+targets[randomInt(n)].id, nil)
			}
		})
	}
	for _, c := range targets {
		if c.erase == "" {
			continue
		}
		time.Sleep(20 * time.Millisecond)
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/trash", map[string]any{"reason": c.tag + " trash reason"}), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/"+c.erase, map[string]any{"reason": c.tag + " erasure reason", "request": "DSR-1"}), 200, "")
	}
	// Nothing of an erased contact in its history, the audit log or its receipt.
	audit := l.as("GET", "/v1/audit/events", nil)
	want(t, audit, 200, "")
	for _, c := range targets {
		if c.erase == "" {
			continue
		}
		h := l.as("GET", "/v1/contacts/"+c.id+"/history", nil)
		want(t, h, 200, "")
		rc := l.as("GET", "/v1/contacts/"+c.id+"/erasure-receipt", nil)
		for what, b := range map[string][]byte{"history": h.Raw, "audit log": audit.Raw, "receipt": rc.Raw} {
			if bytes.Contains(b, []byte(c.tag)) {
				t.Fatalf("%sd contact %s: its free text is in the %s", c.erase, c.tag, what)
			}
		}
	}
	time.Sleep(sized(200*time.Millisecond, 2*time.Second))
	stop()
	wg.Wait()
	for _, view := range []string{"active", "archived", "trash", "anonymized"} {
		l.ids("view=" + view) // waits for the projection to catch up
	}
	_, folds := checkConsistent(t, l.Main, "default")
	erased := 0
	for _, c := range targets {
		if c.erase != "" {
			erased++
		}
	}

	switch store {
	case "sqlite":
		files := []string{filepath.Join(l.Config.DataDir, sqlite.FileName), filepath.Join(l.Config.DataDir, sqlite.FileName+"-wal")}
		assertGone(t, targets, files, 15*time.Second)
	case "postgres":
		files := func() []string { return pgFiles(t, l.Config.DatabaseURL) }
		// What the ledger's own VACUUM after the erasures leaves, once the
		// vacuumed pages are written to the table files.
		time.Sleep(time.Second)
		pgExec(t, l.Config.DatabaseURL, "CHECKPOINT")
		for file, n := range leftovers(t, targets, files()) {
			t.Logf("after the ledger's VACUUM: bytes of %d erased contacts in %s", n, pgRelation(t, l.Config.DatabaseURL, file))
		}
		out, _, err := l.run("maintenance", "compact", "--full")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "Warning") {
			t.Fatalf("compact --full warns on the test server, whose settings follow the README:\n%s", out)
		}
		assertGone(t, targets, files(), 0)
	}
	t.Logf("%s: %d contacts erased (of %d) under load from %d clients, %d contacts in all; %s",
		store, erased, n, 6, len(folds), time.Since(began).Round(100*time.Millisecond))
}

// assertGone fails if a byte string of an erased target is in one of the
// files, or if a kept target is in none of them, after waiting up to within.
func assertGone(t *testing.T, targets []target, files []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		found := findTargets(t, targets, files)
		if len(found) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after erasure:\n%s", strings.Join(found, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// findTargets reads the files and reports every erased target's needle it
// finds, and every kept target whose tag it does not find.
func findTargets(t *testing.T, targets []target, files []string) []string {
	t.Helper()
	where := map[string][]string{}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			t.Fatal(err)
		}
		for _, c := range targets {
			for i, n := range c.needles() {
				if c.erase == "" && i > 0 {
					break
				}
				if bytes.Contains(b, n) {
					what := []string{"personal strings", "phone", "data key", "wrapped key"}[i]
					where[c.tag+" "+what] = append(where[c.tag+" "+what], path)
				}
			}
		}
	}
	var out []string
	for _, c := range targets {
		if c.erase == "" {
			if len(where[c.tag+" personal strings"]) == 0 {
				out = append(out, fmt.Sprintf("kept contact %s is in no file: the search finds nothing", c.tag))
			}
			continue
		}
		for _, what := range []string{"personal strings", "phone", "data key", "wrapped key"} {
			if fs := where[c.tag+" "+what]; len(fs) > 0 {
				out = append(out, fmt.Sprintf("%sd contact %s: %s in %s", c.erase, c.tag, what, strings.Join(fs, ", ")))
			}
		}
	}
	sort.Strings(out)
	return out
}

// pgFiles lists the files of the test server's data directory that can
// hold this database's bytes: the database's own directory and everything
// outside base/ (the WAL, shared catalogs), but not other databases.
func pgFiles(t *testing.T, url string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var oid uint32
	if err := conn.QueryRow(ctx, `SELECT oid FROM pg_database WHERE datname = current_database()`).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	root := pgtest.DataDir()
	own := filepath.Join(root, "base", fmt.Sprint(oid))
	var out []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // a file removed while we walk
			}
			return err
		}
		if d.IsDir() && filepath.Dir(path) == filepath.Join(root, "base") && path != own {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// leftovers counts, for each file, the erased targets with bytes in it.
func leftovers(t *testing.T, targets []target, files []string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, c := range targets {
			if c.erase == "" {
				continue
			}
			for _, n := range c.needles() {
				if bytes.Contains(b, n) {
					out[path]++
					break
				}
			}
		}
	}
	return out
}

// pgRelation names the relation a file of the data directory belongs to.
func pgRelation(t *testing.T, url, path string) string {
	rel, _ := filepath.Rel(pgtest.DataDir(), path)
	if !strings.HasPrefix(rel, "base"+string(filepath.Separator)) {
		return rel
	}
	node := strings.SplitN(filepath.Base(path), ".", 2)[0]
	node = strings.SplitN(node, "_", 2)[0] // _fsm, _vm
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var name string
	if err := conn.QueryRow(ctx, `SELECT relname FROM pg_class WHERE relfilenode = $1::oid`, node).Scan(&name); err != nil {
		name = "?"
	}
	return rel + " (" + name + ")"
}

// pgExec runs one statement on the database at url.
func pgExec(t *testing.T, url, sql string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func randomString(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func randomInt(n int) int {
	v, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
	return int(v.Int64())
}
