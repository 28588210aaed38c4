package main_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/projections"
)

var viewNames = []string{"active", "archived", "trash", "anonymized"}

// viewRows returns every row of every view table, column by column, in a stable order.
func (l *ledgerUnderTest) viewRows() map[string][]string {
	l.t.Helper()
	out := map[string][]string{}
	for _, v := range viewNames {
		rows := l.query(`SELECT workspace, id, sort_at, created_at, version, pos_commit, pos_prepare, name, email, phone, phone_norm,
			email_bidx, phone_bidx, source, tags, trashed_at, trashed_by, doc FROM rm_` + v + ` ORDER BY workspace, id`)
		for _, r := range rows {
			out[v] = append(out[v], strings.Join(r, " | "))
		}
	}
	return out
}

// settle waits until every view's projection has applied the whole log.
func (l *ledgerUnderTest) settle(tokens ...string) {
	l.t.Helper()
	if len(tokens) == 0 {
		tokens = []string{l.admin}
	}
	for _, tok := range tokens {
		for _, v := range viewNames {
			want(l.t, l.do(tok, "GET", "/v1/contacts?limit=1&view="+v, nil), 200, "")
		}
	}
}

func sameRows(t *testing.T, what string, got, wantRows map[string][]string) {
	t.Helper()
	for _, v := range viewNames {
		if len(got[v]) != len(wantRows[v]) {
			t.Fatalf("%s: view %s has %d rows, want %d", what, v, len(got[v]), len(wantRows[v]))
		}
		for i := range got[v] {
			if got[v][i] != wantRows[v][i] {
				t.Fatalf("%s: view %s row %d:\n got %s\nwant %s", what, v, i, got[v][i], wantRows[v][i])
			}
		}
	}
}

// randomMix runs n random commands on contacts of two workspaces.
func randomMix(t *testing.T, l *ledgerUnderTest, seed uint64, n int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	if _, _, err := l.run("workspaces", "create", "second"); err != nil && !strings.Contains(err.Error(), "exists") {
		t.Fatal(err)
	}
	tokens := []string{l.admin, l.token("second", "admin")}
	type c struct {
		id    string
		token string
	}
	var cs []c
	cmds := []string{"archive", "unarchive", "trash", "restore", "purge", "anonymize", "update", "update", "create", "create"}
	for i := range n {
		cmd := cmds[rng.IntN(len(cmds))]
		if len(cs) < 5 || cmd == "create" {
			tok := tokens[rng.IntN(2)]
			body := map[string]any{"name": fmt.Sprintf("Mix Person %d", i), "tags": []string{fmt.Sprint("t", rng.IntN(3))}}
			if rng.IntN(2) == 0 {
				body["email"] = fmt.Sprintf("mix%d@example.com", i)
				body["phone"] = fmt.Sprintf("+1 555 %04d", i)
			}
			r := l.do(tok, "POST", "/v1/contacts", body)
			want(t, r, 201, "")
			cs = append(cs, c{r.str("id"), tok})
			continue
		}
		x := cs[rng.IntN(len(cs))]
		var r reply
		if cmd == "update" {
			r = l.do(x.token, "PATCH", "/v1/contacts/"+x.id, map[string]any{"job_title": fmt.Sprint("Job ", i), "custom_fields": map[string]any{"k": fmt.Sprint(i)}})
		} else {
			if cmd == "purge" || cmd == "anonymize" {
				l.do(x.token, "POST", "/v1/contacts/"+x.id+"/trash", nil)
			}
			r = l.do(x.token, "POST", "/v1/contacts/"+x.id+"/"+cmd, map[string]any{"reason": "mix"})
		}
		if r.Status != 200 && r.Status != 409 && r.Status != 410 {
			t.Fatalf("%s: %d %s", cmd, r.Status, r.Raw)
		}
	}
	l.settle(tokens...)
}

// waitRebuild polls a rebuild until it ends and returns its final record.
func (l *ledgerUnderTest) waitRebuild(token, location string) reply {
	l.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := l.do(token, "GET", location, nil)
		want(l.t, r, 200, "")
		if r.str("state") != "running" {
			return r
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("rebuild still running: %s", r.Raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRebuildMatchesLive runs a random mix of commands, then rebuilds every
// view (over the API, then one on the command line) and compares the
// rebuilt tables with the live ones row for row, every column.
func TestRebuildMatchesLive(t *testing.T) { eachStore(t, testRebuildMatchesLive) }

func testRebuildMatchesLive(t *testing.T, store string) {
	l := start(t, store)
	randomMix(t, l, 42, 250)
	live := l.viewRows()
	if len(live["active"]) == 0 || len(live["trash"]) == 0 || len(live["anonymized"]) == 0 || len(live["archived"]) == 0 {
		t.Fatalf("the mix left a view empty: %d %d %d %d", len(live["active"]), len(live["archived"]), len(live["trash"]), len(live["anonymized"]))
	}
	operator := l.token("default", "operator")
	r := l.do(operator, "POST", "/v1/projections/all/rebuild", nil)
	want(t, r, 202, "")
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, "/v1/projections/all/rebuilds/rb_") || r.str("state") != "running" {
		t.Fatalf("rebuild: %v %s", r.Header, r.Raw)
	}
	done := l.waitRebuild(operator, loc)
	if done.str("state") != "done" || done.num("events_done") < done.num("events_total") || done.num("events_total") == 0 || done.str("finished_at") == "" {
		t.Fatalf("rebuild ended: %s", done.Raw)
	}
	sameRows(t, "after rebuilding all", l.viewRows(), live)
	if n := len(l.query(`SELECT name FROM projections WHERE name LIKE '%~%'`)); n != 0 {
		t.Fatalf("%d shadow checkpoints left", n)
	}
	out, _, err := l.run("projections", "rebuild", "trash")
	if err != nil || !strings.Contains(out, "Rebuilt trash") {
		t.Fatalf("projections rebuild trash (%v): %s", err, out)
	}
	sameRows(t, "after rebuilding trash on the command line", l.viewRows(), live)

	// The live projections keep working on the switched tables.
	randomMix(t, l, 7, 60)
	live = l.viewRows()
	r = l.do(operator, "POST", "/v1/projections/active/rebuild", nil)
	want(t, r, 202, "")
	l.waitRebuild(operator, r.Header.Get("Location"))
	sameRows(t, "after a second rebuild", l.viewRows(), live)

	// Status: every projection live and caught up, at the code's version.
	st := l.do(operator, "GET", "/v1/projections", nil)
	want(t, st, 200, "")
	ps := st.Body["projections"].([]any)
	if len(ps) != len(projections.Names()) {
		t.Fatalf("status: %s", st.Raw)
	}
	for _, x := range ps {
		p := x.(map[string]any)
		if p["state"] != "live" || p["version"] != float64(projections.Version) || p["head"] == "" {
			t.Fatalf("status of %v", p)
		}
		if p["name"] != projections.Erasure && p["name"] != projections.Identities && (p["lag_events"] != float64(0) || p["checkpoint"] != p["head"]) {
			t.Fatalf("a settled view lags: %v", p)
		}
	}
	if !strings.Contains(string(st.Raw), `"rebuilds":[{`) {
		t.Fatalf("status lists no rebuilds: %s", st.Raw)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"POST", "/v1/projections/nope/rebuild", 404, "projection-not-found"},
		{"POST", "/v1/projections/erasure/rebuild", 409, "not-rebuildable"},
		{"GET", "/v1/projections/active/rebuilds/rb_nope", 404, "not-found"},
		{"GET", "/v1/projections/trash/rebuilds/" + done.str("id"), 404, "not-found"},
		{"GET", "/v1/projections?x=1", 400, "unknown-parameter"},
	} {
		want(t, l.do(operator, tc.method, tc.path, nil), tc.status, tc.code)
	}
	for _, role := range []string{"member", "auditor"} {
		want(t, l.do(l.token("default", role), "GET", "/v1/projections", nil), 403, "role-not-allowed")
		want(t, l.do(l.token("default", role), "POST", "/v1/projections/all/rebuild", nil), 403, "role-not-allowed")
	}
	if strings.Contains(string(st.Raw), "Mix Person") || strings.Contains(string(st.Raw), "@example.com") {
		t.Fatal("the status carries personal data")
	}
	out, _, err = l.run("projections", "status")
	if err != nil || !strings.Contains(out, "trash") || !strings.Contains(out, "live") {
		t.Fatalf("projections status (%v): %s", err, out)
	}
}

// TestRebuildUnderLoad rebuilds every view while clients keep writing and
// reading their own writes: no request fails, no write is lost, and the
// views end exact.
func TestRebuildUnderLoad(t *testing.T) { eachStore(t, testRebuildUnderLoad) }

func testRebuildUnderLoad(t *testing.T, store string) {
	l := start(t, store)
	randomMix(t, l, 3, 150)
	operator := l.token("default", "operator")
	var (
		stop     atomic.Bool
		mu       sync.Mutex
		created  []string
		trashed  []string
		failures []string
		reads    atomic.Int64
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	var wg sync.WaitGroup
	defer func() { stop.Store(true); wg.Wait() }()
	for w := range 2 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				r := l.as("POST", "/v1/contacts", map[string]any{"name": fmt.Sprintf("Load %d-%d", w, i)})
				if r.Status != 201 {
					fail("create: %d %s", r.Status, r.Raw)
					return
				}
				id := r.str("id")
				// Read the write back through the view.
				r = l.as("GET", "/v1/contacts?view=active&q="+id, nil)
				reads.Add(1)
				if r.Status != 200 || len(r.items()) != 1 {
					fail("read own write %s: %d %s", id, r.Status, r.Raw)
					return
				}
				if i%2 == 0 {
					r = l.as("POST", "/v1/contacts/"+id+"/trash", nil)
					if r.Status != 200 {
						fail("trash: %d %s", r.Status, r.Raw)
						return
					}
					r = l.as("GET", "/v1/contacts?view=trash&q="+id, nil)
					reads.Add(1)
					if r.Status != 200 || len(r.items()) != 1 {
						fail("read own trash %s: %d %s", id, r.Status, r.Raw)
						return
					}
					mu.Lock()
					trashed = append(trashed, id)
					mu.Unlock()
				} else {
					mu.Lock()
					created = append(created, id)
					mu.Unlock()
				}
			}
		})
	}
	wg.Go(func() {
		for !stop.Load() {
			for _, v := range viewNames {
				r := l.as("GET", "/v1/contacts?limit=200&view="+v, nil)
				reads.Add(1)
				if r.Status != 200 {
					fail("list %s: %d %s", v, r.Status, r.Raw)
					return
				}
			}
		}
	})
	time.Sleep(200 * time.Millisecond)
	for range 2 {
		r := l.do(operator, "POST", "/v1/projections/all/rebuild", nil)
		want(t, r, 202, "")
		if done := l.waitRebuild(operator, r.Header.Get("Location")); done.str("state") != "done" {
			t.Fatalf("rebuild: %s", done.Raw)
		}
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed during the rebuilds, first: %s", len(failures), failures[0])
	}
	if len(created) < 5 || reads.Load() < 20 {
		t.Fatalf("too little load: %d writes, %d reads", len(created)+len(trashed), reads.Load())
	}
	l.settle()
	// Every write is in its view, and the views equal a fresh rebuild's.
	inView := func(view string) map[string]bool {
		out := map[string]bool{}
		for _, row := range l.query(`SELECT id FROM rm_` + view) {
			out[row[0]] = true
		}
		return out
	}
	act, tr := inView("active"), inView("trash")
	for _, id := range created {
		if !act[id] {
			t.Fatalf("lost write: %s is not in the active view", id)
		}
	}
	for _, id := range trashed {
		if !tr[id] {
			t.Fatalf("lost write: %s is not in the trash view", id)
		}
	}
	live := l.viewRows()
	if _, err := l.Runner.RunRebuild(context.Background(), "all", "requested", "test", nil); err != nil {
		t.Fatal(err)
	}
	sameRows(t, "after the load", l.viewRows(), live)
}

// TestRebuildFailsCleanly cancels one rebuild and breaks another mid-way:
// each leaves the live views exactly as they were and no table behind; a
// second rebuild of the same view meanwhile is refused.
func TestRebuildFailsCleanly(t *testing.T) { eachStore(t, testRebuildFailsCleanly) }

func testRebuildFailsCleanly(t *testing.T, store string) {
	var logs syncBuffer
	l := start(t, store, func(m *main.Main) {
		m.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	randomMix(t, l, 11, 80)
	live := l.viewRows()
	tables := func() int {
		q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'rm_%'`
		if store == "postgres" {
			q = `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'rm_%'`
		}
		return len(l.query(q))
	}
	if n := tables(); n != 4 {
		t.Fatalf("%d view tables, want 4", n)
	}

	// Cancelled when it is about to switch.
	ctx, cancel := context.WithCancel(context.Background())
	job, err := l.Runner.RunRebuild(ctx, "all", "requested", "test", func(j projections.RebuildJob) {
		if j.Phase == "switching" {
			cancel()
		}
	})
	if err == nil || job.State != projections.RebuildCancelled {
		t.Fatalf("cancelled rebuild: %v, state %s", err, job.State)
	}
	sameRows(t, "after a cancelled rebuild", l.viewRows(), live)
	if n := tables(); n != 4 {
		t.Fatalf("a cancelled rebuild left %d tables, want the 4 live ones", n)
	}
	operator := l.token("default", "operator")
	r := l.do(operator, "GET", "/v1/projections/all/rebuilds/"+job.ID, nil)
	if r.str("state") != "cancelled" || !strings.Contains(r.str("error"), "untouched") {
		t.Fatalf("cancelled rebuild's record: %s", r.Raw)
	}
	// Someone asked for it: the log says so, and not as an error.
	if log := logs.String(); strings.Contains(log, `"level":"ERROR"`) || !strings.Contains(log, `"msg":"rebuild cancelled"`) {
		t.Fatalf("a cancelled rebuild's log, want an info line and no error:\n%s", log)
	}

	// Broken while catching up: its table disappears behind its back.
	job, err = l.Runner.RunRebuild(context.Background(), "trash", "requested", "test", func(j projections.RebuildJob) {
		if j.Phase == "catching-up" {
			for _, row := range l.query(`SELECT name FROM projections WHERE name LIKE 'trash~%'`) {
				l.exec(`DROP TABLE rm_trash_` + strings.TrimPrefix(row[0], "trash~"))
			}
		}
	})
	if err == nil || job.State != projections.RebuildFailed {
		t.Fatalf("broken rebuild: %v, state %s", err, job.State)
	}
	sameRows(t, "after a failed rebuild", l.viewRows(), live)

	// One rebuild of a view at a time; cancelled over the API, it stops.
	hold := make(chan string)
	release := make(chan struct{})
	var wg sync.WaitGroup
	var final projections.RebuildJob
	wg.Go(func() {
		var once sync.Once
		final, _ = l.Runner.RunRebuild(context.Background(), "archived", "requested", "test", func(j projections.RebuildJob) {
			once.Do(func() { hold <- j.ID; <-release })
		})
	})
	id := <-hold
	want(t, l.do(operator, "POST", "/v1/projections/archived/rebuild", nil), 409, "rebuild-running")
	want(t, l.do(operator, "POST", "/v1/projections/all/rebuild", nil), 409, "rebuild-running")
	st := l.do(operator, "GET", "/v1/projections", nil)
	if !strings.Contains(string(st.Raw), `"name":"archived","state":"rebuilding"`) {
		t.Fatalf("status during a rebuild: %s", st.Raw)
	}
	want(t, l.do(operator, "DELETE", "/v1/projections/trash/rebuilds/"+id, nil), 404, "not-found")
	r = l.do(operator, "DELETE", "/v1/projections/archived/rebuilds/"+id, nil)
	want(t, r, 202, "")
	if r.Body["cancel_requested"] != true {
		t.Fatalf("cancel: %s", r.Raw)
	}
	close(release)
	wg.Wait()
	if final.State != projections.RebuildCancelled {
		t.Fatalf("a rebuild cancelled over the API ended %s", final.State)
	}
	sameRows(t, "after the last rebuild", l.viewRows(), live)
	if n := tables(); n != 4 {
		t.Fatalf("a cancelled rebuild left %d tables, want the 4 live ones", n)
	}
}

// TestRebuildOnNewVersion marks a view as built by older code and restarts
// the server: it rebuilds the view on start, without downtime, and records
// the new version.
func TestRebuildOnNewVersion(t *testing.T) { eachStore(t, testRebuildOnNewVersion) }

func testRebuildOnNewVersion(t *testing.T, store string) {
	l := start(t, store)
	randomMix(t, l, 5, 60)
	live := l.viewRows()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.exec(`UPDATE projections SET version = 0 WHERE name IN ('trash', 'active')`)
	m := main.NewMain()
	m.Config, m.Middleware = l.Config, checkContract(t)
	m.Stdout, m.Stderr = io.Discard, io.Discard
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	l2 := &ledgerUnderTest{Main: m, t: t, store: store, admin: l.admin}
	waitFor(t, 30*time.Second, "the outdated views to be rebuilt", func() bool {
		rows := l2.query(`SELECT count(*) FROM projections WHERE version = ?`, projections.Version)
		running := l2.query(`SELECT count(*) FROM projection_rebuilds WHERE state = 'running'`)
		return rows[0][0] == fmt.Sprint(len(projections.Names())) && running[0][0] == "0"
	})
	jobs := l2.query(`SELECT projection, reason, state FROM projection_rebuilds ORDER BY projection`)
	if !slices.EqualFunc(jobs, [][]string{{"active", "version", "done"}, {"trash", "version", "done"}}, slices.Equal) {
		t.Fatalf("rebuilds on start: %v", jobs)
	}
	l2.settle()
	sameRows(t, "after the rebuild on start", l2.viewRows(), live)
}

// TestProjectionStatusFailed slips an undecodable event into the log: the
// view projections that must apply it fail and retry, the status shows
// them failed and lagging, and the others stay live.
func TestProjectionStatusFailed(t *testing.T) { eachStore(t, testProjectionStatusFailed) }

func testProjectionStatusFailed(t *testing.T, store string) {
	l := start(t, store)
	id := l.create(map[string]any{"name": "Status Person"})
	l.settle()
	var at any = time.Now().UTC().UnixMicro()
	if store == "postgres" {
		at = time.Now().UTC()
	}
	eventID := make([]byte, 16)
	copy(eventID, "corrupt-event-id")
	l.exec(`INSERT INTO events (id, stream, version, type, time, workspace, actor, actor_role, correlation_id, causation_id, schema, data, hash)
		VALUES (?, ?, 2, 'ContactArchived', ?, 'default', 'tok_x', 'admin', '', '', 1, ?, ?)`, eventID, "contact-"+id, at, []byte("not json"), []byte("h"))
	operator := l.token("default", "operator")
	var active map[string]any
	waitFor(t, 20*time.Second, "the active projection to report its failure", func() bool {
		r := l.do(operator, "GET", "/v1/projections", nil)
		for _, x := range r.Body["projections"].([]any) {
			p := x.(map[string]any)
			if p["name"] == "active" && p["state"] == "failed" {
				active = p
				return true
			}
		}
		return false
	})
	if active["lag_events"] != float64(1) {
		t.Fatalf("the failed projection: %v, want one event behind", active)
	}
	r := l.do(operator, "GET", "/v1/projections", nil)
	for _, x := range r.Body["projections"].([]any) {
		if p := x.(map[string]any); p["name"] == "trash" && p["state"] != "live" {
			t.Fatalf("a projection the event does not concern: %v", p)
		}
	}
	out, _, err := l.run("projections", "status")
	if err != nil || !strings.Contains(out, "failed") {
		t.Fatalf("projections status (%v):\n%s", err, out)
	}
	// A query of the view it holds back cannot read its own writes: 503,
	// with when to try again.
	l.Runner.WaitTimeout = 200 * time.Millisecond
	r = l.as("GET", "/v1/contacts?view=active", nil)
	want(t, r, 503, "projection-lagging")
	if r.Header.Get("Retry-After") != "5" {
		t.Fatalf("a lagging projection's 503 has Retry-After %q, want 5", r.Header.Get("Retry-After"))
	}
}
