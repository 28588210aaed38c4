package eventstoredb_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/eventstoredb"
)

// TestTheRealClientIsReplacedAfterFailedDiscovery uses the real esdb client
// on a port where nothing listens (no server needed): its discovery fails,
// it closes itself for good, and the store must dial a new one rather than
// fail forever once the server is back.
func TestTheRealClientIsReplacedAfterFailedDiscovery(t *testing.T) {
	real, err := eventstoredb.Dial("esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=1&discoveryInterval=10&gossipTimeout=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	s := eventstoredb.New(func() (eventstoredb.Client, error) {
		dials.Add(1)
		return real()
	}, eventstoredb.Options{ConnectTimeout: 300 * time.Millisecond, Backoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 4 {
		if _, err := s.Head(ctx); !errors.Is(err, eventstoredb.ErrUnavailable) {
			t.Fatalf("call %d: got %v, want ErrUnavailable", i, err)
		}
	}
	// Calls 1 and 2 use the first client (discovery fails, then it is
	// closed); call 3 gets a new one, which fails the same way, ...
	if n := dials.Load(); n < 2 {
		t.Fatalf("dialled %d clients in 4 calls, want a new one after the first closed itself", n)
	}
	if err := s.Ping(ctx); !errors.Is(err, eventstoredb.ErrUnavailable) {
		t.Fatalf("ping: got %v, want ErrUnavailable after the connect timeout", err)
	}
}
