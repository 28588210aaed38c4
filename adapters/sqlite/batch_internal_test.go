package sqlite

import (
	"context"
	"errors"
	"testing"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/storetest"
)

// TestBatchFallsBackStreamByStream gives a batch a stream whose event
// reuses the id of an event already in the log: the multi-row insert
// fails, and the batch goes stream by stream, so that stream alone fails.
func TestBatchFallsBackStreamByStream(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := contact.NewID().Stream()
	old := storetest.Recs("ws", first, 0, 1)
	if _, err := s.Append(ctx, first, 0, old); err != nil {
		t.Fatal(err)
	}
	dup, a, b := contact.NewID().Stream(), contact.NewID().Stream(), contact.NewID().Stream()
	clash := storetest.Recs("ws", dup, 0, 1)
	clash[0].ID = old[0].ID
	res, err := s.AppendMany(ctx, []kernel.StreamAppend{
		{Stream: a, Expected: 0, Events: storetest.Recs("ws", a, 0, 2)},
		{Stream: dup, Expected: 0, Events: clash},
		{Stream: b, Expected: 0, Events: storetest.Recs("ws", b, 0, 1)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[1].Err == nil || res[2].Err != nil {
		t.Fatalf("got %v, %v, %v; want the clashing stream alone to fail", res[0].Err, res[1].Err, res[2].Err)
	}
	if _, err := s.ReadStream(ctx, "ws", dup); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("the clashing stream was written: %v", err)
	}
	for st, n := range map[string]int{a: 2, b: 1} {
		got, err := s.ReadStream(ctx, "ws", st)
		if err != nil || len(got) != n {
			t.Fatalf("%s: %d events, %v; want %d", st, len(got), err, n)
		}
	}
	if got, _ := s.ReadStream(ctx, "ws", a); got[1].Position != res[0].Position {
		t.Fatalf("a's result at %s, its last event at %s", res[0].Position, got[1].Position)
	}
}
