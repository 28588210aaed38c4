package main_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/postgres"
	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/contactledger/ledger/projections"
)

// TestRebuildAcrossProcesses runs real server processes and shows that a
// rebuild lock held by another process refuses a rebuild (409) until it is
// released, and, on PostgreSQL, that a rebuild started on one replica shows
// its progress on another.
func TestRebuildAcrossProcesses(t *testing.T) { eachStore(t, testRebuildAcrossProcesses) }

func testRebuildAcrossProcesses(t *testing.T, store string) {
	ctx := context.Background()
	dir := t.TempDir()
	var env []string
	var locker projections.ShadowStore
	if store == "postgres" {
		url := pgtest.URL(t)
		var kek [32]byte
		rand.Read(kek[:])
		env = []string{"LEDGER_DATABASE_URL=" + url, "LEDGER_KEK_URL=base64key://" + base64.URLEncoding.EncodeToString(kek[:])}
		s, err := postgres.Open(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		locker = s
	}
	a := spawn(t, dir, env...)
	if store == "sqlite" {
		s, err := sqlite.Open(ctx, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		locker = s
	}
	token := a.adminToken()
	ca := a.client(t, token)
	for i := range 20 {
		r := ca.as("POST", "/v1/contacts", map[string]any{"name": fmt.Sprint("Process ", i)})
		want(t, r, 201, "")
		if i%4 == 0 {
			want(t, ca.as("POST", "/v1/contacts/"+r.str("id")+"/trash", nil), 200, "")
		}
	}
	release, ok, err := locker.LockRebuild(ctx, "trash")
	if err != nil || !ok {
		t.Fatalf("lock from the test process: %v %v", ok, err)
	}
	want(t, ca.as("POST", "/v1/projections/trash/rebuild", nil), 409, "rebuild-running")
	want(t, ca.as("POST", "/v1/projections/all/rebuild", nil), 409, "rebuild-running")
	r := ca.as("POST", "/v1/projections/active/rebuild", nil)
	want(t, r, 202, "")
	release()
	r = ca.as("POST", "/v1/projections/trash/rebuild", nil)
	want(t, r, 202, "")
	loc := r.Header.Get("Location")
	readers := []*remote{ca}
	if store == "postgres" {
		b := spawn(t, t.TempDir(), env...)
		readers = append(readers, b.client(t, token))
	}
	for _, c := range readers {
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := c.as("GET", loc, nil)
			want(t, r, 200, "")
			if r.str("state") == "done" && r.num("events_done") > 0 {
				break
			}
			if r.str("state") != "running" || time.Now().After(deadline) {
				t.Fatalf("rebuild seen from %s: %s", c.base, r.Raw)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got := len(c.as("GET", "/v1/contacts?view=trash&limit=200", nil).items()); got != 5 {
			t.Fatalf("trash after the rebuild, through %s: %d contacts, want 5", c.base, got)
		}
	}
}
