package main_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

// TestIdempotency checks that a POST repeated with the same Idempotency-Key
// and body gets the first answer without new events, even after a restart;
// that the same key with another body is refused; and that two requests
// racing with one key run once.
func TestIdempotency(t *testing.T) { eachStore(t, testIdempotency) }

func testIdempotency(t *testing.T, store string) {
	l := start(t, store)
	body := map[string]any{"name": "Once Only", "email": "once.only@example.com"}
	first := l.as("POST", "/v1/contacts", body, "Idempotency-Key", "create-1")
	want(t, first, 201, "")
	id := first.str("id")
	again := l.as("POST", "/v1/contacts", body, "Idempotency-Key", "create-1")
	want(t, again, 201, "")
	if string(again.Raw) != string(first.Raw) || again.Header.Get("Location") != first.Header.Get("Location") ||
		again.Header.Get("ETag") != first.Header.Get("ETag") || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat answered %s %v, want the first answer %s", again.Raw, again.Header, first.Raw)
	}
	if n := len(l.ids("view=active")); n != 1 {
		t.Fatalf("a repeated create made %d contacts, want 1", n)
	}

	other := map[string]any{"name": "Someone Else"}
	want(t, l.as("POST", "/v1/contacts", other, "Idempotency-Key", "create-1"), 422, "idempotency-key-reused")
	want(t, l.as("POST", "/v1/contacts/"+id+"/archive", nil, "Idempotency-Key", "create-1"), 422, "idempotency-key-reused")
	want(t, l.as("POST", "/v1/contacts", body, "Idempotency-Key", "bad key with spaces"), 400, "invalid-idempotency-key")

	// A command repeated: the first answer again, one event in the log.
	trash := l.as("POST", "/v1/contacts/"+id+"/trash", map[string]any{"reason": "dup"}, "Idempotency-Key", "trash-1")
	want(t, trash, 200, "")
	repeat := l.as("POST", "/v1/contacts/"+id+"/trash", map[string]any{"reason": "dup"}, "Idempotency-Key", "trash-1")
	want(t, repeat, 200, "")
	if string(repeat.Raw) != string(trash.Raw) {
		t.Fatalf("repeat of trash answered %s, want %s", repeat.Raw, trash.Raw)
	}
	// Refusals are answers too: the same 409 comes back.
	want(t, l.as("POST", "/v1/contacts/"+id+"/archive", nil, "Idempotency-Key", "archive-1"), 409, "invalid-transition")
	want(t, l.as("POST", "/v1/contacts/"+id+"/archive", nil, "Idempotency-Key", "archive-1"), 409, "invalid-transition")

	// The keys survive a restart.
	l.restart()
	after := l.as("POST", "/v1/contacts/"+id+"/trash", map[string]any{"reason": "dup"}, "Idempotency-Key", "trash-1")
	want(t, after, 200, "")
	if string(after.Raw) != string(trash.Raw) {
		t.Fatalf("after a restart the repeat answered %s, want %s", after.Raw, trash.Raw)
	}
	events := l.as("GET", "/v1/contacts/"+id+"/history", nil).Body["events"].([]any)
	if len(events) != 2 {
		t.Fatalf("history has %d events, want 2 (created, trashed once)", len(events))
	}

	// Requests racing with one key run once.
	var wg sync.WaitGroup
	statuses := make([]int, 12)
	ids := make([]string, 12)
	race := map[string]any{"name": "Race Winner"}
	for i := range statuses {
		wg.Go(func() {
			r := l.as("POST", "/v1/contacts", race, "Idempotency-Key", "race-1")
			statuses[i], ids[i] = r.Status, r.str("id")
			if r.Status == 409 && r.str("code") != "idempotency-key-in-progress" {
				t.Errorf("race: got %s", r.Raw)
			}
		})
	}
	wg.Wait()
	created := map[string]bool{}
	for i, st := range statuses {
		if st != 201 && st != 409 {
			t.Fatalf("race: status %d", st)
		}
		if st == 201 {
			created[ids[i]] = true
		}
	}
	if len(created) != 1 {
		t.Fatalf("racing requests with one key created %d contacts, want 1", len(created))
	}
	if n := len(l.ids("view=active")); n != 1 {
		t.Fatalf("active view has %d contacts, want only the race winner", n)
	}
}

// TestIdempotentCreateAfterCrash checks that a create repeated under its
// Idempotency-Key after the server died mid-way (its claim never finished)
// finds what the first run made instead of making a second contact: both
// when the first run got as far as the contact's key, and when it got as
// far as the log.
func TestIdempotentCreateAfterCrash(t *testing.T) { eachStore(t, testIdempotentCreateAfterCrash) }

func testIdempotentCreateAfterCrash(t *testing.T, store string) {
	l := start(t, store)
	ctx := context.Background()
	const ws = "crash-idem"
	if _, err := l.Svc.CreateWorkspace(ctx, ws); err != nil {
		t.Fatal(err)
	}
	since := time.Now().UTC().Truncate(time.Microsecond)
	meta := func(key string) ledger.Meta {
		return ledger.Meta{Actor: kernel.Actor{Principal: "tok_crash", Role: kernel.RoleMember}, CorrelationID: key, IdempotencyKey: key, IdempotentSince: since}
	}
	draft := contact.Draft{Personal: contact.Personal{Name: "Half Made", Email: "half.made@example.com"}}

	// The first run appended and died before answering: the repeat answers
	// with the contact it made.
	first, err := l.Svc.Create(ctx, ws, meta("k-logged"), draft)
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.Svc.Create(ctx, ws, meta("k-logged"), draft)
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	if again.Contact.ID != first.Contact.ID || again.Version != 1 {
		t.Fatalf("repeat made %s v%d, want %s v1", again.Contact.ID, again.Version, first.Contact.ID)
	}

	// The first run stored the key and died before appending: the repeat
	// carries on with that key.
	id := ledger.IdempotentID(ws, "tok_crash", "k-keyed", since)
	if _, _, err := l.Vault().NewContactKey(ctx, ws, id, since); err != nil {
		t.Fatal(err)
	}
	res, err := l.Svc.Create(ctx, ws, meta("k-keyed"), contact.Draft{Personal: contact.Personal{Name: "Key Only"}})
	if err != nil {
		t.Fatalf("create after a stored key: %v", err)
	}
	if res.Contact.ID != id {
		t.Fatalf("created %s, want %s", res.Contact.ID, id)
	}
	v, err := l.Svc.Get(ctx, ws, id)
	if err != nil || v.Personal.Name != "Key Only" {
		t.Fatalf("get: %+v, %v; want the contact readable under the first run's key", v, err)
	}

	// Other keys, and the same key in another workspace, give other ids.
	if ledger.IdempotentID(ws, "tok_crash", "k-other", since) == id || ledger.IdempotentID("other", "tok_crash", "k-keyed", since) == id || ledger.IdempotentID(ws, "tok_other", "k-keyed", since) == id {
		t.Fatal("idempotent ids collide")
	}
	page, err := l.Svc.List(ctx, ledger.ListQuery{Workspace: ws, View: "active", Limit: 10}, res.Position, "", "")
	if err != nil || len(page.Items) != 2 {
		t.Fatalf("active view: %d contacts, %v; want 2", len(page.Items), err)
	}
}
