package main_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/internal/pgtest"
)

// waitJob polls a restore job until ok says so. The status, read while
// the job records its progress, folds only what was appended since the
// last read (after the first): it must never go back nor count past the
// job's total. It fails when the job goes for within without restoring
// another contact.
func waitJob(t *testing.T, l *ledgerUnderTest, id string, within time.Duration, ok func(r reply) bool) reply {
	t.Helper()
	deadline := time.Now().Add(within)
	var last float64
	for {
		r := l.as("GET", "/v1/restore-jobs/"+id, nil)
		want(t, r, 200, "")
		n := r.num("restored")
		if n < last || n+r.num("failed") > r.num("total") {
			t.Fatalf("restore job %s: the status went from %v restored to %s", id, last, r.Raw)
		}
		if n > last {
			// A job that restores is not stuck: on a loaded machine (and
			// under -race) it may need longer than within in all, so within
			// bounds the time without progress.
			deadline = time.Now().Add(within)
		}
		last = n
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("restore job %s: still %s", id, r.Raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restoresBy counts the ContactRestored events of a contact caused by job.
func restoresBy(t *testing.T, l *ledgerUnderTest, id, job string) (byJob, all int) {
	t.Helper()
	r := l.as("GET", "/v1/contacts/"+id+"/history", nil)
	want(t, r, 200, "")
	for _, e := range r.Body["events"].([]any) {
		ev := e.(map[string]any)
		if ev["type"] == "ContactCreated" && all > 0 {
			t.Fatalf("%s: a ContactCreated after a restore", id)
		}
		if ev["type"] == "ContactRestored" {
			all++
			if ev["causation_id"] == "job:"+job && ev["correlation_id"] == job {
				byJob++
			}
		}
	}
	return byJob, all
}

// trashMany imports n contacts and trashes them in bulk.
func trashMany(t *testing.T, l *ledgerUnderTest, n int, tag string) []string {
	t.Helper()
	var file strings.Builder
	file.WriteString("name,email,tags\n")
	for i := range n {
		fmt.Fprintf(&file, "%s %03d,%s%03d@example.com,%s\n", tag, i, tag, i, tag)
	}
	_, res, _ := l.importFile("test", "text/csv", file.String())
	ids := make([]string, n)
	for i, r := range res {
		if r.Result != "created" {
			t.Fatalf("import row %d: %+v", i+1, r)
		}
		ids[i] = r.ID
	}
	trashIDs(t, l, ids)
	return ids
}

// trashIDs trashes contacts in bulk, a thousand at a time.
func trashIDs(t *testing.T, l *ledgerUnderTest, ids []string) {
	t.Helper()
	for i := 0; i < len(ids); i += 1000 {
		part := ids[i:min(i+1000, len(ids))]
		r := l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "trash", "ids": part, "expected_count": len(part)})
		want(t, r, 200, "")
		if r.Body["totals"].(map[string]any)["ok"].(float64) != float64(len(part)) {
			t.Fatalf("bulk trash: %s", r.Raw)
		}
	}
}

// restoredOnce checks that a job restored every one of ids exactly once
// and left none in trash.
func restoredOnce(t *testing.T, l *ledgerUnderTest, ids []string, job string) {
	t.Helper()
	for _, id := range ids {
		if byJob, all := restoresBy(t, l, id, job); byJob != 1 || all != 1 {
			t.Fatalf("%s: restored %d times by the job and %d in all, want exactly once", id, byJob, all)
		}
	}
	if got := l.ids("view=trash"); len(got) != 0 {
		t.Fatalf("%d contacts still in trash", len(got))
	}
}

// TestRestoreJobs runs a restore job with a filter, refuses a second one
// while it runs (409 naming it), and cancels a third.
func TestRestoreJobs(t *testing.T) { eachStore(t, testRestoreJobs) }

func testRestoreJobs(t *testing.T, store string) {
	l := start(t, store, func(m *main.Main) { m.Config.RestoreRate = "20" })
	spring := trashMany(t, l, 12, "spring")
	autumn := trashMany(t, l, 3, "autumn")

	want(t, l.do(l.token("default", "member"), "POST", "/v1/restore-jobs", map[string]any{}), 403, "role-not-allowed")
	r := l.as("POST", "/v1/restore-jobs", map[string]any{"tag": "spring", "reason": "restore the spring cleanup"})
	want(t, r, 202, "")
	job := r.str("id")
	if r.Header.Get("Location") != "/v1/restore-jobs/"+job || r.num("total") != 12 || (r.str("state") != "queued" && r.str("state") != "running") {
		t.Fatalf("new job: %s", r.Raw)
	}
	// One job at a time: a second one is refused with the running job's id.
	r = l.as("POST", "/v1/restore-jobs", map[string]any{"tag": "autumn"})
	want(t, r, 409, "restore-job-running")
	if r.str("running_job_id") != job || !strings.Contains(r.str("detail"), job) {
		t.Fatalf("409 does not name the running job %s: %s", job, r.Raw)
	}
	r = waitJob(t, l, job, 30*time.Second, func(r reply) bool { return r.str("state") == "succeeded" })
	if r.num("restored") != 12 || r.num("failed") != 0 || r.str("finished_at") == "" {
		t.Fatalf("finished job: %s", r.Raw)
	}
	for _, id := range spring {
		if byJob, all := restoresBy(t, l, id, job); byJob != 1 || all != 1 {
			t.Fatalf("%s restored %d times by the job, %d in all; want once", id, byJob, all)
		}
		if s := l.as("GET", "/v1/contacts/"+id, nil).str("state"); s != "active" {
			t.Fatalf("%s is %s after the job", id, s)
		}
	}
	for _, id := range autumn {
		if s := l.as("GET", "/v1/contacts/"+id, nil).str("state"); s != "trashed" {
			t.Fatalf("a contact outside the filter was restored: %s is %s", id, s)
		}
	}

	// The slot is free again; this job is cancelled before it ends.
	more := trashMany(t, l, 40, "bulk")
	r = l.as("POST", "/v1/restore-jobs", map[string]any{"tag": "bulk"})
	want(t, r, 202, "")
	job2 := r.str("id")
	waitJob(t, l, job2, 30*time.Second, func(r reply) bool { return r.num("restored") > 0 })
	want(t, l.as("POST", "/v1/restore-jobs/"+job2+"/cancel", nil), 202, "")
	r = waitJob(t, l, job2, 30*time.Second, func(r reply) bool { return r.str("state") == "cancelled" })
	restored := int(r.num("restored"))
	if restored == 0 || restored >= len(more) || r.Body["cancel_requested"] != true {
		t.Fatalf("cancelled job: %s", r.Raw)
	}
	active := 0
	for _, id := range more {
		if l.as("GET", "/v1/contacts/"+id, nil).str("state") == "active" {
			active++
		}
	}
	if active != restored {
		t.Fatalf("the cancelled job says %d restored, but %d are active", restored, active)
	}
	want(t, l.as("POST", "/v1/restore-jobs/"+job2+"/cancel", nil), 409, "restore-job-finished")
	want(t, l.as("GET", "/v1/restore-jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV", nil), 404, "job-not-found")
	want(t, l.as("GET", "/v1/restore-jobs/nope", nil), 404, "job-not-found")
	// A job finds nothing to do when nothing matches, and says so.
	r = l.as("POST", "/v1/restore-jobs", map[string]any{"q": "nobody-matches-this"})
	want(t, r, 202, "")
	if r.num("total") != 0 || r.Body["filter"].(map[string]any)["query"] != true || strings.Contains(string(r.Raw), "nobody-matches-this") {
		t.Fatalf("the job keeps the query's text or plans wrong: %s", r.Raw)
	}
	waitJob(t, l, r.str("id"), 30*time.Second, func(r reply) bool { return r.str("state") == "succeeded" })
}

// TestRestoreJobSurvivesKill starts a restore job in a real server
// process, kills the process with SIGKILL in the middle of the job,
// restarts it on the same data directory, and checks that the job resumes
// and finishes with every matching contact restored exactly once.
func TestRestoreJobSurvivesKill(t *testing.T) { eachStore(t, testRestoreJobSurvivesKill) }

func testRestoreJobSurvivesKill(t *testing.T, store string) {
	dir := t.TempDir()
	var env []string
	if store == "postgres" {
		env = []string{"LEDGER_DATABASE_URL=" + pgtest.URL(t)}
	}
	srv := spawn(t, dir, append(env, "LEDGER_RESTORE_RATE=50")...)
	l := srv.ledger(t, store)
	ids := trashMany(t, l, 150, "crash")
	r := l.as("POST", "/v1/restore-jobs", map[string]any{"tag": "crash"})
	want(t, r, 202, "")
	job := r.str("id")
	r = waitJob(t, l, job, 20*time.Second, func(r reply) bool { return r.num("restored") >= 30 })
	// Progress is recorded every 1,000 contacts or 250ms: kill between two
	// records, when some contacts are restored that the job has not noted.
	time.Sleep(120 * time.Millisecond)
	srv.kill()
	if n := r.num("restored"); n >= float64(len(ids)) {
		t.Fatalf("the job had finished (%v restored) before the kill; the test proves nothing", n)
	}

	l = spawn(t, dir, env...).ledger(t, store)
	r = waitJob(t, l, job, 30*time.Second, func(r reply) bool { return r.str("state") == "succeeded" })
	if r.num("restored") != float64(len(ids)) || r.num("failed") != 0 || r.num("total") != float64(len(ids)) {
		t.Fatalf("after the restart: %s", r.Raw)
	}
	restoredOnce(t, l, ids, job)
	// The slot is free: a new job is admitted.
	want(t, l.as("POST", "/v1/restore-jobs", map[string]any{}), 202, "")
}

// TestRestoreJobAtFullSpeed runs a job without a rate limit, where
// contacts are restored in chunks loaded in one go, several at once: every
// contact is restored exactly once, by the job, and none is left in trash.
func TestRestoreJobAtFullSpeed(t *testing.T) { eachStore(t, testRestoreJobAtFullSpeed) }

func testRestoreJobAtFullSpeed(t *testing.T, store string) {
	l := start(t, store)
	ids := trashMany(t, l, 250, "fast")
	r := l.as("POST", "/v1/restore-jobs", map[string]any{"tag": "fast"})
	want(t, r, 202, "")
	job := r.str("id")
	r = waitJob(t, l, job, 60*time.Second, func(r reply) bool { return r.str("state") == "succeeded" })
	if r.num("restored") != float64(len(ids)) || r.num("failed") != 0 {
		t.Fatalf("job: %s", r.Raw)
	}
	restoredOnce(t, l, ids, job)
}

// TestRestoreJobAdmittedWhileScanned starts a job of several plan pages
// while the runner scans for admitted jobs every millisecond: a scan that
// comes between the admission and the writing of the job's stream must not
// take the job for one that died before it was queued (it used to release
// the slot, and the job stayed queued for ever).
func TestRestoreJobAdmittedWhileScanned(t *testing.T) {
	eachStore(t, testRestoreJobAdmittedWhileScanned)
}

func testRestoreJobAdmittedWhileScanned(t *testing.T, store string) {
	l := start(t, store, func(m *main.Main) { m.JobScan = time.Millisecond })
	ids := trashMany(t, l, 1500, "scan")
	for round := range 3 {
		r := l.as("POST", "/v1/restore-jobs", map[string]any{"tag": "scan"})
		want(t, r, 202, "")
		r = waitJob(t, l, r.str("id"), 30*time.Second, func(r reply) bool { return r.str("state") == "succeeded" })
		if round == 0 && r.num("restored") != float64(len(ids)) {
			t.Fatalf("job: %s", r.Raw)
		}
		if round < 2 {
			trashIDs(t, l, ids)
		}
	}
}
