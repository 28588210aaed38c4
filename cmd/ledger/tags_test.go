package main_test

import (
	"slices"
	"testing"
)

// TestTagsAreBlindIndexed checks that the views filter on tags through
// blind indexes: a tag is free text (a name, an email), so the column the
// views index holds none in clear, while the tag filter still finds them.
func TestTagsAreBlindIndexed(t *testing.T) { eachStore(t, testTagsAreBlindIndexed) }

func testTagsAreBlindIndexed(t *testing.T, store string) {
	l := start(t, store)
	tag := "Ada Lovelace VIP"
	id := l.create(map[string]any{"name": "Tagged Person", "tags": []string{tag, "plain"}})
	other := l.create(map[string]any{"name": "Untagged Person", "tags": []string{"plain"}})
	if got := l.ids("view=active&tag=Ada+Lovelace+VIP"); !slices.Equal(got, []string{id}) {
		t.Fatalf("tag filter: got %v, want [%s]", got, id)
	}
	if got := l.ids("view=active&tag=plain"); len(got) != 2 || !slices.Contains(got, other) {
		t.Fatalf("tag filter: got %v, want both", got)
	}
	if got := l.ids("view=active&tag=nobody"); len(got) != 0 {
		t.Fatalf("tag filter: got %v for an unknown tag", got)
	}
	column := "tags"
	if store == "postgres" {
		column = "array_to_string(tags, ',')"
	}
	if n := l.exec(`UPDATE rm_active SET version = version WHERE id = ?`, id); n != 1 {
		t.Fatalf("the contact's row: %d rows", n)
	}
	if n := l.exec(`UPDATE rm_active SET version = version WHERE id = ? AND `+column+` LIKE ?`, id, "%Lovelace%"); n != 0 {
		t.Fatal("the view's tag column holds a tag in clear")
	}
	// The restore job's filter finds tags the same way.
	want(t, l.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+other+"/trash", nil), 200, "")
	job := l.as("POST", "/v1/restore-jobs", map[string]any{"tag": tag, "reason": "restore the VIPs"})
	want(t, job, 202, "")
	if job.num("total") != 1 {
		t.Fatalf("restore job by tag: %s, want 1 contact", job.Raw)
	}
	if f, _ := job.Body["filter"].(map[string]any); f["tag"] != nil || f["tagged"] != true {
		t.Fatalf("the job keeps its tag in clear: %s", job.Raw)
	}
}
