package ledger_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/ledgertest"
	"github.com/contactledger/ledger/ledger"
)

// failingBatches is a log whose batched appends fail while fail is set.
type failingBatches struct {
	kernel.EventStore
	fail atomic.Bool
}

var errLogDown = errors.New("the log is down")

func (f *failingBatches) AppendMany(ctx context.Context, batch []kernel.StreamAppend) ([]kernel.AppendResult, error) {
	if f.fail.Load() {
		return nil, errLogDown
	}
	return kernel.AppendMany(ctx, f.EventStore, batch)
}

// TestBatchGivesClaimsBack imports new contacts while the log refuses
// batches, on a log apart from the state store (as EventStoreDB is): their
// emails were claimed in one statement before the append, so the failed
// append gives every claim back at once, and a create of one of those
// emails right after succeeds (a claim left behind would refuse it as
// "being given by a request still running" for minutes).
func TestBatchGivesClaimsBack(t *testing.T) {
	t.Parallel()
	var log *failingBatches
	e := ledgertest.New(t, ledgertest.Options{Events: func(es kernel.EventStore) kernel.EventStore {
		log = &failingBatches{EventStore: es}
		return log
	}})
	ctx := t.Context()
	log.fail.Store(true)
	rows, err := ledger.NewCSVRows(strings.NewReader("name,email,phone\nAnn,ann@example.com,+15550100\nBob,bob@example.com,\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.Import(ctx, ledgertest.Workspace, ledgertest.Meta("req-imp"), "web", rows, func(ledger.RowResult) error { return nil }); !errors.Is(err, errLogDown) {
		t.Fatalf("import on a failing log: %v; want the log's failure", err)
	}
	log.fail.Store(false)
	for _, p := range []contact.Personal{{Name: "Ann", Email: "ann@example.com", Phone: "+15550100"}, {Name: "Bob", Email: "bob@example.com"}} {
		if _, err := e.Svc.Create(ctx, ledgertest.Workspace, ledgertest.Meta("req-"+p.Name), contact.Draft{Personal: p}); err != nil {
			t.Fatalf("create %s after the failed import: %v", p.Name, err)
		}
	}
}

// countedIdentities is an identity index that counts its lookups.
type countedIdentities struct {
	ledger.Identities
	one, many atomic.Int64
}

func (c *countedIdentities) FindIdentities(ctx context.Context, workspace string, q ledger.IdentityQuery) ([]ledger.IdentityMatch, error) {
	c.one.Add(1)
	return c.Identities.FindIdentities(ctx, workspace, q)
}

func (c *countedIdentities) FindIdentitiesMany(ctx context.Context, workspace string, qs []ledger.IdentityQuery) ([][]ledger.IdentityMatch, error) {
	c.many.Add(1)
	return ledger.FindIdentitiesMany(ctx, c.Identities, workspace, qs)
}

// TestBatchLooksIdentitiesUpOnce restores many contacts in one batch: the
// identity index is read once for the whole batch, not once per contact (a
// round trip each), and its answers are each contact's own: the contact
// whose email another contact took while it was in trash is refused,
// naming that contact, and the others are restored. The dry run reads the
// same way and answers the same.
func TestBatchLooksIdentitiesUpOnce(t *testing.T) {
	t.Parallel()
	var idx *countedIdentities
	e := ledgertest.New(t, ledgertest.Options{Identities: func(i ledger.Identities) ledger.Identities {
		idx = &countedIdentities{Identities: i}
		return idx
	}})
	ctx := t.Context()
	if _, err := e.Svc.SetPolicy(ctx, ledgertest.Workspace, contact.PolicySettings{RetentionDays: 30, RestoreRole: kernel.RoleMember, IdentityUniqueness: contact.UniquenessLive}); err != nil {
		t.Fatal(err)
	}
	var ids []contact.ID
	for _, n := range []string{"ann", "bob", "cy", "dee", "eve"} {
		id := e.Create(t, n, n+"@example.com")
		e.Move(t, id, ledger.Trash)
		ids = append(ids, id)
	}
	taker := e.Create(t, "eve2", "eve@example.com") // eve's email, free while eve is in trash
	e.CaughtUp(t)
	for _, dry := range []bool{true, false} {
		idx.one.Store(0)
		idx.many.Store(0)
		m := ledgertest.Meta("req-restore")
		m.DryRun = dry
		_, errs := e.Svc.TransitionMany(ctx, ledgertest.Workspace, ids, m, ledger.Restore, ledger.TransitionInput{Reason: "test"})
		for i, err := range errs[:4] {
			if err != nil {
				t.Fatalf("dry run %v: restore %d: %v", dry, i, err)
			}
		}
		var te *ledger.IdentityTakenError
		if !errors.As(errs[4], &te) || te.Holder != taker {
			t.Fatalf("dry run %v: restore of eve: %v; want her email taken by %s", dry, errs[4], taker)
		}
		if one, many := idx.one.Load(), idx.many.Load(); one != 0 || many != 1 {
			t.Fatalf("dry run %v: %d single and %d batched identity lookups; want 0 and 1", dry, one, many)
		}
	}
}
