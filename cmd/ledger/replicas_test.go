package main_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/postgres"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/contactledger/ledger/projections"
)

// TestReplicasTakeOver runs two server processes on one PostgreSQL
// database, kills the one running the projections with SIGKILL while a
// client keeps writing through the other, and shows the other taking over:
// every view ends up exact, every checkpoint reaches the head of the log,
// and every row carries its contact's latest version (nothing lost, nothing
// applied twice).
func TestReplicasTakeOver(t *testing.T) {
	url := pgtest.URL(t)
	var kek [32]byte
	rand.Read(kek[:])
	env := []string{"LEDGER_DATABASE_URL=" + url, "LEDGER_KEK_URL=base64key://" + base64.URLEncoding.EncodeToString(kek[:])}

	a := spawn(t, t.TempDir(), env...)
	waitFor(t, 20*time.Second, "the first process to run every projection", func() bool {
		return a.count(`"msg":"running projection"`) == len(projections.Names())
	})
	b := spawn(t, t.TempDir(), env...)
	token := a.adminToken()
	cb := b.client(t, token)

	var (
		mu      sync.Mutex
		active  []string
		trashed []string
	)
	write := func(c *remote, n int, tag string) {
		for i := range n {
			r := c.as("POST", "/v1/contacts", map[string]any{"name": fmt.Sprintf("Replica %s %d", tag, i), "tags": []string{tag}})
			want(t, r, 201, "")
			id := r.str("id")
			if i%3 == 0 {
				want(t, c.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
				mu.Lock()
				trashed = append(trashed, id)
				mu.Unlock()
				continue
			}
			mu.Lock()
			active = append(active, id)
			mu.Unlock()
		}
	}
	// Reads through b are served from rows a projects.
	write(cb, 15, "before")
	if got := len(cb.as("GET", "/v1/contacts?view=trash&limit=200", nil).items()); got != 5 {
		t.Fatalf("trash through the second process: got %d, want 5", got)
	}
	if n := b.count(`"msg":"running projection"`); n != 0 {
		t.Fatalf("the second process runs %d projections while the first holds them", n)
	}

	// Kill a while b keeps taking writes.
	var wg sync.WaitGroup
	wg.Go(func() { write(cb, 30, "during") })
	time.Sleep(100 * time.Millisecond)
	a.kill()
	wg.Wait()
	write(cb, 15, "after")
	waitFor(t, 30*time.Second, "the second process to take every projection over", func() bool {
		return b.count(`"msg":"running projection"`) == len(projections.Names())
	})

	ids := func(view string) []string {
		r := cb.as("GET", "/v1/contacts?limit=200&view="+view, nil)
		want(t, r, 200, "")
		var out []string
		for _, it := range r.items() {
			out = append(out, it["id"].(string))
		}
		slices.Sort(out)
		return out
	}
	mu.Lock()
	slices.Sort(active)
	slices.Sort(trashed)
	mu.Unlock()
	if got := ids("active"); !slices.Equal(got, active) {
		t.Fatalf("active view: got %d contacts, want %d", len(got), len(active))
	}
	if got := ids("trash"); !slices.Equal(got, trashed) {
		t.Fatalf("trash view: got %d contacts, want %d", len(got), len(trashed))
	}

	// Every checkpoint reaches the head; every row has its stream's version.
	ctx := context.Background()
	s, err := postgres.Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "every checkpoint to reach the head", func() bool {
		for _, n := range projections.Names() {
			if cp, _ := s.Checkpoint(ctx, n); cp.Less(head) {
				return false
			}
		}
		return true
	})
	for view, want := range map[string][]string{"active": active, "trash": trashed} {
		var refs []projections.Ref
		for _, id := range want {
			cid, _ := contact.ParseID(id)
			refs = append(refs, projections.Ref{Workspace: "default", ID: cid})
		}
		rows, err := s.Rows(ctx, view, refs)
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range refs {
			recs, err := s.ReadStream(ctx, "default", ref.ID.Stream())
			if err != nil {
				t.Fatal(err)
			}
			if row := rows[ref.ID]; row.Contact.Version != uint64(len(recs)) || row.Position != recs[len(recs)-1].Position {
				t.Fatalf("%s row of %s: version %d at %s, want %d at %s", view, ref.ID, row.Contact.Version, row.Position, len(recs), recs[len(recs)-1].Position)
			}
		}
	}
}
