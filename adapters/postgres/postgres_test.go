package postgres_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/postgres"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/contactledger/ledger/internal/storetest"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
)

func open(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type reopenable struct {
	*postgres.Store
	url string
}

func TestEventStore(t *testing.T) {
	storetest.RunEventStore(t, storetest.EventStoreHarness{
		New: func(t *testing.T) kernel.EventStore {
			url := pgtest.URL(t)
			return reopenable{open(t, url), url}
		},
		Reopen: func(t *testing.T, s kernel.EventStore) kernel.EventStore {
			r := s.(reopenable)
			r.Close()
			return reopenable{open(t, r.url), r.url}
		},
	})
}

func TestStateStore(t *testing.T) {
	storetest.RunStateStore(t, storetest.StateStoreHarness{
		New: func(t *testing.T) projections.StateStore { return open(t, pgtest.URL(t)) },
	})
}

func TestWebhookStore(t *testing.T) {
	// One database for the whole suite, emptied before each case: creating
	// a database per case holds back every reader's stable head in the
	// cluster while it runs.
	s := open(t, pgtest.URL(t))
	storetest.RunWebhookStore(t, storetest.WebhookStoreHarness{
		New: func(t *testing.T) ledger.WebhookStore {
			if _, err := s.Pool().Exec(context.Background(), `TRUNCATE webhooks, webhook_progress, webhook_pending, webhook_attempts, webhook_erasures`); err != nil {
				t.Fatal(err)
			}
			return s
		},
	})
}

// TestPositionsOrderNumerically crosses a power of ten in transaction ids
// between two appends: positions must order as numbers ("999" < "1000"),
// in reads of the log and in Head.
func TestPositionsOrderNumerically(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.URL(t))
	a := contact.NewID().Stream()
	if _, err := s.Append(ctx, a, 0, storetest.Recs("ws", a, 0, 1)); err != nil {
		t.Fatal(err)
	}
	first, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(10)
	for next <= first.Commit {
		next *= 10
	}
	if next-first.Commit > 200_000 {
		t.Skipf("transaction id %d is too far from the next power of ten", first.Commit)
	}
	for {
		var xid string
		if err := s.Pool().QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&xid); err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.ParseUint(xid, 10, 64); n >= next {
			break
		}
	}
	b := contact.NewID().Stream()
	last, err := s.Append(ctx, b, 0, storetest.Recs("ws", b, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	// Other tests' transactions on the same server may hold readers back a
	// moment (that is the rule that makes the order safe): wait for both.
	var all []kernel.Record
	for deadline := time.Now().Add(20 * time.Second); len(all) < 2 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if all, err = s.ReadAll(ctx, kernel.Position{}, 10); err != nil {
			t.Fatal(err)
		}
	}
	if len(all) != 2 || all[0].Stream != a || all[1].Stream != b {
		t.Fatalf("got %v, want %s then %s", all, first, last)
	}
	if head, _ := s.Head(ctx); head != last {
		t.Fatalf("head: got %s, want %s", head, last)
	}
	if rest, _ := s.ReadAll(ctx, first, 10); len(rest) != 1 || rest[0].Stream != b {
		t.Fatalf("read after %s: got %v, want the second event", first, rest)
	}
}
