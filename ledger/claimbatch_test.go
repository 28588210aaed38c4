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
