package eventstoredb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// conn holds the store's client and works around two hazards of
// EventStore-Client-Go v4:
//
//   - A client whose node discovery fails (the server is down at start, or
//     for more than a second or two while it reconnects) closes itself for
//     good: every later call fails with ErrorCodeConnectionClosed. conn then
//     retires that client and dials a new one for the next call.
//   - Closing a client while calls run on it can panic (they send on the
//     channel Close closes), and a few of its calls can block regardless of
//     their context. conn counts the calls running on each client and closes
//     a client only once none are left, never under a call.
type conn struct {
	dial Dialer
	log  *slog.Logger

	mu      sync.Mutex
	cur     *generation
	live    map[*generation]bool // clients not closed yet
	closed  bool
	changed chan struct{} // closed and replaced whenever a call ends
}

// generation is one client and the calls running on it.
type generation struct {
	c       Client
	n       int  // calls running
	retired bool // replaced; close once n == 0
	done    bool // closed
}

// errClosed is returned by every call after Close.
var errClosed = errors.New("eventstoredb: the store is closed")

func newConn(dial Dialer, log *slog.Logger) *conn {
	return &conn{dial: dial, log: log, live: map[*generation]bool{}, changed: make(chan struct{})}
}

// acquire returns the current client, dialling one if there is none, and
// counts a call on it. Every acquire is paired with a release.
func (h *conn) acquire() (*generation, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errClosed
	}
	if h.cur == nil {
		c, err := h.dial()
		if err != nil {
			return nil, fmt.Errorf("eventstoredb: new client: %w", err)
		}
		h.cur = &generation{c: c}
		h.live[h.cur] = true
	}
	h.cur.n++
	return h.cur, nil
}

// release ends a call on g. A call that failed because the client closed
// itself retires it: the next acquire dials a new client, and g is closed as
// soon as no call runs on it.
func (h *conn) release(g *generation, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	g.n--
	if !h.closed && g == h.cur && hasCode(err, esdb.ErrorCodeConnectionClosed) {
		g.retired, h.cur = true, nil
		h.log.Warn("eventstoredb client gave up connecting; the next call uses a new client")
	}
	if (g.retired || h.closed) && g.n == 0 {
		h.closeLocked(g)
	}
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *conn) closeLocked(g *generation) {
	if g.done {
		return
	}
	g.done = true
	delete(h.live, g)
	_ = g.c.Close() // always nil
}

// shut refuses new calls; the running ones go on.
func (h *conn) shut() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
}

// waitIdle waits up to wait until no call runs, and reports whether none does.
func (h *conn) waitIdle(wait time.Duration) bool {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		busy := 0
		for g := range h.live {
			busy += g.n
		}
		changed := h.changed
		h.mu.Unlock()
		if busy == 0 {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}

// closeIdle closes every client no call runs on. A client with calls stuck
// in it is left open rather than risk a panic, and reported.
func (h *conn) closeIdle() {
	h.mu.Lock()
	defer h.mu.Unlock()
	busy := 0
	for g := range h.live {
		if g.n == 0 {
			h.closeLocked(g)
		} else {
			busy += g.n
		}
	}
	if busy > 0 {
		h.log.Warn("eventstoredb: calls still blocked in the client at close; leaving it open", "calls", busy)
	}
}

// call runs fn on the current client and returns its error, or ctx's as
// soon as ctx ends even when the client ignores it (fn then finishes in the
// background and its results are dropped). A result that arrives together
// with the end of ctx wins.
func (s *Store) call(ctx context.Context, fn func(ctx context.Context, c Client) error) error {
	g, err := s.conn.acquire()
	if err != nil {
		return err
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		err := fn(ctx, g.c)
		s.conn.release(g, err)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done:
			return err
		default:
			return s.ctxErr(ctx)
		}
	}
}

// opContext derives a context for one operation that Close cancels too
// (once its grace period is over).
func (s *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return withStop(ctx, s.calls)
}

func withStop(ctx, stopper context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(stopper, cancel)
	return ctx, func() { stop(); cancel() }
}

// ctxErr returns why an operation's context ended: errClosed when the store
// was closed, else the caller's error.
func (s *Store) ctxErr(ctx context.Context) error {
	if s.calls.Err() != nil || s.subsCtx.Err() != nil {
		return errClosed
	}
	return ctx.Err()
}
