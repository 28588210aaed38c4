package eventstoredb_test

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/contactledger/ledger/adapters/eventstoredb"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/storetest"
)

// serverURL returns the connection string of a real EventStoreDB/KurrentDB
// server to test against, or skips the test. It skips under CI too: no
// machine of this project can run the server (see the README).
func serverURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("LEDGER_TEST_ESDB_URL")
	if url == "" {
		t.Skip("LEDGER_TEST_ESDB_URL is not set: this test needs a real EventStoreDB/KurrentDB server " +
			"(e.g. docker compose --profile kurrent up -d kurrentdb, then LEDGER_TEST_ESDB_URL=esdb://localhost:2113?tls=false)")
	}
	return url
}

func open(t *testing.T, url string) *eventstoredb.Store {
	t.Helper()
	s, err := eventstoredb.Open(context.Background(), url, eventstoredb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestEventStore runs the event-store contract suite against a real server.
// The server's log can't be emptied, so every test uses new streams and
// the suite checks behaviour relative to the head it finds.
func TestEventStore(t *testing.T) {
	url := serverURL(t)
	storetest.RunEventStore(t, storetest.EventStoreHarness{
		New: func(t *testing.T) kernel.EventStore { return open(t, url) },
		Reopen: func(t *testing.T, s kernel.EventStore) kernel.EventStore {
			if err := s.(*eventstoredb.Store).Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, url)
		},
		Features: storetest.Features{SharedLog: true, NoLogReader: true, NoStreamReader: true},
	})
}

// TestEventStoreOnFakeClient runs the contract suite against the adapter on
// the in-memory fake client (fake_test.go). It is NOT the contract run
// against the real engine (TestEventStore is): it checks the adapter's own
// logic — paging, filtering, workspace scoping, subscriptions — against a
// model of the server's semantics.
func TestEventStoreOnFakeClient(t *testing.T) {
	// The suite's cases run in parallel, each making its stores here.
	var mu sync.Mutex
	logs := map[kernel.EventStore]*fakeLog{}
	newStore := func(t *testing.T, l *fakeLog) kernel.EventStore {
		d := &fakeDialer{log: l}
		s := eventstoredb.New(d.dial, eventstoredb.Options{})
		t.Cleanup(func() { s.Close() })
		mu.Lock()
		logs[s] = l
		mu.Unlock()
		return s
	}
	storetest.RunEventStore(t, storetest.EventStoreHarness{
		New: func(t *testing.T) kernel.EventStore { return newStore(t, newFakeLog()) },
		Reopen: func(t *testing.T, s kernel.EventStore) kernel.EventStore {
			s.(*eventstoredb.Store).Close()
			mu.Lock()
			l := logs[s]
			mu.Unlock()
			return newStore(t, l)
		},
		// The audit log and rebuilds fall back to ReadAll on this store.
		Features: storetest.Features{NoLogReader: true, NoStreamReader: true},
	})
}

// TestEventStoreOnFakeClientSharedLog runs the suite as it runs against a
// real server: every store on one log that already holds events, so the
// suite's shared-log checks run here too.
func TestEventStoreOnFakeClientSharedLog(t *testing.T) {
	l := newFakeLog()
	newStore := func(t *testing.T) kernel.EventStore {
		d := &fakeDialer{log: l}
		s := eventstoredb.New(d.dial, eventstoredb.Options{})
		t.Cleanup(func() { s.Close() })
		return s
	}
	earlier := newStore(t)
	for range 3 {
		st := contact.NewID().Stream()
		if _, err := earlier.Append(context.Background(), st, 0, storetest.Recs("ws-earlier", st, 0, 2)); err != nil {
			t.Fatal(err)
		}
	}
	l.add("orders-1", "OrderPlaced")
	storetest.RunEventStore(t, storetest.EventStoreHarness{
		New: newStore,
		Reopen: func(t *testing.T, s kernel.EventStore) kernel.EventStore {
			s.(*eventstoredb.Store).Close()
			return newStore(t)
		},
		Features: storetest.Features{SharedLog: true, NoLogReader: true, NoStreamReader: true},
	})
}
