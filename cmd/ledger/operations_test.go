package main_test

import (
	"slices"
	"strings"
	"testing"
)

// TestUndoByOperation trashes contacts in two bulk requests and a single
// request, then undoes them one operation at a time: a restore job with
// the first bulk request's operation restores exactly its contacts and
// none of the others, `ledger restore --operation` the second's, and a
// job with the single request's id the last. Operations show in command
// answers, in the trash view and in every history entry.
func TestUndoByOperation(t *testing.T) { eachStore(t, testUndoByOperation) }

func testUndoByOperation(t *testing.T, store string) {
	l := start(t, store)
	mk := func(n int, tag string) []string {
		var ids []string
		for range n {
			ids = append(ids, l.create(map[string]any{"name": "Undo " + tag}))
		}
		return ids
	}
	a, b, c := mk(3, "a"), mk(2, "b"), mk(1, "c")
	bulkTrash := func(ids []string, rid string) {
		r := l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "trash", "ids": ids, "expected_count": len(ids)}, "X-Request-Id", rid)
		want(t, r, 200, "")
		if r.str("operation") != "bulk:"+rid {
			t.Fatalf("bulk answer: %s", r.Raw)
		}
	}
	bulkTrash(a, "undo-a")
	bulkTrash(b, "undo-b")
	r := l.as("POST", "/v1/contacts/"+c[0]+"/trash", nil, "X-Request-Id", "undo-c")
	want(t, r, 200, "")
	if r.str("operation") != "undo-c" || r.str("trashed_operation") != "undo-c" {
		t.Fatalf("a single trash's answer: %s", r.Raw)
	}
	// The trash view and the history say which operation trashed each.
	byOp := map[string][]string{}
	for _, it := range l.as("GET", "/v1/contacts?view=trash&limit=200", nil).items() {
		op, _ := it["trashed_operation"].(string)
		byOp[op] = append(byOp[op], it["id"].(string))
	}
	for op, want := range map[string][]string{"bulk:undo-a": a, "bulk:undo-b": b, "undo-c": c} {
		got := slices.Clone(byOp[op])
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Fatalf("trashed by %s: %v, want %v", op, got, w)
		}
	}
	last := func(id string) map[string]any {
		evs := l.as("GET", "/v1/contacts/"+id+"/history", nil).Body["events"].([]any)
		return evs[len(evs)-1].(map[string]any)
	}
	if ev := last(a[0]); ev["type"] != "ContactTrashed" || ev["operation"] != "bulk:undo-a" {
		t.Fatalf("history of a bulk trash: %v", ev)
	}

	want(t, l.as("POST", "/v1/restore-jobs", map[string]any{"operation": "someone@example.com"}), 422, "validation-failed")
	// Undo the first bulk request: exactly its three come back.
	jr := l.as("POST", "/v1/restore-jobs", map[string]any{"operation": "bulk:undo-a"})
	want(t, jr, 202, "")
	if jr.str("operation") != "job:"+jr.str("id") || jr.Body["filter"].(map[string]any)["operation"] != "bulk:undo-a" {
		t.Fatalf("restore job: %s", jr.Raw)
	}
	done := jobEnded(t, l, jr.str("id"))
	if done.str("state") != "succeeded" || done.num("total") != 3 || done.num("restored") != 3 {
		t.Fatalf("undo of bulk:undo-a: %s", done.Raw)
	}
	inTrash := func() []string {
		ids := l.ids("view=trash&limit=200")
		slices.Sort(ids)
		return ids
	}
	rest := append(slices.Clone(b), c...)
	slices.Sort(rest)
	if got := inTrash(); !slices.Equal(got, rest) {
		t.Fatalf("trash after undoing bulk:undo-a: %v, want %v", got, rest)
	}
	for _, id := range a {
		if ev := last(id); ev["type"] != "ContactRestored" || ev["operation"] != "job:"+jr.str("id") {
			t.Fatalf("the restore of %s: %v", id, ev)
		}
	}

	// Undo the second from the command line.
	out, _, err := l.run("restore", "--operation", "bulk:undo-b", "--dry-run")
	if err != nil || !strings.Contains(out, "2 would be restored, 0 would fail") {
		t.Fatalf("ledger restore --dry-run: %q, %v", out, err)
	}
	out, _, err = l.run("restore", "--operation", "bulk:undo-b")
	if err != nil || !strings.Contains(out, "succeeded: restored 2 of 2, 0 failed") {
		t.Fatalf("ledger restore: %q, %v", out, err)
	}
	if got := inTrash(); !slices.Equal(got, c) {
		t.Fatalf("trash after undoing bulk:undo-b: %v, want %v", got, c)
	}
	// And the single request.
	jr = l.as("POST", "/v1/restore-jobs", map[string]any{"operation": "undo-c"})
	want(t, jr, 202, "")
	if done := jobEnded(t, l, jr.str("id")); done.num("restored") != 1 || len(inTrash()) != 0 {
		t.Fatalf("undo of undo-c: %s", done.Raw)
	}
}
