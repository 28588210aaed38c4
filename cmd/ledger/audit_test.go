package main_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contactledger/ledger/ledger"
)

// ndjson GETs an NDJSON stream and decodes its lines.
func (l *ledgerUnderTest) ndjson(token, path string) (int, []map[string]any, []byte) {
	l.t.Helper()
	req, _ := http.NewRequest("GET", l.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil, raw
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		l.t.Fatalf("content type %q, want application/x-ndjson", ct)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			l.t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return 200, out, raw
}

// TestHistoryAsOf folds a contact's trail up to each version and each
// event's time, before and after a purge, and checks the state against
// what the API answered at that time.
func TestHistoryAsOf(t *testing.T) { eachStore(t, testHistoryAsOf) }

func testHistoryAsOf(t *testing.T, store string) {
	l := start(t, store)
	auditor := l.token("default", "auditor")
	id := l.create(map[string]any{"name": "Alan Turing", "email": "alan@example.com", "tags": []string{"math"}})
	var seen []reply // the contact as the API showed it after each event
	seen = append(seen, l.as("GET", "/v1/contacts/"+id, nil))
	steps := []func() reply{
		func() reply {
			return l.as("PATCH", "/v1/contacts/"+id, map[string]any{"name": "Alan M. Turing", "job_title": "Codebreaker"})
		},
		func() reply { return l.as("POST", "/v1/contacts/"+id+"/archive", nil) },
		func() reply { return l.as("POST", "/v1/contacts/"+id+"/unarchive", nil) },
		func() reply { return l.as("PATCH", "/v1/contacts/"+id, map[string]any{"email": "turing@example.com"}) },
		func() reply { return l.as("POST", "/v1/contacts/"+id+"/trash", map[string]any{"reason": "left"}) },
	}
	for _, step := range steps {
		time.Sleep(2 * time.Millisecond)
		r := step()
		want(t, r, 200, "")
		seen = append(seen, r)
	}
	full := l.do(auditor, "GET", "/v1/contacts/"+id+"/history", nil)
	want(t, full, 200, "")
	events := full.Body["events"].([]any)
	if len(events) != 6 || full.num("current_version") != 6 || full.str("state", "state") != "trashed" {
		t.Fatalf("full history: %s", full.Raw)
	}
	check := func(r reply, v int, shredded bool) {
		t.Helper()
		want(t, r, 200, "")
		exp := seen[v-1]
		st := r.Body["state"].(map[string]any)
		if got := len(r.Body["events"].([]any)); got != v || r.num("version") != float64(v) || st["version"] != float64(v) {
			t.Fatalf("version %d: got %d events, state version %v", v, got, st["version"])
		}
		if st["state"] != exp.str("state") {
			t.Fatalf("version %d: state %v, want %s", v, st["state"], exp.str("state"))
		}
		if tags, _ := st["tags"].([]any); !shredded && (len(tags) != 1 || tags[0] != "math") {
			t.Fatalf("version %d: tags %v", v, st["tags"])
		}
		if shredded {
			// Tags are free text, sealed: a purge leaves none readable.
			if tags, _ := st["tags"].([]any); len(tags) != 0 {
				t.Fatalf("version %d after purge: tags %v, want none readable", v, tags)
			}
			if st["shredded"] != true || st["name"] != nil || st["email"] != nil {
				t.Fatalf("version %d after purge: %v, want personal fields shredded", v, st)
			}
			return
		}
		for _, f := range []string{"name", "email", "job_title"} {
			if st[f] != exp.Body[f] {
				t.Fatalf("version %d: %s is %v, want %v", v, f, st[f], exp.Body[f])
			}
		}
	}
	for v := 1; v <= 6; v++ {
		check(l.do(auditor, "GET", "/v1/contacts/"+id+"/history?version="+itoa(v), nil), v, false)
		at := events[v-1].(map[string]any)["time"].(string)
		check(l.do(auditor, "GET", "/v1/contacts/"+id+"/history?as_of="+url.QueryEscape(at), nil), v, false)
	}
	created, _ := time.Parse(time.RFC3339Nano, events[0].(map[string]any)["time"].(string))
	want(t, l.do(auditor, "GET", "/v1/contacts/"+id+"/history?as_of="+url.QueryEscape(created.Add(-time.Second).Format(time.RFC3339Nano)), nil), 404, "not-found")
	want(t, l.do(auditor, "GET", "/v1/contacts/"+id+"/history?version=7", nil), 422, "validation-failed")
	want(t, l.do(auditor, "GET", "/v1/contacts/"+id+"/history?version=0", nil), 422, "validation-failed")
	want(t, l.do(auditor, "GET", "/v1/contacts/"+id+"/history?as_of=yesterday", nil), 422, "validation-failed")
	want(t, l.do(auditor, "GET", "/v1/contacts/"+id+"/history?asof=x", nil), 400, "unknown-parameter")

	// After the purge every event is still there, personal parts shredded,
	// and the state at the end is the tombstone: who, when, why.
	r := l.as("POST", "/v1/contacts/"+id+"/purge", map[string]any{"reason": "erasure request", "request": "DSR-7"})
	want(t, r, 200, "")
	for v := 1; v <= 6; v++ {
		check(l.do(auditor, "GET", "/v1/contacts/"+id+"/history?version="+itoa(v), nil), v, true)
	}
	end := l.do(auditor, "GET", "/v1/contacts/"+id+"/history", nil)
	want(t, end, 200, "")
	ts := end.Body["state"].(map[string]any)["tombstone"].(map[string]any)
	er := ts["erasure"].(map[string]any)
	if end.str("state", "state") != "purged" || ts["type"] != "ContactPurged" || ts["by"].(map[string]any)["role"] != "admin" ||
		er["reason"] != nil || er["request"] != "DSR-7" || er["trigger"] != "request" || ts["at"] != r.str("tombstone", "at") {
		t.Fatalf("tombstone: %s", end.Raw)
	}
	if len(end.Body["events"].([]any)) != 7 {
		t.Fatalf("after purge: %d events, want 7", len(end.Body["events"].([]any)))
	}

	// The command line answers the same.
	out, _, err := l.run("replay", "contact", id, "--version", "2")
	if err != nil || !strings.Contains(out, "State at version 2 of 7: active, personal data shredded") || strings.Contains(out, "ContactArchived") {
		t.Fatalf("replay contact --version 2 (%v):\n%s", err, out)
	}
	out, _, err = l.run("replay", "contact", id, "--as-of", events[2].(map[string]any)["time"].(string))
	if err != nil || !strings.Contains(out, "State at version 3 of 7: archived") {
		t.Fatalf("replay contact --as-of (%v):\n%s", err, out)
	}
	out, _, err = l.run("replay", "contact", id)
	// The erasure's reason was sealed under the key it destroyed: nobody reads it.
	if err != nil || !strings.Contains(out, "ContactPurged at") || strings.Contains(out, "erasure request") || strings.Contains(out, `"left"`) {
		t.Fatalf("replay contact (%v):\n%s", err, out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestAuditEvents streams a workspace's log: only its own events, in global
// order, no personal data, filters, resuming from a position, several pages;
// and the command line's export of the same.
func TestAuditEvents(t *testing.T) { eachStore(t, testAuditEvents) }

func testAuditEvents(t *testing.T, store string) {
	l := start(t, store)
	old := ledger.AuditPage
	ledger.AuditPage = 4 // several pages with few events
	t.Cleanup(func() { ledger.AuditPage = old })
	auditor := l.token("default", "auditor")
	member := l.token("default", "member")
	if _, _, err := l.run("workspaces", "create", "acme"); err != nil {
		t.Fatal(err)
	}
	acme := l.token("acme", "admin")
	var ids []string
	for i := range 4 {
		ids = append(ids, l.create(map[string]any{"name": "Secret Person " + itoa(i), "email": "secret" + itoa(i) + "@example.com"}))
		want(t, l.do(acme, "POST", "/v1/contacts", map[string]any{"name": "Acme Person"}), 201, "")
	}
	mid := time.Now().UTC()
	time.Sleep(5 * time.Millisecond)
	want(t, l.do(member, "POST", "/v1/contacts/"+ids[0]+"/trash", nil), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+ids[1]+"/archive", nil), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+ids[0]+"/purge", nil), 200, "")
	want(t, l.as("PATCH", "/v1/contacts/"+ids[2], map[string]any{"name": "Secret Renamed"}), 200, "")

	status, all, raw := l.ndjson(auditor, "/v1/audit/events")
	if status != 200 || len(all) != 8 {
		t.Fatalf("got %d, %d events, want the 8 of the workspace: %s", status, len(all), raw)
	}
	if bytes.Contains(raw, []byte("Secret")) || bytes.Contains(raw, []byte("@example.com")) {
		t.Fatal("the audit log carries personal data in clear")
	}
	for i, e := range all {
		if e["workspace"] != "default" || e["hash"] == "" || e["contact_id"] == nil {
			t.Fatalf("event %d: %v", i, e)
		}
		if i > 0 && !positionLess(all[i-1]["position"].(string), e["position"].(string)) {
			t.Fatalf("not in global order at %d", i)
		}
	}
	count := func(query string) int {
		t.Helper()
		status, evs, raw := l.ndjson(auditor, "/v1/audit/events?"+query)
		if status != 200 {
			t.Fatalf("%s: %d %s", query, status, raw)
		}
		return len(evs)
	}
	me := l.query("SELECT actor FROM events WHERE type = ?", "ContactTrashed")[0][0]
	for q, n := range map[string]int{
		"type=ContactPurged":                 1,
		"type=ContactPurged,ContactArchived": 2,
		"contact=" + ids[0]:                  3,
		"actor=" + me:                        1,
		"since=" + url.QueryEscape(mid.Format(time.RFC3339Nano)): 4,
		"until=" + url.QueryEscape(mid.Format(time.RFC3339Nano)): 4,
		"after=" + all[2]["position"].(string):                   5,
		"limit=3":                                                3,
		"limit=3&after=" + all[6]["position"].(string):           1,
	} {
		if got := count(q); got != n {
			t.Errorf("%s: got %d events, want %d", q, got, n)
		}
	}
	for _, tc := range []struct{ q, code string }{
		{"type=Nope", "validation-failed"}, {"since=yesterday", "validation-failed"}, {"contact=x", "validation-failed"},
		{"after=abc", "validation-failed"}, {"limit=0", "validation-failed"},
		{"since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "validation-failed"},
	} {
		status, _, raw := l.ndjson(auditor, "/v1/audit/events?"+tc.q)
		if status != 422 || !bytes.Contains(raw, []byte(`"code":"`+tc.code+`"`)) {
			t.Errorf("%s: got %d %s, want 422 %s", tc.q, status, raw, tc.code)
		}
	}
	if status, _, _ := l.ndjson(auditor, "/v1/audit/events?foo=1"); status != 400 {
		t.Errorf("unknown parameter: got %d, want 400", status)
	}
	if status, _, _ := l.ndjson(member, "/v1/audit/events"); status != 403 {
		t.Errorf("member: got %d, want 403", status)
	}
	if status, _, _ := l.ndjson(l.token("default", "operator"), "/v1/audit/events"); status != 403 {
		t.Errorf("operator: got %d, want 403", status)
	}
	if status, evs, _ := l.ndjson(acme, "/v1/audit/events"); status != 200 || len(evs) != 4 {
		t.Errorf("acme: got %d, %d events, want its 4", status, len(evs))
	}

	// The command line exports the same lines.
	file := filepath.Join(t.TempDir(), "log.ndjson")
	_, stderr, err := l.run("replay", "workspace", "default", "--out", file)
	if err != nil || !strings.Contains(stderr, "Wrote 8 events") {
		t.Fatalf("replay workspace (%v): %s", err, stderr)
	}
	b, _ := os.ReadFile(file)
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 8 || !strings.Contains(lines[0], all[0]["event_id"].(string)) {
		t.Fatalf("export: %s", b)
	}
	_, stderr, err = l.run("replay", "workspace", "default", "--out", file, "--type", "ContactPurged,ContactArchived", "--since", mid.Format(time.RFC3339Nano))
	if err != nil || !strings.Contains(stderr, "Wrote 2 events") {
		t.Fatalf("replay workspace --type (%v): %s", err, stderr)
	}
	if _, _, err := l.run("replay", "workspace", "nope", "--out", file); err == nil {
		t.Fatal("export of an unknown workspace succeeded")
	}
	if _, _, err := l.run("replay", "workspace", "default"); err == nil {
		t.Fatal("export without --out succeeded")
	}
}

func positionLess(a, b string) bool {
	pa, pb := splitPos(a), splitPos(b)
	return pa[0] < pb[0] || (pa[0] == pb[0] && pa[1] < pb[1])
}

func splitPos(s string) [2]uint64 {
	c, p, two := strings.Cut(s, "-")
	var x, y uint64
	json.Unmarshal([]byte(c), &x)
	y = x
	if two {
		json.Unmarshal([]byte(p), &y)
	}
	return [2]uint64{x, y}
}

// TestChainTamper alters, removes and reorders stored events behind the
// ledger's back and shows `audit verify` finding each, while a purge
// (crypto-shredding) leaves every chain intact.
func TestChainTamper(t *testing.T) { eachStore(t, testChainTamper) }

func testChainTamper(t *testing.T, store string) {
	l := start(t, store)
	var ids []string
	for i := range 3 {
		id := l.create(map[string]any{"name": "Chained " + itoa(i)})
		want(t, l.as("PATCH", "/v1/contacts/"+id, map[string]any{"job_title": "v2"}), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+id+"/archive", nil), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
		ids = append(ids, id)
	}
	want(t, l.as("POST", "/v1/contacts/"+ids[2]+"/purge", nil), 200, "")
	for _, args := range [][]string{{}, {"--workspace", "default"}, {"--contact", ids[2]}} {
		out, _, err := l.run(append([]string{"audit", "verify"}, args...)...)
		if err != nil || !strings.Contains(out, "Every chain holds.") {
			t.Fatalf("verify %v on an intact log (%v):\n%s", args, err, out)
		}
	}
	stream := func(i int) string { return "contact-" + ids[i] }

	// Change the clear payload of contact 0's archive event.
	if n := l.exec(`UPDATE events SET data = ? WHERE stream = ? AND version = 3`, []byte(`{"reason":"forged"}`), stream(0)); n != 1 {
		t.Fatalf("altered %d events", n)
	}
	out, _, err := l.run("audit", "verify", "--workspace", "default")
	if err == nil || !strings.Contains(out, "BROKEN "+stream(0)+" at version 3") || !strings.Contains(out, ": changed:") {
		t.Fatalf("verify after an altered event (%v):\n%s", err, out)
	}
	out, _, err = l.run("audit", "verify", "--contact", ids[1])
	if err != nil || !strings.Contains(out, "Every chain holds.") {
		t.Fatalf("another contact's chain (%v):\n%s", err, out)
	}
	// Remove contact 1's second event.
	if n := l.exec(`DELETE FROM events WHERE stream = ? AND version = 2`, stream(1)); n != 1 {
		t.Fatalf("removed %d events", n)
	}
	out, _, err = l.run("audit", "verify", "--contact", ids[1], "--json")
	var rep ledger.VerifyReport
	if jerr := json.Unmarshal([]byte(out), &rep); err == nil || jerr != nil || len(rep.Breaks) != 1 || rep.Breaks[0].Kind != "removed" || rep.Breaks[0].Version != 3 {
		t.Fatalf("verify after a removed event (%v):\n%s", err, out)
	}
	// Reorder contact 2's events: swap the versions of 2 and 3 (the purged
	// contact's chain, whose key is shredded).
	l.exec(`UPDATE events SET version = 100 WHERE stream = ? AND version = 2`, stream(2))
	l.exec(`UPDATE events SET version = 2 WHERE stream = ? AND version = 3`, stream(2))
	l.exec(`UPDATE events SET version = 3 WHERE stream = ? AND version = 100`, stream(2))
	out, _, err = l.run("audit", "verify")
	if err == nil || !strings.Contains(out, "BROKEN "+stream(2)+" at version 3") || !strings.Contains(out, "Checked 12 events in 3 streams") {
		t.Fatalf("verify after reordered events (%v):\n%s", err, out)
	}
	if got := strings.Count(out, "BROKEN"); got != 3 {
		t.Fatalf("got %d breaks, want one per tampered stream:\n%s", got, out)
	}
	// Read by version, the swapped events break the chain at version 2.
	out, _, err = l.run("audit", "verify", "--contact", ids[2])
	if err == nil || !strings.Contains(out, "BROKEN "+stream(2)+" at version 2") {
		t.Fatalf("verify of the reordered contact (%v):\n%s", err, out)
	}
}
