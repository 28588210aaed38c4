package main_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"

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
	// A restore job and an import run through the kills too: contacts in
	// trash for the job, and a file of new contacts.
	jobIDs := trashMany(t, p.ledger(t, store), sized(2500, 6000), "crashjob")
	imp := newCrashImport(sized(800, 3000))
	var job string
	w := newWorkload(t, "Crash", p.adminToken(), p.url)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx, clients); close(done) }()
	load := func() { time.Sleep(minLoad + rand.N(maxLoad-minLoad)) }
	for k := range kills {
		load()
		switch k {
		case 0:
			// The restore job is killed mid-way, some of its contacts
			// restored and maybe not yet noted.
			job = startJobAndWait(t, p.ledger(t, store), "crashjob", len(jobIDs))
		case 1:
			// So is the import, some of its rows answered.
			imp.startAndWait(t, w.http, p.url, p.adminToken())
		}
		p.kill() // in the middle of whatever the clients are doing
		p = spawn(t, dir, env...)
		w.base.Store(&p.url)
	}
	load() // the restarted server takes commands again
	stop()
	<-done
	// The restarted server resumes the job; the interrupted import is sent
	// again, as a user would, and creates only what the first run did not.
	l0 := p.ledger(t, store)
	waitJob(t, l0, job, 60*time.Second, func(r reply) bool { return r.str("state") == "succeeded" })
	imp.finish(t, l0)

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
	restoredOnceInLog(t, lc, jobIDs, job)
	imp.verify(t, folds)
	n := w.verify(lc)
	if n.acked == 0 || n.unanswered == 0 {
		t.Fatalf("%d commands acknowledged and %d cut short by the kills: the test proves nothing", n.acked, n.unanswered)
	}
	t.Logf("%s: %d kills, %d clients, %d commands sent: %d acknowledged, %d refused, %d unanswered (%d of them in the log); %d contacts, %d events; %s",
		store, kills, clients, n.sent, n.acked, n.refused, n.unanswered, n.unansweredDone, len(folds), lc.events, time.Since(began).Round(100*time.Millisecond))
}

// startJobAndWait starts a restore job of the contacts tagged tag and
// returns once it has noted some of its n contacts, not all.
func startJobAndWait(t *testing.T, l *ledgerUnderTest, tag string, n int) string {
	t.Helper()
	r := l.as("POST", "/v1/restore-jobs", map[string]any{"tag": tag})
	want(t, r, 202, "")
	job := r.str("id")
	r = waitJob(t, l, job, 60*time.Second, func(r reply) bool { return r.num("restored") > 0 })
	if r.num("restored") >= float64(n) {
		t.Fatalf("the restore job ended before the kill: %s; the test proves nothing", r.Raw)
	}
	return job
}

// restoredOnceInLog checks that job restored each of ids exactly once (its
// events name the job's operation, job:<id>, as their causation),
// and that nothing else restored them.
func restoredOnceInLog(t *testing.T, lc logContents, ids []string, job string) {
	t.Helper()
	resumed := false
	for _, e := range lc.streams["job-"+job] {
		resumed = resumed || (e.Type == "RestoreJobStarted" && strings.Contains(string(e.Data), `"resumed":true`))
	}
	if !resumed {
		t.Fatalf("restore job %s never resumed after a kill: the test proves nothing", job)
	}
	for _, id := range ids {
		byJob, all := 0, 0
		for _, e := range lc.streams["contact-"+id] {
			if e.Type == contact.TypeRestored {
				all++
				if e.CausationID == ledger.OperationJob+job {
					byJob++
				}
			}
		}
		if byJob != 1 || all != 1 {
			t.Fatalf("%s: restored %d times by job %s and %d times in all, want exactly once", id, byJob, job, all)
		}
	}
}

// crashImport is an import file sent while the server is killed.
type crashImport struct {
	rows int
	body string
	// answered counts the rows whose results came back before the kill.
	answered atomic.Int64
}

func newCrashImport(rows int) *crashImport {
	var b strings.Builder
	b.WriteString("name,email,external_id\n")
	for i := range rows {
		fmt.Fprintf(&b, "Crash Import %d,crashimport%d@example.com,CI-%d\n", i, i, i)
	}
	return &crashImport{rows: rows, body: b.String()}
}

// startAndWait sends the import and returns once some of its rows are
// answered; the answer goes on streaming until the kill cuts it.
func (c *crashImport) startAndWait(t *testing.T, client *http.Client, base, token string) {
	t.Helper()
	started := make(chan struct{})
	go func() {
		req, _ := http.NewRequest("POST", base+"/v1/contacts/import?source=crashtest", strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "text/csv")
		req.Header.Set("X-Request-Id", "Import-crash-1")
		resp, err := client.Do(req)
		if err != nil {
			close(started)
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		once := false
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), `{"row":`) {
				if c.answered.Add(1); !once {
					once = true
					close(started)
				}
			}
		}
		if !once {
			close(started)
		}
	}()
	select {
	case <-started:
	case <-time.After(60 * time.Second):
		t.Fatal("the import answered no row")
	}
	if n := c.answered.Load(); n == 0 || n >= int64(c.rows) {
		t.Fatalf("%d of %d rows answered before the kill: the test proves nothing", n, c.rows)
	}
}

// finish sends the file again: every row ends created or unchanged.
func (c *crashImport) finish(t *testing.T, l *ledgerUnderTest) {
	t.Helper()
	_, res, totals := l.importFile("crashtest", "text/csv", c.body)
	if len(res) != c.rows || totals["created"]+totals["unchanged"] != c.rows {
		t.Fatalf("the import sent again: %d results, totals %v", len(res), totals)
	}
	if totals["created"] == 0 || totals["unchanged"] == 0 {
		t.Logf("the import sent again created %d and found %d: the kill came at one end", totals["created"], totals["unchanged"])
	}
}

// verify checks that each row of the file made exactly one contact, active.
func (c *crashImport) verify(t *testing.T, folds map[contact.ID]folded) {
	t.Helper()
	byEmail := map[string][]contact.Snapshot{}
	for _, f := range folds {
		if strings.HasPrefix(f.Snapshot.Personal.Email, "crashimport") {
			byEmail[f.Snapshot.Personal.Email] = append(byEmail[f.Snapshot.Personal.Email], f.Snapshot)
		}
	}
	for i := range c.rows {
		email := fmt.Sprintf("crashimport%d@example.com", i)
		got := byEmail[email]
		if len(got) != 1 || got[0].State != contact.StateActive || got[0].Source != "crashtest" {
			t.Fatalf("row %d (%s) made %d contacts (%v), want exactly one, active", i+1, email, len(got), got)
		}
	}
	if len(byEmail) != c.rows {
		t.Fatalf("the import made contacts for %d emails, the file has %d", len(byEmail), c.rows)
	}
}
