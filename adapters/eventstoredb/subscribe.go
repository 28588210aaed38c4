package eventstoredb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// subscribeBatch is how many events a subscriber gets at most at once.
const subscribeBatch = 500

// filter selects the contact streams on the server, so that the events of
// other streams never cross the network. The type must be set: the zero
// value filters on event types.
func filter() *esdb.SubscriptionFilter {
	return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{contact.StreamPrefix}}
}

// Subscribe delivers batches of contact events after from, in global order,
// as they are committed, until ctx ends or handle fails. It subscribes to
// $all with a server-side stream-prefix filter; when the subscription drops
// (connection lost, leader change, server restart) it subscribes again,
// after a growing pause, from the last event handle accepted, or from the
// last checkpoint the server sent if that is newer. Positions are exclusive,
// so nothing is lost or repeated. It returns handle's error, ctx's, or an
// error that retrying can't cure (access refused, a from that is not a
// position of this log).
func (s *Store) Subscribe(ctx context.Context, from kernel.Position, handle func(context.Context, []kernel.Record) error) error {
	s.subs.Add(1)
	defer s.subs.Done()
	ctx, cancel := withStop(ctx, s.subsCtx)
	defer cancel()
	sub := &subscriber{s: s, handle: handle, delivered: from, resume: from}
	b := s.newBackoff()
	for {
		healthy, err := sub.run(ctx)
		if ctx.Err() != nil {
			return s.ctxErr(ctx)
		}
		var fatal fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		if healthy {
			b.reset()
		}
		d := b.next()
		s.log.Warn("eventstoredb subscription dropped; resubscribing", "from", sub.resume.String(), "retry_in", d, "err", err)
		if err := s.sleep(ctx, d); err != nil {
			return s.ctxErr(ctx)
		}
	}
}

// fatalError ends Subscribe: retrying can't help.
type fatalError struct{ err error }

func (f fatalError) Error() string { return f.err.Error() }

// subscriber is the state of one Subscribe call across its subscriptions.
type subscriber struct {
	s      *Store
	handle func(context.Context, []kernel.Record) error
	// delivered is the position of the last event handle accepted (or from).
	delivered kernel.Position
	// resume is where the next subscription starts: delivered, or a newer
	// checkpoint (every contact event up to it has been delivered).
	resume kernel.Position
}

// run makes one subscription and pumps it until it drops. healthy reports
// whether it got anywhere (events, a checkpoint or catching up), which
// resets the backoff.
func (sub *subscriber) run(ctx context.Context) (healthy bool, err error) {
	g, err := sub.s.conn.acquire()
	if err != nil {
		if errors.Is(err, errClosed) {
			return false, fatalError{err}
		}
		return false, err
	}
	var res error
	defer func() { sub.s.conn.release(g, res) }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var es Subscription
	opened := make(chan error, 1)
	go func() {
		var err error
		es, err = g.c.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: fromPosition(sub.resume), Filter: filter()})
		opened <- err
	}()
	select {
	case res = <-opened:
	case <-ctx.Done():
		// The client ignores ctx while it discovers nodes; leave it behind.
		go func() {
			if <-opened == nil {
				es.Close()
			}
		}()
		return false, ctx.Err()
	}
	if res != nil {
		err := translate(ctx, "subscribe to $all from "+sub.resume.String(), res)
		if errors.Is(err, ErrAccess) {
			return false, fatalError{err}
		}
		return false, err
	}
	defer es.Close()

	return sub.pump(ctx, receive(ctx, es))
}

// receive passes the subscription's messages on until it drops or ctx ends.
func receive(ctx context.Context, es Subscription) <-chan *esdb.SubscriptionEvent {
	msgs := make(chan *esdb.SubscriptionEvent, subscribeBatch)
	go func() {
		for {
			m := es.Recv()
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
			if m.SubscriptionDropped != nil {
				return
			}
		}
	}()
	return msgs
}

// pump delivers the subscription's contact events in batches until it
// drops: a batch goes to handle when it is full, when nothing more is
// waiting, and before a checkpoint, catching up or a drop is acted on.
func (sub *subscriber) pump(ctx context.Context, msgs <-chan *esdb.SubscriptionEvent) (healthy bool, err error) {
	p := &pumped{sub: sub}
	for {
		var m *esdb.SubscriptionEvent
		if len(p.batch) == 0 {
			select {
			case m = <-msgs:
			case <-ctx.Done():
				return p.healthy, ctx.Err()
			}
		} else {
			select {
			case m = <-msgs:
			default: // nothing more for now: deliver what we have
				if err := p.flush(ctx); err != nil {
					return p.healthy, err
				}
				continue
			}
		}
		if done, err := p.take(ctx, m); done || err != nil {
			return p.healthy, err
		}
	}
}

// pumped is the batch a subscription is gathering, and whether it got
// anywhere (events, a checkpoint or catching up).
type pumped struct {
	sub     *subscriber
	batch   []kernel.Record
	healthy bool
}

// flush hands the batch to the subscriber's handler.
func (p *pumped) flush(ctx context.Context) error {
	if len(p.batch) == 0 {
		return nil
	}
	sub := p.sub
	if err := sub.handle(ctx, p.batch); err != nil {
		return fatalError{err}
	}
	last := p.batch[len(p.batch)-1].Position
	sub.delivered = last
	if sub.resume.Less(last) {
		sub.resume = last
	}
	p.batch, p.healthy = nil, true
	return nil
}

// take acts on one message; done reports that the subscription dropped.
func (p *pumped) take(ctx context.Context, m *esdb.SubscriptionEvent) (done bool, err error) {
	sub := p.sub
	switch {
	case m.EventAppeared != nil:
		e := m.EventAppeared.OriginalEvent()
		if e == nil || !isContactEvent(e.StreamID, e.EventType) {
			return false, nil // a $streamDeleted tombstone, or a stream the filter let through
		}
		r, err := decode(e)
		if err != nil {
			return false, fatalError{fmt.Errorf("subscription: %w", err)}
		}
		if !sub.resume.Less(r.Position) {
			return false, nil // at or before where we resumed: already delivered
		}
		p.batch = append(p.batch, r)
		if len(p.batch) >= subscribeBatch {
			return false, p.flush(ctx)
		}
	case m.CheckPointReached != nil:
		// Every contact event up to the checkpoint has come; once
		// those are delivered it is a safe place to resume from, and
		// saves scanning other streams' events again after a drop.
		if err := p.flush(ctx); err != nil {
			return false, err
		}
		if cp := toPosition(*m.CheckPointReached); sub.resume.Less(cp) {
			sub.resume = cp
		}
		p.healthy = true
	case m.CaughtUp != nil:
		if err := p.flush(ctx); err != nil {
			return false, err
		}
		p.healthy = true
		sub.s.log.Debug("eventstoredb subscription is live", "at", sub.resume.String())
	case m.FellBehind != nil:
		sub.s.log.Info("eventstoredb subscription fell behind; catching up", "at", sub.resume.String())
	case m.SubscriptionDropped != nil:
		if err := p.flush(ctx); err != nil {
			return false, err
		}
		return true, sub.dropped(ctx, m.SubscriptionDropped.Error)
	}
	return false, nil
}

// dropped classifies why a subscription dropped.
func (sub *subscriber) dropped(ctx context.Context, err error) error {
	if err == nil {
		err = io.EOF
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	switch status.Code(err) {
	case codes.InvalidArgument:
		// The server can't start at resume. When resume is a checkpoint,
		// fall back to the last delivered event; when that is where we
		// are, the caller gave a position that is not in this log.
		if sub.resume != sub.delivered {
			sub.resume = sub.delivered
			return fmt.Errorf("subscription from a checkpoint refused: %w", err)
		}
		return fatalError{fmt.Errorf("subscribe to $all from %s: not a position of this log: %w", sub.resume, err)}
	case codes.PermissionDenied, codes.Unauthenticated:
		return fatalError{fmt.Errorf("subscribe to $all: %w: %w", ErrAccess, err)}
	}
	return fmt.Errorf("subscription dropped: %w", err)
}

// backoff is an exponential pause with up to 25% jitter, so that many
// subscribers don't all come back at the same instant.
type backoff struct {
	first, max, cur time.Duration
	jitter          func(time.Duration) time.Duration
}

func (s *Store) newBackoff() *backoff {
	return &backoff{first: s.opts.Backoff, max: s.opts.MaxBackoff, jitter: func(d time.Duration) time.Duration {
		return time.Duration(rand.Int64N(int64(d)/4 + 1))
	}}
}

// next returns the next pause.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.first
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur + b.jitter(b.cur)
}

// reset starts again from the first pause.
func (b *backoff) reset() { b.cur = 0 }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
