package main_test

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// TestLifecycle walks a contact through its whole lifecycle over HTTP,
// checking every answer, every view and the history, then anonymizes a
// second one, and finally reads the database file's bytes to show that the
// erased contacts' personal data is gone from it.
func TestLifecycle(t *testing.T) {
	eachStore(t, func(t *testing.T, store string) { lifecycle(t, start(t, store), "default") })
}

// TestLifecycleEventStoreDB runs the same walk with the log in a real
// EventStoreDB/KurrentDB server (LEDGER_TEST_ESDB_URL) and the state in the
// embedded store. The server's log is shared with earlier runs, so the walk
// happens in a workspace of its own.
func TestLifecycleEventStoreDB(t *testing.T) {
	url := os.Getenv("LEDGER_TEST_ESDB_URL")
	if url == "" {
		t.Skip("LEDGER_TEST_ESDB_URL is not set: this test needs a real EventStoreDB/KurrentDB server " +
			"(e.g. docker compose --profile kurrent up -d kurrentdb, then LEDGER_TEST_ESDB_URL=esdb://localhost:2113?tls=false)")
	}
	l := start(t, "sqlite", func(m *main.Main) { m.Config.EventStoreURL = url })
	// A fresh state store replays the whole shared log first.
	l.Runner.WaitTimeout = 2 * time.Minute
	ctx := context.Background()
	ws := "e2e-" + strings.ToLower(ulid.Make().String())
	if _, err := l.Svc.CreateWorkspace(ctx, ws); err != nil {
		t.Fatal(err)
	}
	secret, _, err := l.Svc.CreateToken(ctx, ws, kernel.RoleAdmin, "e2e admin")
	if err != nil {
		t.Fatal(err)
	}
	l.admin = secret
	lifecycle(t, l, ws)
}

// lifecycle is the walk of TestLifecycle, with l's admin token of workspace ws.
func lifecycle(t *testing.T, l *ledgerUnderTest, ws string) {
	ada := map[string]any{
		"name": "Ada Lovelace", "email": "ada.lovelace@analytical.example", "phone": "+44 20 7946 0018",
		"job_title": "Analyst of Engines", "address": "12 St James's Square, London",
		"custom_fields": map[string]any{"favourite_engine": "Difference Engine No. 2"}, "tags": []string{"vip", "math"},
		"source": map[string]any{"system": "web", "external_id": "ext-ada-1815"},
	}
	// The answer to an idempotent create holds personal data: it too must go at erasure.
	r := l.as("POST", "/v1/contacts", ada, "Idempotency-Key", "create-ada")
	want(t, r, 201, "")
	id := r.str("id")
	if r.Header.Get("Location") != "/v1/contacts/"+id || r.Header.Get("ETag") != `"1"` || r.str("state") != "active" || r.str("position") == "" {
		t.Fatalf("create: got %v %s", r.Header, r.Raw)
	}
	if r.str("email") != "ada.lovelace@analytical.example" || r.str("source", "external_id") != "ext-ada-1815" {
		t.Fatalf("create echoes %s", r.Raw)
	}
	created := r.str("created_at")

	r = l.as("PATCH", "/v1/contacts/"+id, map[string]any{"job_title": "Countess of Lovelace", "address": nil}, "If-Match", `"1"`)
	want(t, r, 200, "")
	if r.num("version") != 2 || r.str("job_title") != "Countess of Lovelace" || r.str("address") != "" || r.Header.Get("ETag") != `"2"` {
		t.Fatalf("patch: %s", r.Raw)
	}
	want(t, l.as("PATCH", "/v1/contacts/"+id, map[string]any{"name": "Ada"}, "If-Match", `"1"`), 412, "concurrent-modification")

	r = l.as("POST", "/v1/contacts/"+id+"/archive", map[string]any{"reason": "inactive"})
	want(t, r, 200, "")
	if r.str("state") != "archived" || r.num("version") != 3 {
		t.Fatalf("archive: %s", r.Raw)
	}
	if slices.Contains(l.ids("view=active"), id) || !slices.Contains(l.ids("view=archived"), id) {
		t.Fatal("archived contact: want it in the archived view only")
	}
	want(t, l.as("PATCH", "/v1/contacts/"+id, map[string]any{"name": "Ada"}), 409, "not-editable")

	want(t, l.as("POST", "/v1/contacts/"+id+"/unarchive", nil), 200, "")
	if !slices.Contains(l.ids("view=active"), id) || slices.Contains(l.ids("view=archived"), id) {
		t.Fatal("unarchived contact: want it in the active view only")
	}

	r = l.as("POST", "/v1/contacts/"+id+"/trash", map[string]any{"reason": "duplicate"})
	want(t, r, 200, "")
	if r.str("state") != "trashed" || r.str("trashed_at") == "" || r.str("purge_after") == "" || !strings.HasPrefix(r.str("trashed_by"), "tok_") {
		t.Fatalf("trash: %s", r.Raw)
	}
	trashedAt, _ := time.Parse(time.RFC3339Nano, r.str("trashed_at"))
	purgeAfter, _ := time.Parse(time.RFC3339Nano, r.str("purge_after"))
	if purgeAfter.Sub(trashedAt) != 30*24*time.Hour {
		t.Fatalf("purge_after is %s after trash, want the default 30 days", purgeAfter.Sub(trashedAt))
	}
	page := l.as("GET", "/v1/contacts?view=trash", nil)
	if len(page.items()) != 1 || page.items()[0]["id"] != id || page.items()[0]["trashed_by"] == nil {
		t.Fatalf("trash view: %s", page.Raw)
	}
	if slices.Contains(l.ids("view=active"), id) {
		t.Fatal("a trashed contact is still in the active view")
	}
	want(t, l.as("PATCH", "/v1/contacts/"+id, map[string]any{"name": "Ada"}), 409, "not-editable")

	r = l.as("POST", "/v1/contacts/"+id+"/restore", nil)
	want(t, r, 200, "")
	if r.str("state") != "active" || r.str("created_at") != created || r.str("job_title") != "Countess of Lovelace" || r.str("trashed_at") != "" {
		t.Fatalf("restore: %s", r.Raw)
	}
	if !slices.Contains(l.ids("view=active"), id) || slices.Contains(l.ids("view=trash"), id) {
		t.Fatal("restored contact: want it in the active view only")
	}

	want(t, l.as("DELETE", "/v1/contacts/"+id, nil), 200, "")
	adaKey := l.keyMaterial(ws, id)
	r = l.as("POST", "/v1/contacts/"+id+"/purge", map[string]any{"reason": "erasure request", "request": "DSR-2026-0042"})
	want(t, r, 200, "")
	if r.str("state") != "purged" || r.str("tombstone", "type") != "ContactPurged" || r.str("tombstone", "event_id") == "" || r.str("name") != "" || r.str("email") != "" {
		t.Fatalf("purge: %s", r.Raw)
	}
	tombstone := r.str("tombstone", "event_id")
	r = l.as("GET", "/v1/contacts/"+id, nil)
	want(t, r, 410, "purged")
	if r.str("tombstone_event_id") != tombstone || r.str("erased_at") == "" {
		t.Fatalf("410 carries %s, want tombstone %s", r.Raw, tombstone)
	}
	for _, view := range []string{"active", "archived", "trash", "anonymized"} {
		if slices.Contains(l.ids("view="+view), id) {
			t.Fatalf("purged contact still in view %s", view)
		}
	}
	for _, cmd := range []string{"restore", "trash", "purge", "archive"} {
		want(t, l.as("POST", "/v1/contacts/"+id+"/"+cmd, nil), 410, "purged")
	}

	// The history keeps every event; personal parts read as shredded.
	r = l.as("GET", "/v1/contacts/"+id+"/history", nil)
	want(t, r, 200, "")
	events, _ := r.Body["events"].([]any)
	var types []string
	for i, e := range events {
		ev := e.(map[string]any)
		types = append(types, ev["type"].(string))
		if ev["version"].(float64) != float64(i+1) {
			t.Fatalf("event %d has version %v", i, ev["version"])
		}
		if (ev["type"] == "ContactCreated" || ev["type"] == "ContactUpdated") && (ev["shredded"] != true || ev["personal"] != nil) {
			t.Fatalf("event %s after purge: %v, want shredded", ev["type"], ev)
		}
	}
	wantTypes := []string{"ContactCreated", "ContactUpdated", "ContactArchived", "ContactUnarchived", "ContactTrashed", "ContactRestored", "ContactTrashed", "ContactPurged"}
	if !slices.Equal(types, wantTypes) {
		t.Fatalf("history: got %v, want %v", types, wantTypes)
	}
	last := events[len(events)-1].(map[string]any)
	if data := last["data"].(map[string]any); data["request"] != "DSR-2026-0042" || data["trigger"] != "request" || last["actor"].(map[string]any)["role"] != "admin" {
		t.Fatalf("tombstone: %v", last)
	}

	// A second contact is anonymized: a non-personal shell stays visible.
	grace := map[string]any{"name": "Grace Hopper", "email": "grace.hopper@navy.example", "phone": "+1 202 555 0199", "tags": []string{"navy"}}
	gid := l.create(grace)
	want(t, l.as("POST", "/v1/contacts/"+gid+"/trash", nil), 200, "")
	graceKey := l.keyMaterial(ws, gid)
	r = l.as("POST", "/v1/contacts/"+gid+"/anonymize", map[string]any{"reason": "right to erasure"})
	want(t, r, 200, "")
	if r.str("state") != "anonymized" || r.str("name") != "Deleted contact" || r.str("email") != "" {
		t.Fatalf("anonymize: %s", r.Raw)
	}
	r = l.as("GET", "/v1/contacts/"+gid, nil)
	want(t, r, 200, "")
	if r.str("name") != "Deleted contact" || r.str("email") != "" || r.str("phone") != "" || r.Body["shredded"] != true {
		t.Fatalf("anonymized contact: %s", r.Raw)
	}
	if got := l.ids("view=anonymized"); !slices.Equal(got, []string{gid}) {
		t.Fatalf("anonymized view: got %v, want [%s]", got, gid)
	}
	if tags := r.Body["tags"].([]any); len(tags) != 0 {
		t.Fatalf("anonymized shell still shows its tags (free text, erased with the rest): %v", r.Body["tags"])
	}

	// Wait until every projection has applied the erasures, then read the
	// raw bytes of the database file and its WAL.
	for _, view := range []string{"active", "archived", "trash", "anonymized"} {
		l.ids("view=" + view)
	}
	secrets := []string{"Ada Lovelace", "ada.lovelace@analytical.example", "7946 0018", "Analyst of Engines", "Countess of Lovelace",
		"St James", "Difference Engine", "ext-ada-1815", "Grace Hopper", "grace.hopper@navy.example", "555 0199"}
	l.assertErased(secrets, adaKey, graceKey)

	// The log, wherever it is, holds every event and only ciphertext of personal data.
	for _, cid := range []string{id, gid} {
		parsed, err := contact.ParseID(cid)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := l.Events().ReadStream(context.Background(), ws, parsed.Stream())
		if err != nil || len(recs) == 0 {
			t.Fatalf("the log of %s: %d events, %v", cid, len(recs), err)
		}
		for _, r := range recs {
			for _, sec := range secrets {
				if bytes.Contains(r.Data, []byte(sec)) || bytes.Contains(r.Sealed, []byte(sec)) {
					t.Fatalf("event %s v%d of the log holds personal data in clear", r.Stream, r.Version)
				}
			}
		}
	}
}
