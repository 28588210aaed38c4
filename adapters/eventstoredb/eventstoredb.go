// Package eventstoredb keeps the log in EventStoreDB / KurrentDB, through
// EventStore-Client-Go v4 (package esdb), for deployments that need a
// clustered, replicated log. The read models, checkpoints and keys stay in
// a state store (PostgreSQL, or the embedded store for a trial).
//
// One stream per contact (contact-<ULID>), so EventStoreDB's $ce-contact
// category and a stream-prefix filter on $all select exactly the ledger's
// events. See codec.go for how a record maps to an event, errors.go for how
// errors map to the domain's, and conn.go for the client's lifecycle.
package eventstoredb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/contactledger/ledger/domain/kernel"
)

var _ kernel.EventStore = (*Store)(nil)

// Options tune a Store; the zero value is the default.
type Options struct {
	Logger *slog.Logger
	// ConnectTimeout bounds how long Open waits for the server to answer
	// (default 30 s): it may still be starting.
	ConnectTimeout time.Duration
	// Backoff is the first pause before a dropped subscription is retried
	// (default 100 ms); it doubles up to MaxBackoff (default 5 s).
	Backoff, MaxBackoff time.Duration
	// CloseTimeout bounds how long Close waits for calls that are stuck in
	// the client (default 5 s).
	CloseTimeout time.Duration
}

// Store is the log in EventStoreDB. Open it with Open (or New); Close it when done.
type Store struct {
	conn *conn
	log  *slog.Logger
	opts Options

	// Close ends subscriptions at once, and calls after a grace period.
	subsCtx   context.Context
	stopSubs  context.CancelFunc
	calls     context.Context
	stopCalls context.CancelFunc
	subs      sync.WaitGroup // running subscriptions
	close     sync.Once

	// owners caches the workspace of each stream, which its first event fixes for good.
	mu     sync.Mutex
	owners map[string]string
	// sleep waits between subscription attempts; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
}

// maxOwners bounds the stream-to-workspace cache.
const maxOwners = 10000

// New returns a store on the clients dial makes, without contacting the server.
func New(dial Dialer, o Options) *Store {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 5 * time.Second
	}
	s := &Store{conn: newConn(dial, o.Logger), log: o.Logger, opts: o, owners: map[string]string{}, sleep: sleepCtx}
	s.subsCtx, s.stopSubs = context.WithCancel(context.Background())
	s.calls, s.stopCalls = context.WithCancel(context.Background())
	return s
}

// Open connects to the server that url names (esdb://host:2113?tls=false,
// esdb://user:pass@host1,host2,host3?tlsCAFile=..., esdb+discover://...) and
// waits until it answers a read of $all, which the store needs rights for.
func Open(ctx context.Context, url string, o Options) (*Store, error) {
	dial, err := Dial(url, o.Logger)
	if err != nil {
		return nil, err
	}
	s := New(dial, o)
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Ping waits until the server answers a read of $all, up to ConnectTimeout.
// Errors: ErrAccess when the user may not read $all.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ConnectTimeout)
	defer cancel()
	b := s.newBackoff()
	var last error // the last failure that was the server's, not the timeout's
	for {
		_, err := s.Head(ctx)
		if err == nil || errors.Is(err, ErrAccess) {
			return err
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("eventstoredb did not answer in %s: %w", s.opts.ConnectTimeout, last)
		}
		s.log.Info("waiting for eventstoredb", "err", err)
		if s.sleep(ctx, b.next()) != nil {
			return fmt.Errorf("eventstoredb did not answer in %s: %w", s.opts.ConnectTimeout, last)
		}
	}
}

// Close ends the subscriptions, refuses new calls, lets the calls in flight
// finish (up to CloseTimeout, then cancels them), and closes the client.
func (s *Store) Close() error {
	s.close.Do(func() {
		s.stopSubs()
		done := make(chan struct{})
		go func() { s.subs.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(s.opts.CloseTimeout):
			s.log.Warn("eventstoredb: subscriptions still running at close")
		}
		s.conn.shut()
		if !s.conn.waitIdle(s.opts.CloseTimeout) {
			s.stopCalls()
			s.conn.waitIdle(time.Second)
		}
		s.conn.closeIdle()
	})
	return nil
}

var _ kernel.BatchAppender = (*Store)(nil)

// AppendMany appends to many streams (see kernel.BatchAppender).
// EventStoreDB has no transaction across streams: the appends are sent
// concurrently (gRPC multiplexes them on the client's connection), each
// checked against its own expected revision, with one result per stream.
func (s *Store) AppendMany(ctx context.Context, batch []kernel.StreamAppend) ([]kernel.AppendResult, error) {
	return kernel.AppendEach(ctx, batch, s.Append)
}

// Append appends events to stream if it is at version expected (0: it must
// not exist), atomically, and returns the $all position of the last one.
// Errors: kernel.ErrConcurrency when the stream is at another version;
// kernel.ErrNotFound when the stream belongs to another workspace;
// ErrUnavailable when the outcome is unknown (retry it as is).
func (s *Store) Append(ctx context.Context, stream string, expected uint64, events []kernel.Record) (kernel.Position, error) {
	if err := kernel.Validate(stream, expected, events); err != nil {
		return kernel.Position{}, err
	}
	ws := events[0].Workspace
	data := make([]esdb.EventData, len(events))
	for i, r := range events {
		if r.Workspace != ws {
			return kernel.Position{}, fmt.Errorf("append to %s: event %d is of workspace %s, not %s", stream, i, r.Workspace, ws)
		}
		var err error
		if data[i], err = encode(r); err != nil {
			return kernel.Position{}, fmt.Errorf("append to %s: %w", stream, err)
		}
	}
	if expected > 0 {
		owner, err := s.owner(ctx, stream)
		if errors.Is(err, kernel.ErrNotFound) {
			return kernel.Position{}, fmt.Errorf("append to %s: %w", stream,
				kernel.Errorf(kernel.ErrConcurrency, "stream does not exist, not at version %d", expected))
		}
		if err != nil {
			return kernel.Position{}, err
		}
		if owner != ws {
			return kernel.Position{}, fmt.Errorf("append to %s: %w", stream, kernel.ErrNotFound)
		}
	}
	var res *esdb.WriteResult
	op := fmt.Sprintf("append to %s at version %d", stream, expected)
	err := s.call(ctx, func(ctx context.Context, c Client) error {
		var err error
		res, err = c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: expectedRevision(expected)}, data...)
		return translate(ctx, op, err)
	})
	if err != nil {
		return kernel.Position{}, err
	}
	if expected == 0 {
		s.remember(stream, ws)
	}
	return toPosition(esdb.Position{Commit: res.CommitPosition, Prepare: res.PreparePosition}), nil
}

// owner returns the workspace of stream's first event. Errors: kernel.ErrNotFound.
func (s *Store) owner(ctx context.Context, stream string) (string, error) {
	s.mu.Lock()
	ws, ok := s.owners[stream]
	s.mu.Unlock()
	if ok {
		return ws, nil
	}
	recs, err := s.read(ctx, stream, esdb.Start{}, 1)
	if err != nil {
		return "", err
	}
	s.remember(stream, recs[0].Workspace)
	return recs[0].Workspace, nil
}

func (s *Store) remember(stream, ws string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.owners) >= maxOwners {
		for k := range s.owners { // drop an arbitrary entry
			delete(s.owners, k)
			break
		}
	}
	s.owners[stream] = ws
}

// ReadStream returns the events of stream in workspace, in version order.
// Errors: kernel.ErrNotFound when the workspace has no such stream.
func (s *Store) ReadStream(ctx context.Context, workspace, stream string) ([]kernel.Record, error) {
	recs, err := s.read(ctx, stream, esdb.Start{}, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	if recs[0].Workspace != workspace {
		return nil, fmt.Errorf("read %s: %w", stream, kernel.ErrNotFound)
	}
	s.remember(stream, recs[0].Workspace)
	return recs, nil
}

// ReadStreamAfter returns the events of stream in workspace with a version
// above after (the event numbered after, as versions count from 1).
func (s *Store) ReadStreamAfter(ctx context.Context, workspace, stream string, after uint64) ([]kernel.Record, error) {
	recs, err := s.read(ctx, stream, esdb.Revision(after), math.MaxInt64)
	if errors.Is(err, kernel.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if recs[0].Workspace != workspace {
		return nil, nil
	}
	return recs, nil
}

// read returns up to count events of stream from a position on.
func (s *Store) read(ctx context.Context, stream string, from esdb.StreamPosition, count uint64) ([]kernel.Record, error) {
	var out []kernel.Record
	op := "read " + stream
	err := s.call(ctx, func(ctx context.Context, c Client) error {
		rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{From: from}, count)
		if err != nil {
			return translate(ctx, op, err)
		}
		defer rs.Close()
		for {
			ev, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return translate(ctx, op, err)
			}
			e := ev.OriginalEvent()
			// A stream read by name takes any of the ledger's streams
			// (contacts', restore jobs'); only the server's own events are skipped.
			if e == nil || strings.HasPrefix(e.EventType, "$") {
				continue
			}
			r, err := decode(e)
			if err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			out = append(out, r)
		}
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w", op, kernel.ErrNotFound)
	}
	return out, nil
}

// readPage bounds how many events of $all one read asks for.
const readPage = 1024

// ReadAll returns up to limit events of contact streams after from, in
// global order. Events of other streams, and system events, are skipped.
func (s *Store) ReadAll(ctx context.Context, from kernel.Position, limit int) ([]kernel.Record, error) {
	var out []kernel.Record
	after := from
	for len(out) < limit {
		count := uint64(min(max(limit-len(out), 128), readPage))
		var got uint64
		var last kernel.Position
		op := "read all from " + after.String()
		err := s.call(ctx, func(ctx context.Context, c Client) error {
			rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{From: fromPosition(after)}, count)
			if err != nil {
				return translate(ctx, op, err)
			}
			defer rs.Close()
			for len(out) < limit {
				ev, err := rs.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return translate(ctx, op, err)
				}
				got++
				e := ev.OriginalEvent()
				pos := toPosition(e.Position)
				last = pos
				// Reading forwards from a position includes the event
				// there; the port's from is exclusive.
				if !after.Less(pos) || !isContactEvent(e.StreamID, e.EventType) {
					continue
				}
				r, err := decode(e)
				if err != nil {
					return fmt.Errorf("%s: %w", op, err)
				}
				out = append(out, r)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if got < count || !after.Less(last) {
			break // the end of the log
		}
		after = last
	}
	return out, nil
}

// Head returns the position of the newest event of a contact stream (the
// zero Position when there is none). Projections only ever reach contact
// events, so a head on a system event would never be reached.
func (s *Store) Head(ctx context.Context) (kernel.Position, error) {
	var from esdb.AllPosition = esdb.End{}
	var before *kernel.Position
	count := uint64(32)
	for {
		var got uint64
		var last kernel.Position
		var head *kernel.Position
		op := "head"
		err := s.call(ctx, func(ctx context.Context, c Client) error {
			rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: from}, count)
			if err != nil {
				return translate(ctx, op, err)
			}
			defer rs.Close()
			for {
				ev, err := rs.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return translate(ctx, op, err)
				}
				got++
				e := ev.OriginalEvent()
				pos := toPosition(e.Position)
				last = pos
				if before != nil && !pos.Less(*before) {
					continue // whether a backwards read includes its start differs between versions
				}
				if isContactEvent(e.StreamID, e.EventType) {
					head = &pos
					return nil
				}
			}
		})
		if err != nil {
			return kernel.Position{}, err
		}
		if head != nil {
			return *head, nil
		}
		if got < count || (before != nil && !last.Less(*before)) || last.IsZero() {
			return kernel.Position{}, nil // the start of the log
		}
		before, from = &last, esdb.Position{Commit: last.Commit, Prepare: last.Prepare}
		count = min(count*2, readPage)
	}
}
