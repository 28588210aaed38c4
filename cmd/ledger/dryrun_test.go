package main_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
)

// TestDryRuns checks that a dry run of a bulk purge, of one anonymize, of a
// refused purge and of a restore job answers exactly what the real run
// answers afterwards, and that between the two nothing changed: the log's
// head stayed where it was, every contact kept its state and its data, and
// the dry run's Idempotency-Key was not used up.
func TestDryRuns(t *testing.T) { eachStore(t, testDryRuns) }

func testDryRuns(t *testing.T, store string) {
	l := start(t, store)
	head := func() string {
		t.Helper()
		h, err := l.Events().Head(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return h.String()
	}
	n := 0
	// full makes a trashed contact with a note, two tags, a list and a link.
	full := func() string {
		n++
		id := l.create(map[string]any{"name": fmt.Sprintf("Dry %d", n), "email": fmt.Sprintf("dry.%d@example.com", n), "tags": []string{"vip", "lead"}})
		want(t, l.as("POST", "/v1/contacts/"+id+"/notes", map[string]any{"text": "called back"}), 201, "")
		want(t, l.as("PUT", "/v1/contacts/"+id+"/lists/news", map[string]any{"status": "subscribed"}), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+id+"/links", map[string]any{"kind": "deal", "id": "D-7"}), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
		return id
	}
	trashed := []string{full(), full(), full()}
	held := full()
	want(t, l.as("POST", "/v1/contacts/"+held+"/hold", map[string]any{"case": "DRY-1"}), 200, "")
	active := l.create(map[string]any{"name": "Dry Active"})
	ids := append(slices.Clone(trashed), held, active, "not-an-id")
	body := map[string]any{"action": "purge", "ids": ids, "expected_count": len(ids), "reason": "cleanup", "dry_run": true}

	before := head()
	dry := l.as("POST", "/v1/contacts/bulk", body, "Idempotency-Key", "dry-then-real")
	want(t, dry, 200, "")
	if dry.Body["dry_run"] != true {
		t.Fatalf("dry run answer: %s", dry.Raw)
	}
	if after := head(); after != before {
		t.Fatalf("a dry run moved the log from %s to %s", before, after)
	}
	for _, id := range append(slices.Clone(trashed), held) {
		if c := l.as("GET", "/v1/contacts/"+id, nil); c.str("state") != "trashed" || c.str("email") == "" {
			t.Fatalf("after a dry run %s is %s (email %q)", id, c.str("state"), c.str("email"))
		}
	}
	first := dry.Body["results"].([]any)[0].(map[string]any)
	eff, _ := first["effect"].(map[string]any)
	if first["status"] != "ok" || first["state"] != "purged" || first["position"] != nil || eff["key_destroyed"] != true ||
		eff["from"] != "trashed" || eff["notes"] != 1.0 || eff["tags"] != 2.0 || eff["lists"] != 1.0 || eff["links"] != 1.0 {
		t.Fatalf("dry run of a purge: %v", first)
	}

	// The real run, with the same key: not a replay, and the same answer.
	delete(body, "dry_run")
	real := l.as("POST", "/v1/contacts/bulk", body, "Idempotency-Key", "dry-then-real")
	want(t, real, 200, "")
	if real.Header.Get("Idempotent-Replayed") != "" {
		t.Fatal("the dry run used up the Idempotency-Key: the real run was a replay")
	}
	if head() == before {
		t.Fatal("the real run appended nothing")
	}
	if got, want := bulkOutcome(t, dry), bulkOutcome(t, real); got != want {
		t.Fatalf("the dry run answered\n%s\nthe real run\n%s", got, want)
	}
	want(t, l.as("GET", "/v1/contacts/"+trashed[0], nil), 410, "purged")

	// One command: a dry run of an anonymize, then the real one.
	one := full()
	before = head()
	d := l.as("POST", "/v1/contacts/"+one+"/anonymize", map[string]any{"dry_run": true, "request": "DSR-9"})
	want(t, d, 200, "")
	if d.Body["dry_run"] != true || d.str("state") != "anonymized" || head() != before {
		t.Fatalf("dry run of an anonymize: %s (head %s, was %s)", d.Raw, head(), before)
	}
	if c := l.as("GET", "/v1/contacts/"+one, nil); c.str("state") != "trashed" || c.str("name") == "" || c.Header.Get("ETag") != d.Header.Get("ETag") {
		t.Fatalf("after a dry anonymize: %s (ETag %s, the dry run's %s)", c.Raw, c.Header.Get("ETag"), d.Header.Get("ETag"))
	}
	r := l.as("POST", "/v1/contacts/"+one+"/anonymize", map[string]any{"request": "DSR-9"})
	want(t, r, 200, "")
	for _, k := range []string{"state", "version", "effect", "tombstone.trigger", "tombstone.erasure.erased"} {
		if got, want := path(d.Body, k), path(r.Body, k); got != want {
			t.Fatalf("%s: dry run %s, real run %s", k, got, want)
		}
	}

	// A refused dry run is the real run's refusal.
	before = head()
	dr := l.as("POST", "/v1/contacts/"+held+"/purge", map[string]any{"dry_run": true})
	rr := l.as("POST", "/v1/contacts/"+held+"/purge", nil)
	want(t, dr, 409, "contact-held")
	want(t, rr, 409, "contact-held")
	if dr.str("detail") != rr.str("detail") || dr.str("hold_id") != rr.str("hold_id") || head() != before {
		t.Fatalf("refusals differ: %s vs %s", dr.Raw, rr.Raw)
	}

	// A restore job: its dry run plans and decides each contact, one of
	// which a live contact's email now blocks (under the live policy).
	pol := policy(30)
	pol["identity_uniqueness"] = "live"
	want(t, l.as("PUT", "/v1/workspace/policy", pol), 200, "")
	var back []string
	for i := range 3 {
		id := l.create(map[string]any{"name": "Back", "email": fmt.Sprintf("back.%d@example.com", i)})
		back = append(back, id)
	}
	tr := l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "trash", "ids": back, "expected_count": 3}, "X-Request-Id", "dry-bulk-trash")
	want(t, tr, 200, "")
	blocker := l.create(map[string]any{"name": "Blocker", "email": "back.1@example.com"})
	before = head()
	job := map[string]any{"operation": "bulk:dry-bulk-trash", "dry_run": true}
	pv := l.as("POST", "/v1/restore-jobs", job, "Idempotency-Key", "job-key")
	want(t, pv, 200, "")
	totals := pv.Body["totals"].(map[string]any)
	if totals["planned"] != 3.0 || totals["ok"] != 2.0 || totals["failed"] != 1.0 || head() != before {
		t.Fatalf("restore job dry run: %s", pv.Raw)
	}
	delete(job, "dry_run")
	jr := l.as("POST", "/v1/restore-jobs", job, "Idempotency-Key", "job-key")
	want(t, jr, 202, "")
	done := jobEnded(t, l, jr.str("id"))
	var planned []string
	var failedIDs []string
	for _, it := range pv.Body["results"].([]any) {
		it := it.(map[string]any)
		planned = append(planned, it["id"].(string))
		if it["status"] == "error" {
			failedIDs = append(failedIDs, it["id"].(string))
			if it["problem"].(map[string]any)["holder_id"] != blocker {
				t.Fatalf("dry run failure: %v", it)
			}
		}
	}
	var jobFailed []string
	for _, f := range done.Body["failures"].([]any) {
		jobFailed = append(jobFailed, f.(map[string]any)["id"].(string))
	}
	slices.Sort(planned)
	slices.Sort(back)
	if !slices.Equal(planned, back) || done.num("total") != 3 || done.num("restored") != totals["ok"] || !slices.Equal(jobFailed, failedIDs) {
		t.Fatalf("the dry run said %s; the job did %s", pv.Raw, done.Raw)
	}
}

// bulkOutcome is what must be equal in a bulk answer's dry and real runs:
// every item but its position.
func bulkOutcome(t *testing.T, r reply) string {
	t.Helper()
	var out []map[string]any
	for _, it := range r.Body["results"].([]any) {
		m := maps.Clone(it.(map[string]any))
		delete(m, "position")
		out = append(out, m)
	}
	b, err := json.MarshalIndent(map[string]any{"results": out, "totals": r.Body["totals"], "action": r.Body["action"]}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// path returns a dotted member of a JSON object, as JSON.
func path(m map[string]any, key string) string {
	var v any = m
	for _, k := range splitDots(key) {
		o, _ := v.(map[string]any)
		v = o[k]
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// jobEnded waits for a restore job to end and returns it.
func jobEnded(t *testing.T, l *ledgerUnderTest, id string) reply {
	t.Helper()
	return waitJob(t, l, id, 30*time.Second, func(r reply) bool {
		st := r.str("state")
		return st == "succeeded" || st == "failed" || st == "cancelled"
	})
}
