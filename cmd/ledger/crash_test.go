package main_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/contactledger/ledger/ledger"
)

// TestCrashRecovery runs `ledger serve` as a child process under concurrent
// load, kills it with SIGKILL at random moments, restarts it on the same
// data directory (and database), and then checks what the ledger promises
// to keep: every acknowledged command's event is in the log exactly once,
// where its answer said; refused commands left nothing; a command whose
// answer never came left at most one event, and nothing half-visible (a
// contact without its key, a view that disagrees with the log); and the
// read models the restarted server caught up equal a from-scratch fold of
// the log. `make soak` runs it longer, with more kills and clients.
func TestCrashRecovery(t *testing.T) { eachStore(t, testCrashRecovery) }

func testCrashRecovery(t *testing.T, store string) {
	var (
		kills   = sized(5, 15)
		clients = sized(6, 16)
		minLoad = sized(200*time.Millisecond, time.Second)
		maxLoad = sized(900*time.Millisecond, 4*time.Second)
	)
	began := time.Now()
	dir := t.TempDir()
	var env []string
	dbURL := ""
	if store == "postgres" {
		dbURL = pgtest.URL(t)
		env = append(env, "LEDGER_DATABASE_URL="+dbURL)
	}
	p := spawn(t, dir, env...)
	w := newWorkload(t, "Crash", p.adminToken(), p.url)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx, clients); close(done) }()
	load := func() { time.Sleep(minLoad + rand.N(maxLoad-minLoad)) }
	for range kills {
		load()
		p.kill() // in the middle of whatever the clients are doing
		p = spawn(t, dir, env...)
		w.base.Store(&p.url)
	}
	load() // the restarted server takes commands again
	stop()
	<-done

	// The restarted server catches up: each view answers once its
	// projection has applied the whole log (read-your-writes).
	l := p.ledger(t, store)
	for _, view := range ledger.ViewNames {
		waitFor(t, 30*time.Second, "view "+view+" to catch up", func() bool {
			r, err := try(w.http, p.url, l.admin, "GET", "/v1/contacts?limit=1&view="+view, nil)
			return err == nil && r.Status == 200
		})
	}
	p.kill()

	// The views are caught up; the identity index and the erasure
	// projection may still be a few events behind when the kill came:
	// they catch up on the next start, as here.
	m := openStores(t, dir, dbURL)
	m.StartProjections(context.Background())
	lc, folds := checkConsistent(t, m, "default")
	n := w.verify(lc)
	if n.acked == 0 || n.unanswered == 0 {
		t.Fatalf("%d commands acknowledged and %d cut short by the kills: the test proves nothing", n.acked, n.unanswered)
	}
	t.Logf("%s: %d kills, %d clients, %d commands sent: %d acknowledged, %d refused, %d unanswered (%d of them in the log); %d contacts, %d events; %s",
		store, kills, clients, n.sent, n.acked, n.refused, n.unanswered, n.unansweredDone, len(folds), lc.events, time.Since(began).Round(100*time.Millisecond))
}
