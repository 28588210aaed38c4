package main_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	main "github.com/contactledger/ledger/cmd/ledger"
)

// associationsOf is what a restore must give back: everything but the lifecycle fields.
func associationsOf(t *testing.T, l *ledgerUnderTest, id string) string {
	t.Helper()
	r := l.as("GET", "/v1/contacts/"+id, nil)
	want(t, r, 200, "")
	notes := l.as("GET", "/v1/contacts/"+id+"/notes", nil)
	want(t, notes, 200, "")
	b, _ := json.Marshal(map[string]any{
		"tags": r.Body["tags"], "lists": r.Body["lists"], "links": r.Body["links"], "note_count": r.Body["note_count"],
		"created_at": r.Body["created_at"], "notes": notes.Body["items"], "name": r.Body["name"], "email": r.Body["email"],
	})
	return string(b)
}

// TestAssociationsSurviveTrashAndRestore gives a contact tags, notes, list
// memberships and links over HTTP, trashes and restores it (once on its
// own, once in bulk), and checks it comes back with exactly what it had,
// its history intact and no ContactCreated recorded by the restore; after a
// purge none of it is readable.
func TestAssociationsSurviveTrashAndRestore(t *testing.T) {
	eachStore(t, testAssociationsSurviveTrashAndRestore)
}

func testAssociationsSurviveTrashAndRestore(t *testing.T, store string) {
	l := start(t, store)
	id := l.create(map[string]any{"name": "Lena Lists", "email": "lena@example.com", "tags": []string{"lead"}})
	base := "/v1/contacts/" + id
	want(t, l.as("POST", base+"/tags", map[string]any{"add": []string{"vip", "customer"}, "remove": []string{"lead"}}), 200, "")
	r := l.as("POST", base+"/notes", map[string]any{"text": "Prefers calls after 5pm.\nAsked about pricing."})
	want(t, r, 201, "")
	noteID := r.str("id")
	want(t, l.as("POST", base+"/notes", map[string]any{"text": "Second note"}), 201, "")
	for list, status := range map[string]string{"newsletter": "subscribed", "webinars": "unconfirmed", "promo": "bounced", "old": "unsubscribed"} {
		want(t, l.as("PUT", base+"/lists/"+list, map[string]any{"status": status}), 200, "")
	}
	want(t, l.as("DELETE", base+"/lists/old", nil), 200, "")
	want(t, l.as("DELETE", base+"/lists/old", nil), 404, "not-found")
	for _, link := range []map[string]any{{"kind": "deal", "id": "D-100"}, {"kind": "account", "id": "ACME"}, {"kind": "ticket", "id": "T-7"}} {
		want(t, l.as("POST", base+"/links", link), 200, "")
	}
	want(t, l.as("DELETE", base+"/links/ticket/T-7", nil), 200, "")
	want(t, l.as("POST", base+"/links", map[string]any{"kind": "invoice", "id": "1"}), 422, "validation-failed")
	want(t, l.as("PUT", base+"/lists/newsletter", map[string]any{"status": "maybe"}), 422, "validation-failed")

	r = l.as("GET", base, nil)
	want(t, r, 200, "")
	if fmt.Sprint(r.Body["tags"]) != "[customer vip]" || fmt.Sprint(r.Body["lists"]) != "map[newsletter:subscribed promo:bounced webinars:unconfirmed]" ||
		fmt.Sprint(r.Body["links"]) != "[map[id:ACME kind:account] map[id:D-100 kind:deal]]" || r.num("note_count") != 2 {
		t.Fatalf("GET shows %s", r.Raw)
	}
	notes := l.as("GET", base+"/notes", nil)
	if items := notes.items(); len(items) != 2 || items[0]["id"] != noteID || items[0]["text"] != "Prefers calls after 5pm.\nAsked about pricing." {
		t.Fatalf("notes: %s", notes.Raw)
	}
	before := associationsOf(t, l, id)
	history := len(l.as("GET", base+"/history", nil).Body["events"].([]any))

	// Trashed, it cannot be changed; restored, it has all it had.
	want(t, l.as("DELETE", base, nil), 200, "")
	want(t, l.as("POST", base+"/tags", map[string]any{"add": []string{"x"}}), 409, "not-editable")
	want(t, l.as("POST", base+"/notes", map[string]any{"text": "x"}), 409, "not-editable")
	want(t, l.as("PUT", base+"/lists/x", map[string]any{"status": "subscribed"}), 409, "not-editable")
	want(t, l.as("POST", base+"/restore", nil), 200, "")
	if got := associationsOf(t, l, id); got != before {
		t.Fatalf("after restore:\n got %s\nwant %s", got, before)
	}
	want(t, l.as("DELETE", base, nil), 200, "")
	r = l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "restore", "ids": []string{id}, "expected_count": 1})
	want(t, r, 200, "")
	if got := associationsOf(t, l, id); got != before {
		t.Fatalf("after bulk restore:\n got %s\nwant %s", got, before)
	}
	events := l.as("GET", base+"/history", nil).Body["events"].([]any)
	if len(events) != history+4 {
		t.Fatalf("history has %d events, want the %d before plus two trashes and two restores", len(events), history)
	}
	created := 0
	for _, e := range events[history:] {
		typ := e.(map[string]any)["type"]
		if typ != "ContactTrashed" && typ != "ContactRestored" {
			t.Fatalf("trash and restore recorded %v", typ)
		}
	}
	for _, e := range events {
		if e.(map[string]any)["type"] == "ContactCreated" {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d ContactCreated events, want 1: a restore is never a creation", created)
	}

	// Purged, none of it is readable.
	want(t, l.as("DELETE", base, nil), 200, "")
	want(t, l.as("POST", base+"/purge", nil), 200, "")
	want(t, l.as("GET", base, nil), 410, "purged")
	want(t, l.as("GET", base+"/notes", nil), 410, "purged")
	for _, e := range l.as("GET", base+"/history", nil).Body["events"].([]any) {
		ev := e.(map[string]any)
		if ev["type"] == "ContactNoteAdded" && (ev["shredded"] != true || ev["personal"] != nil) {
			t.Fatalf("a note is readable after purge: %v", ev)
		}
	}
	l.ids("view=active")
	l.assertErased([]string{"Prefers calls after 5pm", "Second note", "lena@example.com"})
}

// TestBulk checks that a confirmed count that differs changes nothing, that
// each id gets its own result, and the limits.
func TestBulk(t *testing.T) { eachStore(t, testBulk) }

func testBulk(t *testing.T, store string) {
	l := start(t, store)
	var ids []string
	for i := range 5 {
		ids = append(ids, l.create(map[string]any{"name": fmt.Sprintf("Bulk %d", i), "email": fmt.Sprintf("bulk%d@example.com", i)}))
	}
	crm := l.create(map[string]any{"name": "From CRM", "source": map[string]any{"system": "crm", "external_id": "C-1"}})
	r := l.as("POST", "/v1/contacts/"+crm+"/trash", nil)
	want(t, r, 409, "protected-source")
	if !strings.Contains(r.str("detail"), "protected source") || !strings.Contains(r.str("detail"), "crm") {
		t.Fatalf("the protected-source problem does not say why: %s", r.Raw)
	}

	// The user confirmed 4, but 5 are named: nothing changes.
	r = l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "trash", "ids": ids, "expected_count": 4})
	want(t, r, 422, "count-mismatch")
	if got := l.ids("view=trash"); len(got) != 0 {
		t.Fatalf("a refused bulk request trashed %v", got)
	}
	for _, id := range ids {
		if v := l.as("GET", "/v1/contacts/"+id, nil).num("version"); v != 1 {
			t.Fatalf("a refused bulk request changed %s (version %v)", id, v)
		}
	}
	want(t, l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "trash", "ids": ids}), 422, "validation-failed")
	want(t, l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "explode", "ids": ids, "expected_count": 5}), 422, "validation-failed")
	want(t, l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "trash", "ids": []string{ids[0], ids[0]}, "expected_count": 2}), 422, "validation-failed")
	many := make([]string, 1001)
	for i := range many {
		many[i] = ids[0]
	}
	want(t, l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "trash", "ids": many, "expected_count": 1001}), 413, "too-many-ids")
	want(t, l.do(l.token("default", "member"), "POST", "/v1/contacts/bulk", map[string]any{"action": "purge", "ids": ids, "expected_count": 5}), 403, "role-not-allowed")

	// One request, mixed outcomes: each id has its own.
	want(t, l.as("POST", "/v1/contacts/"+ids[1]+"/trash", nil), 200, "")
	req := []string{ids[0], ids[1], "not-an-id", crm, "01ARZ3NDEKTSV4RRFFQ69G5FAV", ids[2]}
	r = l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "trash", "ids": req, "expected_count": len(req), "reason": "cleanup"})
	want(t, r, 200, "")
	type item struct {
		ID, Status, State string
		Problem           struct{ Code, Detail string }
	}
	var body struct {
		Results []item
		Totals  map[string]int
	}
	if err := json.Unmarshal(r.Raw, &body); err != nil {
		t.Fatal(err)
	}
	codes := make([]string, len(body.Results))
	for i, it := range body.Results {
		codes[i] = it.Status + ":" + it.Problem.Code
		if it.ID != req[i] && it.ID != fmt.Sprint(req[i]) {
			t.Fatalf("result %d is for %s, want %s", i, it.ID, req[i])
		}
	}
	wantCodes := []string{"ok:", "error:invalid-transition", "error:invalid-id", "error:protected-source", "error:not-found", "ok:"}
	if !slices.Equal(codes, wantCodes) || !reflect.DeepEqual(body.Totals, map[string]int{"requested": 6, "ok": 2, "failed": 4}) {
		t.Fatalf("bulk results: got %v %v, want %v", codes, body.Totals, wantCodes)
	}
	if d := body.Results[3].Problem.Detail; d == "" || !contains(d, "protected") {
		t.Fatalf("the protected-source problem does not say why: %q", d)
	}
	trash := l.ids("view=trash")
	slices.Sort(trash)
	wantTrash := []string{ids[0], ids[1], ids[2]}
	slices.Sort(wantTrash)
	if !slices.Equal(trash, wantTrash) {
		t.Fatalf("trash holds %v, want %v", trash, wantTrash)
	}
	// A retried request changes nothing twice: the transitions are refused.
	r = l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "trash", "ids": []string{ids[0]}, "expected_count": 1})
	want(t, r, 200, "")
	if v := l.as("GET", "/v1/contacts/"+ids[0], nil).num("version"); v != 2 {
		t.Fatalf("a repeated bulk trash appended again (version %v)", v)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// page reads one page of a view and returns its ids and next cursor.
func (l *ledgerUnderTest) page(query, cursor string) ([]string, string) {
	l.t.Helper()
	if cursor != "" {
		query += "&cursor=" + cursor
	}
	r := l.as("GET", "/v1/contacts?"+query, nil)
	want(l.t, r, 200, "")
	var ids []string
	for _, it := range r.items() {
		ids = append(ids, it["id"].(string))
	}
	next, _ := r.Body["next_cursor"].(string)
	return ids, next
}

// TestTrashSearchAndCursors searches trash by every filter, and pages
// through it while contacts move in and out: every contact that stays in
// trash shows exactly once, and none that left after the page was read
// shows again.
func TestTrashSearchAndCursors(t *testing.T) { eachStore(t, testTrashSearchAndCursors) }

func testTrashSearchAndCursors(t *testing.T, store string) {
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	l := start(t, store, func(m *main.Main) { m.Now = clk.Now })
	member := l.token("default", "member")
	var ids []string
	for i := range 12 {
		ids = append(ids, l.create(map[string]any{"name": fmt.Sprintf("Tess %02d", i), "email": fmt.Sprintf("tess%02d@example.com", i),
			"phone": fmt.Sprintf("+44 20 7946 %04d", i), "tags": []string{fmt.Sprintf("t%d", i%3)}}))
	}
	for i, id := range ids {
		clk.set(t0.Add(time.Duration(i) * time.Hour))
		token := l.admin
		if i%4 == 0 {
			token = member
		}
		want(t, l.do(token, "POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
	}
	memberID := "tok_" + strings.Split(strings.TrimPrefix(member, "lgr_"), "_")[0]
	at := func(h int) string { return t0.Add(time.Duration(h) * time.Hour).Format(time.RFC3339) }
	for name, tc := range map[string]struct {
		query string
		want  []string
	}{
		"deleted_after":  {"deleted_after=" + at(10), []string{ids[11], ids[10]}},
		"deleted_before": {"deleted_before=" + at(2), []string{ids[1], ids[0]}},
		"deleted_by":     {"deleted_by=" + memberID, []string{ids[8], ids[4], ids[0]}},
		"email":          {"email=TESS05@example.com", []string{ids[5]}},
		"phone":          {"phone=%2B442079460007", []string{ids[7]}},
		"q name":         {"q=tess+03", []string{ids[3]}},
		"q id":           {"q=" + ids[9], []string{ids[9]}},
		"tag":            {"tag=t2", []string{ids[11], ids[8], ids[5], ids[2]}},
		// t0 holds 0, 3, 6, 9 and the member trashed 0, 4, 8: only 0, trashed before the window.
		"combined": {"tag=t0&deleted_by=" + memberID + "&deleted_after=" + at(1), nil},
		"both":     {"tag=t0&deleted_by=" + memberID, []string{ids[0]}},
	} {
		got := l.ids("view=trash&" + tc.query)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
		}
	}

	// Page through trash (newest first) while contacts move.
	seen := map[string]int{}
	first, cursor := l.page("view=trash&limit=4", "")
	for _, id := range first {
		seen[id]++
	}
	if !slices.Equal(first, []string{ids[11], ids[10], ids[9], ids[8]}) || cursor == "" {
		t.Fatalf("first page %v", first)
	}
	// Two read contacts leave trash, one unread one leaves, a new one
	// arrives at the top, and a read one is trashed again (newest now).
	clk.set(t0.Add(20 * time.Hour))
	want(t, l.as("POST", "/v1/contacts/"+ids[10]+"/restore", nil), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+ids[9]+"/restore", nil), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+ids[5]+"/restore", nil), 200, "")
	fresh := l.create(map[string]any{"name": "Fresh"})
	want(t, l.as("POST", "/v1/contacts/"+fresh+"/trash", nil), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+ids[9]+"/trash", nil), 200, "")
	for cursor != "" {
		var got []string
		got, cursor = l.page("view=trash&limit=4", cursor)
		for _, id := range got {
			seen[id]++
		}
	}
	for i, id := range ids {
		n := seen[id]
		switch {
		case i == 5 && n != 0:
			t.Errorf("contact %d left trash before its page was read, yet showed %d times", i, n)
		case i != 5 && n != 1:
			t.Errorf("contact %d showed %d times, want exactly once", i, n)
		}
	}
	if seen[fresh] != 0 {
		t.Errorf("a contact trashed after the first page showed up on a later page")
	}
	// A cursor only works with the view and filters it was made for.
	_, c := l.page("view=trash&limit=2", "")
	want(t, l.as("GET", "/v1/contacts?view=trash&limit=2&tag=t1&cursor="+c, nil), 400, "invalid-cursor")
	want(t, l.as("GET", "/v1/contacts?view=active&limit=2&cursor="+c, nil), 400, "invalid-cursor")
}
