package main_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	main "github.com/contactledger/ledger/cmd/ledger"
)

// TestLegalHold walks a legal hold end to end: an auditor holds a contact
// (case and reason sealed, shown back to whoever may read it), trash and
// edits still work, purge, anonymize and a bulk purge are refused naming
// the hold and nothing of its text, the retention sweeper skips it and
// reports it (command output and metric), a workspace hold pauses every
// retention purge, the history shows holds and releases, and after the
// release the purge goes through and nothing of the hold is readable.
func TestLegalHold(t *testing.T) { eachStore(t, testLegalHold) }

func testLegalHold(t *testing.T, store string) {
	t0 := time.Now().UTC().AddDate(0, 0, -40)
	clk := &clock{t: t0}
	l := start(t, store, func(m *main.Main) { m.Now, m.Config.RetentionInterval = clk.Now, "0" })
	auditor, member := l.token("default", "auditor"), l.token("default", "member")
	const caseRef, reason = "Lovelace v. Babbage", "counsel for ada.hold@example.com asked"

	held := l.create(map[string]any{"name": "Ada Held", "email": "ada.hold@example.com", "tags": []string{"vip"}})
	free := l.create(map[string]any{"name": "Bob Free"})
	want(t, l.as("POST", "/v1/contacts/"+held+"/notes", map[string]any{"text": "called"}), 201, "")

	want(t, l.do(member, "POST", "/v1/contacts/"+held+"/hold", map[string]any{"case": caseRef}), 403, "role-not-allowed")
	r := l.do(auditor, "POST", "/v1/contacts/"+held+"/hold", map[string]any{"case": caseRef, "reason": reason})
	want(t, r, 200, "")
	hold, _ := r.Body["hold"].(map[string]any)
	holdID, _ := hold["id"].(string)
	if !strings.HasPrefix(holdID, "hold_") || hold["case"] != caseRef || hold["reason"] != reason {
		t.Fatalf("hold in the answer: %s", r.Raw)
	}
	want(t, l.as("POST", "/v1/contacts/"+held+"/hold", map[string]any{"case": "again"}), 409, "already-held")
	if got := l.as("GET", "/v1/contacts/"+held, nil).Body["hold"].(map[string]any)["id"]; got != holdID {
		t.Fatalf("GET shows hold %v, want %s", got, holdID)
	}
	// The holds listing shows it, with its text, to those who may read it.
	hl := l.do(auditor, "GET", "/v1/holds", nil)
	want(t, hl, 200, "")
	items := hl.items()
	if len(items) != 1 || items[0]["contact_id"] != held || items[0]["hold"].(map[string]any)["case"] != caseRef || hl.Body["workspace_hold"] != nil {
		t.Fatalf("holds: %s", hl.Raw)
	}
	want(t, l.do(member, "GET", "/v1/holds", nil), 403, "role-not-allowed")

	// Edits and trash still work on a held contact.
	want(t, l.as("PATCH", "/v1/contacts/"+held, map[string]any{"job_title": "Countess"}), 200, "")
	for _, id := range []string{held, free} {
		want(t, l.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
	}
	// Erasure is refused, naming the hold and nothing of its text.
	for _, verb := range []string{"purge", "anonymize"} {
		r := l.as("POST", "/v1/contacts/"+held+"/"+verb, map[string]any{"request": "DSR-1"})
		want(t, r, 409, "contact-held")
		if r.str("hold_id") != holdID || !strings.Contains(r.str("detail"), holdID) || strings.Contains(string(r.Raw), "Lovelace") || strings.Contains(string(r.Raw), "ada.hold") {
			t.Fatalf("%s of a held contact: %s", verb, r.Raw)
		}
	}
	r = l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "purge", "ids": []string{held}, "expected_count": 1})
	want(t, r, 200, "")
	res := r.Body["results"].([]any)[0].(map[string]any)
	if p, _ := res["problem"].(map[string]any); res["status"] != "error" || p["code"] != "contact-held" || p["hold_id"] != holdID {
		t.Fatalf("bulk purge of a held contact: %s", r.Raw)
	}

	// Retention: both are 40 days in trash; the held one is skipped and counted.
	want(t, l.as("PUT", "/v1/workspace/policy", policy(30)), 200, "")
	clk.set(time.Now().UTC())
	out, _, err := l.run("retention", "sweep")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "default: purged 1 contacts in trash for over 30 days; skipped 1 under legal hold (operation retention:") {
		t.Fatalf("sweep printed %q", out)
	}
	want(t, l.as("GET", "/v1/contacts/"+free, nil), 410, "purged")
	if s := l.as("GET", "/v1/contacts/"+held, nil).str("state"); s != "trashed" {
		t.Fatalf("the held contact is %s after the sweep, want trashed", s)
	}
	// The server's own sweep counts the skip in its metrics.
	reps, err := l.Svc.SweepRetention(t.Context(), "default")
	if err != nil || len(reps) != 1 || reps[0].SkippedHeld != 1 || len(reps[0].Purged) != 0 {
		t.Fatalf("sweep: %+v, %v", reps, err)
	}
	if n := scrapeMetric(t, l, `ledger_retention_skipped_total{reason="contact_hold"}`); n < 1 {
		t.Fatalf("ledger_retention_skipped_total{contact_hold} = %v, want at least 1", n)
	}

	// A workspace hold pauses every retention purge.
	want(t, l.as("POST", "/v1/workspace/hold", map[string]any{"case": "write to legal@example.com"}), 422, "validation-failed")
	wr := l.do(auditor, "POST", "/v1/workspace/hold", map[string]any{"case": "LIT-2026-7", "reason": "all of it"})
	want(t, wr, 201, "")
	want(t, l.as("POST", "/v1/workspace/hold", nil), 409, "already-held")
	other := l.create(map[string]any{"name": "Cy Due"})
	clk.set(time.Now().UTC().AddDate(0, 0, -40))
	want(t, l.as("POST", "/v1/contacts/"+other+"/trash", nil), 200, "")
	clk.set(time.Now().UTC())
	out, _, err = l.run("retention", "sweep")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "purged 0 contacts") || !strings.Contains(out, "skipped 2: the workspace is under legal hold "+wr.str("id")) {
		t.Fatalf("sweep under a workspace hold printed %q", out)
	}
	if s := l.as("GET", "/v1/contacts/"+other, nil).str("state"); s != "trashed" {
		t.Fatalf("a due contact under the workspace hold is %s", s)
	}
	if hl := l.as("GET", "/v1/holds", nil); hl.Body["workspace_hold"].(map[string]any)["id"] != wr.str("id") {
		t.Fatalf("holds do not show the workspace hold: %s", hl.Raw)
	}
	// Purges by hand still run under a workspace hold.
	want(t, l.as("POST", "/v1/contacts/"+other+"/purge", nil), 200, "")
	want(t, l.do(auditor, "DELETE", "/v1/workspace/hold", map[string]any{"reason": "matter closed"}), 200, "")
	want(t, l.as("DELETE", "/v1/workspace/hold", nil), 409, "not-held")

	// Release, then purge.
	want(t, l.do(member, "DELETE", "/v1/contacts/"+held+"/hold", nil), 403, "role-not-allowed")
	r = l.do(auditor, "DELETE", "/v1/contacts/"+held+"/hold", map[string]any{"reason": "settled"})
	want(t, r, 200, "")
	if r.Body["hold"] != nil {
		t.Fatalf("the released contact still shows a hold: %s", r.Raw)
	}
	want(t, l.as("DELETE", "/v1/contacts/"+held+"/hold", nil), 409, "not-held")
	if items := l.as("GET", "/v1/holds", nil).items(); len(items) != 0 {
		t.Fatalf("holds after the release: %v", items)
	}
	h := l.as("GET", "/v1/contacts/"+held+"/history", nil)
	var types []string
	for _, e := range h.Body["events"].([]any) {
		ev := e.(map[string]any)
		types = append(types, ev["type"].(string))
		if ev["type"] == "ContactHeld" && ev["personal"].(map[string]any)["case"] != caseRef {
			t.Fatalf("history of the hold: %v", ev)
		}
	}
	if got := strings.Join(types, ","); !strings.Contains(got, "ContactHeld") || !strings.Contains(got, "ContactHoldReleased") {
		t.Fatalf("history: %s", got)
	}
	want(t, l.as("POST", "/v1/contacts/"+held+"/purge", nil), 200, "")
	// Nothing of the hold's text outlives the erasure.
	h = l.as("GET", "/v1/contacts/"+held+"/history", nil)
	if strings.Contains(string(h.Raw), "Lovelace") || strings.Contains(string(h.Raw), "counsel") || strings.Contains(string(h.Raw), "settled") {
		t.Fatalf("the erased contact's history shows its hold's text: %s", h.Raw)
	}
	for _, e := range h.Body["events"].([]any) {
		ev := e.(map[string]any)
		if ev["type"] == "ContactHeld" && (ev["shredded"] != true || ev["data"].(map[string]any)["hold_id"] != holdID) {
			t.Fatalf("the hold event after the erasure: %v", ev)
		}
	}
	want(t, l.as("POST", "/v1/contacts/"+held+"/hold", nil), 410, "purged")
}

// scrapeMetric reads one sample of the server's /metrics.
func scrapeMetric(t *testing.T, l *ledgerUnderTest, sample string) float64 {
	t.Helper()
	resp, err := http.Get(l.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no %s", sample)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
