// Package logtail is the subscription loop the SQL stores share: read the
// log after a position, hand the batch over, and wait for the next append.
// Several subscribers at the same position (every projection follows the
// same log) share one read of it.
package logtail

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
)

// Batch is how many events a subscriber gets at most at once.
const Batch = 500

// ErrClosed is returned when the store closes under a subscription.
var ErrClosed = errors.New("store is closed")

// Tail follows a store's log for its subscribers.
type Tail struct {
	// Read returns up to limit events after from, in global order, as the
	// store's ReadAll does: what it returns is always a prefix of the log after from.
	Read func(ctx context.Context, from kernel.Position, limit int) ([]kernel.Record, error)
	// Poll is how long a subscriber waits for a wake-up before it reads anyway.
	Poll time.Duration
	// Closed ends every subscription when it is closed.
	Closed <-chan struct{}

	mu     sync.Mutex
	wake   chan struct{}
	recent []read
}

// read is one recent read of the log, which others at the same position may reuse.
type read struct {
	from kernel.Position
	recs []kernel.Record
	at   time.Time
}

// reuseFor is how long a read serves other subscribers at its position:
// long enough for every projection woken by one append to share it.
const reuseFor = 100 * time.Millisecond

// Wake wakes every subscriber waiting for events, after an append.
func (t *Tail) Wake() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.wake != nil {
		close(t.wake)
		t.wake = nil
	}
}

func (t *Tail) signal() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.wake == nil {
		t.wake = make(chan struct{})
	}
	return t.wake
}

// next reads the events after from, reusing a subscriber's read of the same
// position made a moment ago. A reused read is a prefix of the log after
// from, so a subscriber never skips an event; it reads again for the rest.
func (t *Tail) next(ctx context.Context, from kernel.Position) ([]kernel.Record, error) {
	now := time.Now()
	t.mu.Lock()
	for _, r := range t.recent {
		if r.from == from && now.Sub(r.at) < reuseFor && len(r.recs) > 0 {
			t.mu.Unlock()
			return r.recs, nil
		}
	}
	t.mu.Unlock()
	recs, err := t.Read(ctx, from, Batch)
	if err != nil || len(recs) == 0 {
		return recs, err
	}
	t.mu.Lock()
	kept := t.recent[:0]
	for _, r := range t.recent {
		if now.Sub(r.at) < reuseFor && r.from != from {
			kept = append(kept, r)
		}
	}
	t.recent = append(kept, read{from: from, recs: recs, at: now})
	t.mu.Unlock()
	return recs, nil
}

// Subscribe calls handle with batches of events after from, in global
// order, until ctx ends, the store closes or handle fails. handle must not
// change the records: subscribers share them.
func (t *Tail) Subscribe(ctx context.Context, from kernel.Position, handle func(context.Context, []kernel.Record) error) error {
	for {
		wake := t.signal()
		recs, err := t.next(ctx, from)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if len(recs) > 0 {
			if err := handle(ctx, recs); err != nil {
				return err
			}
			from = recs[len(recs)-1].Position
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-time.After(t.Poll):
		case <-t.Closed:
			return ErrClosed
		}
	}
}
