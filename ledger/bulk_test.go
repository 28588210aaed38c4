package ledger_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/ledgertest"
	"github.com/contactledger/ledger/ledger"
)

// TestBulkRefusesWholeRequests lists the requests Bulk refuses as a
// whole: each fails with its code and leaves the log as it was.
func TestBulkRefusesWholeRequests(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{NoRunner: true})
	id := e.Create(t, "Ann", "").String()
	many := make([]string, ledger.MaxBulk+1)
	for i := range many {
		many[i] = contact.NewID().String()
	}
	for _, tc := range []struct {
		name string
		req  ledger.BulkRequest
		code kernel.Code
	}{
		{"an unknown action", ledger.BulkRequest{Action: "explode", IDs: []string{id}, ExpectedCount: 1}, kernel.CodeInvalid},
		{"no ids", ledger.BulkRequest{Action: ledger.Trash}, kernel.CodeInvalid},
		{"too many ids", ledger.BulkRequest{Action: ledger.Trash, IDs: many, ExpectedCount: len(many)}, kernel.CodeTooLarge},
		{"a count the user did not confirm", ledger.BulkRequest{Action: ledger.Trash, IDs: []string{id}, ExpectedCount: 2}, kernel.CodeInvalid},
		{"an id twice", ledger.BulkRequest{Action: ledger.Trash, IDs: []string{id, id}, ExpectedCount: 2}, kernel.CodeInvalid},
		{"a reason too long", ledger.BulkRequest{Action: ledger.Trash, IDs: []string{id}, ExpectedCount: 1, Input: ledger.TransitionInput{Reason: strings.Repeat("x", contact.MaxReasonLen+1)}}, kernel.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head, _ := e.Events.Head(t.Context())
			items, err := e.Svc.Bulk(t.Context(), ledgertest.Workspace, ledgertest.Meta("req-b"), tc.req)
			if got := kernel.ErrorCode(err); got != tc.code || items != nil {
				t.Fatalf("got %v (code %q), %d items; want code %q and no items", err, got, len(items), tc.code)
			}
			if after, _ := e.Events.Head(t.Context()); after != head {
				t.Fatalf("the log moved from %v to %v", head, after)
			}
		})
	}
	if !errors.Is(ledger.BulkRequest{Action: ledger.Trash, IDs: []string{id}, ExpectedCount: 3}.Validate(), ledger.ErrCountMismatch) {
		t.Fatal("a count mismatch is not ErrCountMismatch")
	}
}

// TestBulkItemsFailOnTheirOwn trashes a mix of contacts: a malformed id,
// an unknown contact, a protected one and a contact already in trash each
// fail on their own, in the request's order, while the others move, every
// event naming the request's operation.
func TestBulkItemsFailOnTheirOwn(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	a, b := e.Create(t, "Ann", ""), e.Create(t, "Bob", "")
	gone := e.Create(t, "Cid", "")
	e.Move(t, gone, ledger.Trash)
	crm, err := e.Svc.Create(ctx, ledgertest.Workspace, ledgertest.Meta("req-crm"), contact.Draft{Personal: contact.Personal{Name: "Dee"}, Source: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	unknown := contact.NewID()
	ids := []string{a.String(), "not-an-id", unknown.String(), crm.Contact.ID.String(), gone.String(), strings.ToLower(b.String())}
	items, err := e.Svc.Bulk(ctx, ledgertest.Workspace, ledgertest.Meta("req-bulk"), ledger.BulkRequest{Action: ledger.Trash, IDs: ids, ExpectedCount: len(ids)})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id     string
		reason string // the error's reason; "" for none
	}{
		{a.String(), ""}, {"not-an-id", "invalid-id"}, {unknown.String(), kernel.ErrNotFound.Reason},
		{crm.Contact.ID.String(), contact.ErrProtectedSource.Reason}, {gone.String(), contact.ErrTransition.Reason}, {b.String(), ""},
	}
	for i, w := range want {
		it := items[i]
		var ce *kernel.Error
		got := ""
		if errors.As(it.Err, &ce) {
			got = ce.Reason
		} else if it.Err != nil {
			got = it.Err.Error()
		}
		if it.ID != w.id || got != w.reason {
			t.Errorf("item %d: id %s, err %v (reason %q); want id %s, reason %q", i, it.ID, it.Err, got, w.id, w.reason)
		}
		if w.reason == "" && (it.Result.Operation != "bulk:req-bulk" || it.Result.Contact.State != contact.StateTrashed) {
			t.Errorf("item %d: operation %q, state %s; want bulk:req-bulk, trashed", i, it.Result.Operation, it.Result.Contact.State)
		}
	}
	for _, id := range []contact.ID{a, b} {
		if r := lastEvent(t, e, id); r.Type != contact.TypeTrashed || r.CausationID != "bulk:req-bulk" || r.CorrelationID != "req-bulk" {
			t.Errorf("%s: last event %s caused by %q; want trashed by bulk:req-bulk", id, r.Type, r.CausationID)
		}
	}
	if trash := e.ViewIDs(t, "trash"); len(trash) != 3 || !containsAll(trash, []contact.ID{a, b, gone}) {
		t.Errorf("trash: %v; want %s, %s, %s", trash, a, b, gone)
	}
}

// TestBulkPurgeDestroysKeys purges in bulk, more contacts than one chunk
// loads: each gets its tombstone and loses its data key, and a dry run
// before changes nothing.
func TestBulkPurgeDestroysKeys(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{NoRunner: true})
	ctx := t.Context()
	const n = 130
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.Create(t, "P"+strings.Repeat("x", i%7), "").String()
	}
	trash, err := e.Svc.Bulk(ctx, ledgertest.Workspace, ledgertest.Meta("req-trash"), ledger.BulkRequest{Action: ledger.Trash, IDs: ids, ExpectedCount: n})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range trash {
		if it.Err != nil {
			t.Fatalf("trash %s: %v", it.ID, it.Err)
		}
	}
	req := ledger.BulkRequest{Action: ledger.Purge, IDs: ids, ExpectedCount: n, Input: ledger.TransitionInput{Reason: "request", Request: "DSR-9"}}
	dry := ledgertest.Meta("req-dry")
	dry.DryRun = true
	head, _ := e.Events.Head(ctx)
	items, err := e.Svc.Bulk(ctx, ledgertest.Workspace, dry, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Err != nil || !it.Result.DryRun || !it.Result.Effect.KeyDestroyed || it.Result.Effect.To != contact.StatePurged {
			t.Fatalf("dry run of %s: %+v, %v", it.ID, it.Result.Effect, it.Err)
		}
	}
	if after, _ := e.Events.Head(ctx); after != head {
		t.Fatalf("a dry run moved the log from %v to %v", head, after)
	}
	items, err = e.Svc.Bulk(ctx, ledgertest.Workspace, ledgertest.Meta("req-purge"), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Err != nil || it.Result.EventID == "" || it.Result.Contact.Tombstone == nil || it.Result.Contact.Tombstone.EventID != it.Result.EventID {
			t.Fatalf("purge of %s: %+v, %v", it.ID, it.Result, it.Err)
		}
		id, _ := contact.ParseID(it.ID)
		if k, err := e.Vault.ContactKey(ctx, ledgertest.Workspace, id); err != nil || !k.Destroyed {
			t.Fatalf("key of %s after a purge: destroyed %v, %v", id, k.Destroyed, err)
		}
	}
}
