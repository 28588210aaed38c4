package eventstoredb_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/contactledger/ledger/adapters/eventstoredb"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/storetest"
	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rig is a store on a fake log whose pauses are recorded instead of slept.
type rig struct {
	t      *testing.T
	log    *fakeLog
	dialer *fakeDialer
	s      *eventstoredb.Store
	mu     sync.Mutex
	pauses []time.Duration
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, log: newFakeLog()}
	r.dialer = &fakeDialer{log: r.log}
	r.s = eventstoredb.New(r.dialer.dial, eventstoredb.Options{CloseTimeout: 200 * time.Millisecond})
	r.s.SetSleep(func(ctx context.Context, d time.Duration) error {
		r.mu.Lock()
		r.pauses = append(r.pauses, d)
		r.mu.Unlock()
		return ctx.Err()
	})
	t.Cleanup(func() { r.s.Close() })
	return r
}

func (r *rig) paused() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pauses)
}

// append appends n events to a new stream of workspace ws and returns their ids.
func (r *rig) append(ws string, n int) (string, []ulid.ULID) {
	r.t.Helper()
	st := contact.NewID().Stream()
	recs := storetest.Recs(ws, st, 0, n)
	if _, err := r.s.Append(context.Background(), st, 0, recs); err != nil {
		r.t.Fatal(err)
	}
	var ids []ulid.ULID
	for _, x := range recs {
		ids = append(ids, x.ID)
	}
	return st, ids
}

// subscribe runs Subscribe in the background, collecting what it delivers.
type collected struct {
	mu   sync.Mutex
	recs []kernel.Record
	more chan struct{}
	done chan error
	stop context.CancelFunc
}

func (r *rig) subscribe(from kernel.Position, handle func([]kernel.Record) error) *collected {
	ctx, cancel := context.WithCancel(context.Background())
	c := &collected{more: make(chan struct{}, 1000), done: make(chan error, 1), stop: cancel}
	go func() {
		c.done <- r.s.Subscribe(ctx, from, func(_ context.Context, recs []kernel.Record) error {
			if handle != nil {
				if err := handle(recs); err != nil {
					return err
				}
			}
			c.mu.Lock()
			c.recs = append(c.recs, recs...)
			c.mu.Unlock()
			c.more <- struct{}{}
			return nil
		})
	}()
	r.t.Cleanup(cancel)
	return c
}

// wait waits until n events have been delivered and returns their ids.
func (c *collected) wait(t *testing.T, n int) []ulid.ULID {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.recs)
		var ids []ulid.ULID
		for _, r := range c.recs {
			ids = append(ids, r.ID)
		}
		c.mu.Unlock()
		if got >= n {
			return ids
		}
		select {
		case <-c.more:
		case err := <-c.done:
			t.Fatalf("subscribe ended after %d events: %v", got, err)
		case <-timeout:
			t.Fatalf("got %d events, want %d", got, n)
		}
	}
}

func TestSubscribeResumesAfterDropsWithoutLossOrRepeat(t *testing.T) {
	r := newRig(t)
	_, first := r.append("ws", 3)
	c := r.subscribe(kernel.Position{}, nil)
	c.wait(t, 3)
	want := first
	for round := range 4 {
		r.log.drop(status.Error(codes.Unavailable, "connection reset"))
		r.log.add("orders-1", "OrderPlaced") // other streams' events pass by unseen
		_, ids := r.append("ws", 2+round)
		want = append(want, ids...)
		if got := c.wait(t, len(want)); !slices.Equal(got, want) {
			t.Fatalf("round %d: got %v, want %v", round, got, want)
		}
	}
	c.stop()
	if err := <-c.done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if got := len(r.paused()); got != 4 {
		t.Fatalf("paused %d times, want once per drop (4)", got)
	}
	d := r.dialer.client(0)
	if len(d.subFroms) != 5 {
		t.Fatalf("subscribed %d times, want 5", len(d.subFroms))
	}
	for _, f := range d.filters {
		if f.Type != esdb.StreamFilterType || !slices.Equal(f.Prefixes, []string{"contact-"}) {
			t.Fatalf("filter %+v, want a stream-prefix filter on contact-", f)
		}
	}
}

func TestSubscribeBacksOffWhileTheServerIsDown(t *testing.T) {
	r := newRig(t)
	_, ids := r.append("ws", 2)
	down := esdbErr(esdb.ErrorUnavailable, status.Error(codes.Unavailable, "connection refused"))
	r.dialer.client(0).failNext("subscribe", down, down, down, down, down, down, down, down)
	c := r.subscribe(kernel.Position{}, nil)
	if got := c.wait(t, 2); !slices.Equal(got, ids) {
		t.Fatalf("got %v, want %v", got, ids)
	}
	p := r.paused()
	if len(p) != 8 {
		t.Fatalf("paused %d times, want 8", len(p))
	}
	nominal := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i, d := range p {
		lo := nominal[i] * time.Millisecond
		if d < lo || d > lo+lo/4 {
			t.Fatalf("pause %d: got %s, want %s plus up to 25%% jitter", i, d, lo)
		}
	}
	// A subscription that got somewhere starts the backoff over.
	r.log.drop(status.Error(codes.Unavailable, "reset"))
	_, more := r.append("ws", 1)
	c.wait(t, 3)
	if p := r.paused(); p[len(p)-1] > 125*time.Millisecond {
		t.Fatalf("after a healthy subscription: paused %s, want the first pause again", p[len(p)-1])
	}
	_ = more
	if got := r.s.Backoff(4, 2); !slices.Equal(got, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}) {
		t.Fatalf("backoff with a reset: got %v", got)
	}
}

func TestSubscribeResumesFromCheckpoints(t *testing.T) {
	r := newRig(t)
	_, ids := r.append("ws", 1)
	c := r.subscribe(kernel.Position{}, nil)
	c.wait(t, 1)
	// Many events of other streams: the server's checkpoints move past them.
	for i := range 12 {
		r.log.add(fmt.Sprintf("orders-%d", i), "OrderPlaced")
	}
	r.log.mu.Lock()
	tail := r.log.events[len(r.log.events)-1].Position
	r.log.mu.Unlock()
	fc := r.dialer.client(0)
	// Wait until the subscription has taken the checkpoint at the tail.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.log.drop(status.Error(codes.Unavailable, "reset"))
		time.Sleep(5 * time.Millisecond)
		fc.mu.Lock()
		last := fc.subFroms[len(fc.subFroms)-1]
		fc.mu.Unlock()
		if last == tail {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resubscribed from %v, want the checkpoint %v past other streams' events", last, tail)
		}
	}
	_, more := r.append("ws", 2)
	if got := c.wait(t, 3); !slices.Equal(got, append(ids, more...)) {
		t.Fatalf("got %v, want %v", got, append(ids, more...))
	}
}

func TestSubscribeFallsBackWhenACheckpointIsRefused(t *testing.T) {
	r := newRig(t)
	_, ids := r.append("ws", 2)
	for i := range 8 {
		r.log.add(fmt.Sprintf("orders-%d", i), "OrderPlaced")
	}
	var delivered kernel.Position
	c := r.subscribe(kernel.Position{}, func(recs []kernel.Record) error {
		delivered = recs[len(recs)-1].Position
		return nil
	})
	c.wait(t, 2)
	last := delivered
	time.Sleep(20 * time.Millisecond) // let the checkpoints come
	// The server forgets the checkpoint's position (as if it were not one it knows).
	r.log.mu.Lock()
	for _, e := range r.log.events[len(r.log.events)-8:] {
		e.Position.Prepare++ // no longer matches the checkpoints sent
	}
	r.log.mu.Unlock()
	r.log.drop(status.Error(codes.Unavailable, "reset"))
	_, more := r.append("ws", 1)
	if got := c.wait(t, 3); !slices.Equal(got, append(ids, more...)) {
		t.Fatalf("got %v, want %v", got, append(ids, more...))
	}
	fc := r.dialer.client(0)
	fc.mu.Lock()
	froms := slices.Clone(fc.subFroms)
	fc.mu.Unlock()
	if len(froms) != 3 || froms[1] == (esdb.Position{Commit: last.Commit, Prepare: last.Prepare}) ||
		froms[2] != (esdb.Position{Commit: last.Commit, Prepare: last.Prepare}) {
		t.Fatalf("subscribed from %v, want the start, a checkpoint, then the last delivered event %v", froms, last)
	}
}

func TestSubscribeStopsOnWhatRetryingCantCure(t *testing.T) {
	t.Run("a position that is not in the log", func(t *testing.T) {
		r := newRig(t)
		r.append("ws", 1)
		c := r.subscribe(kernel.Position{Commit: 7, Prepare: 7}, nil)
		select {
		case err := <-c.done:
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want the server's InvalidArgument", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("subscribing from a bad position loops instead of failing")
		}
	})
	t.Run("access denied", func(t *testing.T) {
		r := newRig(t)
		r.dialer.setup = nil
		r.append("ws", 1)
		r.dialer.client(0).failNext("subscribe", esdbErr(esdb.ErrorCodeAccessDenied, status.Error(codes.PermissionDenied, "denied")))
		c := r.subscribe(kernel.Position{}, nil)
		select {
		case err := <-c.done:
			if !errors.Is(err, eventstoredb.ErrAccess) {
				t.Fatalf("got %v, want ErrAccess", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("access denied loops instead of failing")
		}
	})
	t.Run("the handler's error", func(t *testing.T) {
		r := newRig(t)
		r.append("ws", 1)
		boom := errors.New("boom")
		c := r.subscribe(kernel.Position{}, func([]kernel.Record) error { return boom })
		if err := <-c.done; err != boom {
			t.Fatalf("got %v, want the handler's error as is", err)
		}
	})
}

func TestSubscribeSkipsSystemEventsInContactStreams(t *testing.T) {
	r := newRig(t)
	st, ids := r.append("ws", 2)
	r.log.add(st, "$streamDeleted")
	_, more := r.append("ws", 1)
	c := r.subscribe(kernel.Position{}, nil)
	if got := c.wait(t, 3); !slices.Equal(got, append(ids, more...)) {
		t.Fatalf("got %v, want %v", got, append(ids, more...))
	}
}

func TestHeadSkipsEventsThatAreNotTheLedgers(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if head, err := r.s.Head(ctx); err != nil || !head.IsZero() {
		t.Fatalf("a log with only system events: head %v, %v; want zero", head, err)
	}
	st, _ := r.append("ws", 3)
	all, err := r.s.ReadAll(ctx, kernel.Position{}, 10)
	if err != nil || len(all) != 3 {
		t.Fatalf("read all: %d events, %v", len(all), err)
	}
	// More than several pages of other events after the last contact event.
	r.log.add(st, "$streamDeleted")
	for i := range 300 {
		r.log.add(fmt.Sprintf("$$orders-%d", i), "$metadata")
	}
	head, err := r.s.Head(ctx)
	if err != nil || head != all[2].Position {
		t.Fatalf("head: got %v, %v; want the last contact event %v", head, err, all[2].Position)
	}
	// Reading all after it pages through the others and finds nothing.
	rest, err := r.s.ReadAll(ctx, head, 10)
	if err != nil || len(rest) != 0 {
		t.Fatalf("read after head: got %d events, %v", len(rest), err)
	}
	_, ids := r.append("ws", 1)
	rest, err = r.s.ReadAll(ctx, head, 10)
	if err != nil || len(rest) != 1 || rest[0].ID != ids[0] {
		t.Fatalf("read after head past 300 other events: got %v, %v", rest, err)
	}
}

func TestAppendToAnotherWorkspacesStream(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	st, _ := r.append("ws-a", 1)
	// A second store has nothing cached: it asks the server who owns the stream.
	other := eventstoredb.New((&fakeDialer{log: r.log}).dial, eventstoredb.Options{})
	defer other.Close()
	for _, s := range []*eventstoredb.Store{r.s, other} {
		if _, err := s.Append(ctx, st, 1, storetest.Recs("ws-b", st, 1, 1)); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
		if _, err := s.ReadStream(ctx, "ws-b", st); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("read: got %v, want ErrNotFound", err)
		}
	}
	if _, err := other.Append(ctx, st, 1, storetest.Recs("ws-a", st, 1, 1)); err != nil {
		t.Fatalf("the owner's append: %v", err)
	}
	missing := contact.NewID().Stream()
	if _, err := other.Append(ctx, missing, 3, storetest.Recs("ws-a", missing, 3, 1)); !errors.Is(err, kernel.ErrConcurrency) {
		t.Fatalf("append at version 3 to a stream that does not exist: got %v, want ErrConcurrency", err)
	}
}

func TestAppendSendsTheULIDsAsEventIDs(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	st := contact.NewID().Stream()
	recs := storetest.Recs("ws", st, 0, 3)
	pos, err := r.s.Append(ctx, st, 0, recs)
	if err != nil {
		t.Fatal(err)
	}
	sent := r.dialer.client(0).appended
	for i, e := range sent {
		if e.EventID != eventstoredb.EventID(recs[i].ID) || e.ContentType != esdb.ContentTypeJson {
			t.Fatalf("event %d sent as %+v", i, e)
		}
	}
	// The retry of an append whose answer was lost succeeds on the server,
	// because the ids are the same, and writes nothing twice.
	again, err := r.s.Append(ctx, st, 0, recs)
	if err != nil || again != pos {
		t.Fatalf("retry: got %v, %v; want the same position %v", again, err, pos)
	}
	if got, _ := r.s.ReadStream(ctx, "ws", st); len(got) != 3 {
		t.Fatalf("got %d events after the retry, want 3", len(got))
	}
}

func TestAClientThatClosedItselfIsReplaced(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	st, _ := r.append("ws", 1)
	first := r.dialer.client(0)
	// Discovery failed: this call fails, and the client is dead for good.
	first.failNext("read", esdbErr(esdb.ErrorCodeConnectionClosed, errors.New("connection is closed")))
	if _, err := r.s.ReadStream(ctx, "ws", st); !errors.Is(err, eventstoredb.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if got, err := r.s.ReadStream(ctx, "ws", st); err != nil || len(got) != 1 {
		t.Fatalf("the next call: %v, %v; want it to work on a new client", got, err)
	}
	if r.dialer.count() != 2 {
		t.Fatalf("dialled %d clients, want 2", r.dialer.count())
	}
	if !first.isClosed() || first.misuse {
		t.Fatalf("the dead client: closed %v, closed under a call %v; want closed, and not under a call", first.isClosed(), first.misuse)
	}
}

func TestARetiredClientIsClosedOnlyAfterItsLastCall(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	st, _ := r.append("ws", 1)
	first := r.dialer.client(0)
	block := make(chan struct{})
	first.mu.Lock()
	first.block = block
	first.mu.Unlock()
	slow := make(chan error, 1)
	go func() { _, err := r.s.ReadStream(ctx, "ws", st); slow <- err }()
	time.Sleep(20 * time.Millisecond) // the slow call is inside the client
	first.mu.Lock()
	first.block = nil
	first.fail["append"] = []error{esdbErr(esdb.ErrorCodeConnectionClosed, nil)}
	first.mu.Unlock()
	if _, err := r.s.Append(ctx, st, 1, storetest.Recs("ws", st, 1, 1)); !errors.Is(err, eventstoredb.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if first.isClosed() {
		t.Fatal("the retired client was closed while a call still ran on it")
	}
	close(block)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for !first.isClosed() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !first.isClosed() || first.misuse {
		t.Fatalf("after its last call: closed %v, under a call %v", first.isClosed(), first.misuse)
	}
}

func TestCallsReturnWhenTheirContextEndsEvenIfTheClientBlocks(t *testing.T) {
	r := newRig(t)
	st, _ := r.append("ws", 1)
	c := r.dialer.client(0)
	block := make(chan struct{})
	c.mu.Lock()
	c.block = block
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got := make(chan error, 1)
	go func() { _, err := r.s.ReadStream(ctx, "ws", st); got <- err }()
	select {
	case err := <-got:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(2 * time.Second):
		close(block)
		t.Fatal("a call blocked in the client ignores its context")
	}
	// Close does not close the client under the stuck call.
	r.s.Close()
	if c.isClosed() || c.misuse {
		t.Fatalf("closed %v, under a call %v; want left open while a call is stuck in it", c.isClosed(), c.misuse)
	}
	close(block)
	deadline := time.Now().Add(time.Second)
	for !c.isClosed() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !c.isClosed() || c.misuse {
		t.Fatalf("once the call is out: closed %v, under a call %v; want closed", c.isClosed(), c.misuse)
	}
	if _, err := r.s.Head(context.Background()); !errors.Is(err, eventstoredb.ErrClosed) {
		t.Fatalf("after close: got %v, want ErrClosed", err)
	}
}

func TestCloseEndsSubscriptionsAndLetsAppendsFinish(t *testing.T) {
	r := newRig(t)
	r.append("ws", 1)
	c := r.subscribe(kernel.Position{}, nil)
	c.wait(t, 1)
	fc := r.dialer.client(0)
	block := make(chan struct{})
	fc.mu.Lock()
	fc.block = block
	fc.mu.Unlock()
	st := contact.NewID().Stream()
	appended := make(chan error, 1)
	go func() {
		_, err := r.s.Append(context.Background(), st, 0, storetest.Recs("ws", st, 0, 1))
		appended <- err
	}()
	time.Sleep(20 * time.Millisecond)
	go func() { time.Sleep(50 * time.Millisecond); close(block) }()
	r.s.Close()
	if err := <-appended; err != nil {
		t.Fatalf("an append in flight at close: %v, want it to finish", err)
	}
	if err := <-c.done; !errors.Is(err, eventstoredb.ErrClosed) {
		t.Fatalf("subscription: got %v, want ErrClosed", err)
	}
	if !fc.isClosed() || fc.misuse {
		t.Fatalf("client closed %v, under a call %v", fc.isClosed(), fc.misuse)
	}
}

// TestAppendManyPipelinesTheStreams checks the batched append of a log
// without transactions across streams: every stream's append is in flight
// at once on the one client (not one after the other), each with its own
// result, so a stale stream and a failed call fail alone.
func TestAppendManyPipelinesTheStreams(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	stale, _ := r.append("ws", 2)
	c := r.dialer.client(0)
	block := make(chan struct{})
	c.mu.Lock()
	c.block = block
	c.mu.Unlock()
	const n = 10
	batch := []kernel.StreamAppend{{Stream: stale, Expected: 1, Events: storetest.Recs("ws", stale, 1, 1)}}
	for range n - 1 {
		st := contact.NewID().Stream()
		batch = append(batch, kernel.StreamAppend{Stream: st, Expected: 0, Events: storetest.Recs("ws", st, 0, 2)})
	}
	type outcome struct {
		res []kernel.AppendResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := kernel.AppendMany(ctx, r.s, batch)
		done <- outcome{res, err}
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		inflight := c.inflight
		c.mu.Unlock()
		if inflight == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d appends in flight at once, want all: the batch is not pipelined", inflight, n)
		}
	}
	close(block)
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if !errors.Is(o.res[0].Err, kernel.ErrConcurrency) {
		t.Fatalf("the stale stream: got %v, want ErrConcurrency", o.res[0].Err)
	}
	for i, res := range o.res[1:] {
		if res.Err != nil {
			t.Fatalf("stream %d: %v", i+1, res.Err)
		}
		if got, err := r.s.ReadStream(ctx, "ws", batch[i+1].Stream); err != nil || len(got) != 2 || got[1].Position != res.Position {
			t.Fatalf("stream %d: read %d events (%v), want 2 ending at %s", i+1, len(got), err, res.Position)
		}
	}
	if _, err := kernel.AppendMany(ctx, r.s, []kernel.StreamAppend{batch[1], batch[1]}); !errors.Is(err, kernel.ErrDuplicateStream) {
		t.Fatalf("a stream named twice: got %v, want ErrDuplicateStream", err)
	}
	// One call of a batch fails on the server's side: that stream alone fails.
	c.mu.Lock()
	c.block = nil
	c.mu.Unlock()
	c.failNext("append", status.Error(codes.Unavailable, "leader changed"))
	var more []kernel.StreamAppend
	for range 5 {
		st := contact.NewID().Stream()
		more = append(more, kernel.StreamAppend{Stream: st, Expected: 0, Events: storetest.Recs("ws", st, 0, 1)})
	}
	res, err := kernel.AppendMany(ctx, r.s, more)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for i, x := range res {
		switch {
		case errors.Is(x.Err, eventstoredb.ErrUnavailable):
			failed++
		case x.Err != nil:
			t.Fatalf("stream %d: %v", i, x.Err)
		}
	}
	if failed != 1 {
		t.Fatalf("%d streams failed, want the one whose call failed", failed)
	}
}
