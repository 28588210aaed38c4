package sqlite_test

import (
	"context"
	"testing"

	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/storetest"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
)

func open(t *testing.T, dir string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestEventStore(t *testing.T) {
	storetest.RunEventStore(t, storetest.EventStoreHarness{
		New: func(t *testing.T) kernel.EventStore { return open(t, t.TempDir()) },
		Reopen: func(t *testing.T, s kernel.EventStore) kernel.EventStore {
			st := s.(*sqlite.Store)
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, dirOf(st))
		},
		Features: storetest.Features{DensePositions: true},
	})
}

func TestStateStore(t *testing.T) {
	storetest.RunStateStore(t, storetest.StateStoreHarness{
		New: func(t *testing.T) projections.StateStore { return open(t, t.TempDir()) },
	})
}

func TestWebhookStore(t *testing.T) {
	storetest.RunWebhookStore(t, storetest.WebhookStoreHarness{
		New: func(t *testing.T) ledger.WebhookStore { return open(t, t.TempDir()) },
	})
}

func dirOf(s *sqlite.Store) string {
	p := s.Path()
	return p[:len(p)-len(sqlite.FileName)-1]
}
