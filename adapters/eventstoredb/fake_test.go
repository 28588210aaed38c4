package eventstoredb_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/contactledger/ledger/adapters/eventstoredb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// esdbErr builds an *esdb.Error with a code, as the client returns them.
// The type has no exported constructor, so this mirrors its two fields
// (v4.2.0) and checks that the mirror still holds.
func esdbErr(c esdb.ErrorCode, err error) error {
	type layout struct {
		code esdb.ErrorCode
		err  error
	}
	e := (*esdb.Error)(unsafe.Pointer(&layout{c, err}))
	if e.Code() != c || e.Err() != err {
		panic("the layout of esdb.Error changed; update esdbErr")
	}
	return e
}

// fakeLog is an in-memory model of the server, as the client shows it, with
// the semantics the adapter relies on (written down in the package's
// design notes): $all positions with commit == prepare, forwards reads of
// $all include their start and backwards reads exclude it, subscriptions
// are exclusive, a stream-prefix filter sends checkpoints every window of
// considered events and once before going live, then CaughtUp.
type fakeLog struct {
	mu      sync.Mutex
	events  []*esdb.RecordedEvent
	streams map[string][]*esdb.RecordedEvent
	next    uint64 // position of the next event
	changed chan struct{}
	subs    map[*fakeSub]bool
	window  int // checkpoint interval of filtered subscriptions
}

func newFakeLog() *fakeLog {
	l := &fakeLog{next: 1000, changed: make(chan struct{}), subs: map[*fakeSub]bool{}, window: 4, streams: map[string][]*esdb.RecordedEvent{}}
	// A log is never empty: the server writes its own events first.
	for i := range 3 {
		l.addLocked(fmt.Sprintf("$$$stats-%d", i), "$metadata", uuid.New(), nil, []byte("{}"))
	}
	return l
}

func (l *fakeLog) addLocked(stream, typ string, id uuid.UUID, data, meta []byte) *esdb.RecordedEvent {
	n := uint64(len(l.streams[stream]))
	e := &esdb.RecordedEvent{
		EventID: id, EventType: typ, ContentType: "application/json", StreamID: stream, EventNumber: n,
		Position: esdb.Position{Commit: l.next, Prepare: l.next}, CreatedDate: time.Now().UTC(),
		Data: data, UserMetadata: meta,
	}
	l.next += 100 + uint64(len(data)+len(meta))
	l.events = append(l.events, e)
	l.streams[stream] = append(l.streams[stream], e)
	close(l.changed)
	l.changed = make(chan struct{})
	return e
}

// add appends an event that the ledger did not write (another stream, a system event).
func (l *fakeLog) add(stream, typ string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addLocked(stream, typ, uuid.New(), []byte("{}"), nil)
}

func (l *fakeLog) stream(name string) []*esdb.RecordedEvent { return l.streams[name] }

// drop drops every open subscription with err.
func (l *fakeLog) drop(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.subs {
		select {
		case s.drop <- err:
		default:
		}
	}
}

// fakeClient is a Client on a fakeLog, with failures to inject.
type fakeClient struct {
	log *fakeLog

	mu       sync.Mutex
	fail     map[string][]error // op -> errors for its next calls
	dead     bool               // closed itself: every call fails with ErrorCodeConnectionClosed
	closed   bool
	inflight int
	misuse   bool               // Close ran while a call was in flight
	block    chan struct{}      // when set, calls wait for it, ignoring their context
	subFroms []esdb.AllPosition // From of every SubscribeToAll
	filters  []*esdb.SubscriptionFilter
	appended []esdb.EventData
}

func newFakeClient(l *fakeLog) *fakeClient { return &fakeClient{log: l, fail: map[string][]error{}} }

// failNext makes the next calls of op fail with errs, in order.
func (c *fakeClient) failNext(op string, errs ...error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail[op] = append(c.fail[op], errs...)
}

func (c *fakeClient) begin(op string) (func(), error) {
	c.mu.Lock()
	c.inflight++
	block := c.block
	end := func() {
		c.mu.Lock()
		c.inflight--
		c.mu.Unlock()
	}
	if c.closed || c.dead {
		c.mu.Unlock()
		return end, esdbErr(esdb.ErrorCodeConnectionClosed, fmt.Errorf("connection is closed"))
	}
	if errs := c.fail[op]; len(errs) > 0 {
		c.fail[op] = errs[1:]
		c.mu.Unlock()
		if _, ok := errs[0].(*esdb.Error); ok && errs[0].(*esdb.Error).Code() == esdb.ErrorCodeConnectionClosed {
			c.mu.Lock()
			c.dead = true
			c.mu.Unlock()
		}
		return end, errs[0]
	}
	c.mu.Unlock()
	if block != nil {
		<-block
	}
	return end, nil
}

func (c *fakeClient) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight > 0 {
		c.misuse = true
	}
	c.closed = true
	return nil
}

func (c *fakeClient) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *fakeClient) AppendToStream(ctx context.Context, stream string, opts esdb.AppendToStreamOptions, events ...esdb.EventData) (*esdb.WriteResult, error) {
	end, err := c.begin("append")
	defer end()
	if err != nil {
		return nil, err
	}
	l := c.log
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.stream(stream)
	// An append that was already done (same ids, same place) succeeds again and writes nothing.
	if rev, ok := opts.ExpectedRevision.(esdb.StreamRevision); ok || opts.ExpectedRevision == (esdb.NoStream{}) {
		at := 0
		if ok {
			at = int(rev.Value) + 1
		}
		if at+len(events) <= len(cur) && at < len(cur) {
			same := true
			for i, e := range events {
				same = same && cur[at+i].EventID == e.EventID
			}
			if same {
				last := cur[at+len(events)-1]
				return &esdb.WriteResult{CommitPosition: last.Position.Commit, PreparePosition: last.Position.Prepare, NextExpectedVersion: last.EventNumber}, nil
			}
		}
	}
	switch want := opts.ExpectedRevision.(type) {
	case esdb.NoStream:
		if len(cur) > 0 {
			return nil, esdbErr(esdb.ErrorCodeWrongExpectedVersion, fmt.Errorf("wrong expected version: expecting 'no_stream' but got '%d'", len(cur)-1))
		}
	case esdb.StreamRevision:
		if len(cur) == 0 || cur[len(cur)-1].EventNumber != want.Value {
			return nil, esdbErr(esdb.ErrorCodeWrongExpectedVersion, fmt.Errorf("wrong expected version: expecting '%d'", want.Value))
		}
	default:
		return nil, fmt.Errorf("fake: the store must always state an expected revision, got %T", want)
	}
	var last *esdb.RecordedEvent
	for _, e := range events {
		if e.ContentType != esdb.ContentTypeJson {
			return nil, fmt.Errorf("fake: content type %v, want JSON", e.ContentType)
		}
		if e.EventID == uuid.Nil {
			return nil, fmt.Errorf("fake: nil event id")
		}
	}
	for _, e := range events {
		c.mu.Lock()
		c.appended = append(c.appended, e)
		c.mu.Unlock()
		last = l.addLocked(stream, e.EventType, e.EventID, e.Data, e.Metadata)
	}
	return &esdb.WriteResult{CommitPosition: last.Position.Commit, PreparePosition: last.Position.Prepare, NextExpectedVersion: last.EventNumber}, nil
}

// fakeEvents is an open read.
type fakeEvents struct {
	evs []*esdb.RecordedEvent
	err error // returned after evs instead of io.EOF
}

func (r *fakeEvents) Recv() (*esdb.ResolvedEvent, error) {
	if len(r.evs) == 0 {
		if r.err != nil {
			return nil, r.err
		}
		return nil, io.EOF
	}
	e := r.evs[0]
	r.evs = r.evs[1:]
	cp := *e
	return &esdb.ResolvedEvent{Event: &cp}, nil
}

func (r *fakeEvents) Close() {}

func (c *fakeClient) ReadStream(ctx context.Context, stream string, opts esdb.ReadStreamOptions, count uint64) (eventstoredb.Events, error) {
	end, err := c.begin("read")
	defer end()
	if err != nil {
		return nil, err
	}
	var from uint64
	switch f := opts.From.(type) {
	case esdb.Start:
	case esdb.StreamRevision:
		from = f.Value
	default:
		return nil, fmt.Errorf("fake: unexpected stream read options %+v", opts)
	}
	if opts.Direction != esdb.Forwards {
		return nil, fmt.Errorf("fake: unexpected stream read options %+v", opts)
	}
	c.log.mu.Lock()
	defer c.log.mu.Unlock()
	evs := c.log.stream(stream)
	if len(evs) == 0 {
		return &fakeEvents{err: esdbErr(esdb.ErrorCodeResourceNotFound, fmt.Errorf("stream '%s' is not found", stream))}, nil
	}
	// Like the server: from a revision on, and nothing past the end.
	evs = evs[min(from, uint64(len(evs))):]
	if uint64(len(evs)) > count {
		evs = evs[:count]
	}
	return &fakeEvents{evs: evs}, nil
}

// index returns the index of the event at p, or -1.
func (l *fakeLog) index(p esdb.Position) int {
	for i, e := range l.events {
		if e.Position == p {
			return i
		}
	}
	return -1
}

func (c *fakeClient) ReadAll(ctx context.Context, opts esdb.ReadAllOptions, count uint64) (eventstoredb.Events, error) {
	end, err := c.begin("readall")
	defer end()
	if err != nil {
		return nil, err
	}
	l := c.log
	l.mu.Lock()
	defer l.mu.Unlock()
	var evs []*esdb.RecordedEvent
	invalid := &fakeEvents{err: esdbErr(esdb.ErrorCodeUnknown, status.Error(codes.InvalidArgument, "Trying to read from an invalid position."))}
	if opts.Direction == esdb.Forwards {
		start := 0
		switch f := opts.From.(type) {
		case esdb.Start:
		case esdb.Position:
			if start = l.index(f); start < 0 {
				return invalid, nil
			}
		default:
			return nil, fmt.Errorf("fake: forwards read from %T", f)
		}
		for i := start; i < len(l.events) && uint64(len(evs)) < count; i++ {
			evs = append(evs, l.events[i])
		}
	} else {
		start := len(l.events) - 1
		switch f := opts.From.(type) {
		case esdb.End:
		case esdb.Position:
			if start = l.index(f); start < 0 {
				return invalid, nil
			}
			start-- // exclusive
		default:
			return nil, fmt.Errorf("fake: backwards read from %T", f)
		}
		for i := start; i >= 0 && uint64(len(evs)) < count; i-- {
			evs = append(evs, l.events[i])
		}
	}
	return &fakeEvents{evs: evs}, nil
}

func (c *fakeClient) SubscribeToAll(ctx context.Context, opts esdb.SubscribeToAllOptions) (eventstoredb.Subscription, error) {
	end, err := c.begin("subscribe")
	defer end()
	c.mu.Lock()
	c.subFroms = append(c.subFroms, opts.From)
	c.filters = append(c.filters, opts.Filter)
	c.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("failed to construct subscription. Reason: %w", err)
	}
	f := opts.Filter
	if f == nil || f.Type != esdb.StreamFilterType || len(f.Prefixes) != 1 {
		return nil, fmt.Errorf("fake: the store must filter on stream prefixes, got %+v", f)
	}
	l := c.log
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	s := &fakeSub{log: l, ctx: ctx, cancel: cancel, prefix: f.Prefixes[0], drop: make(chan error, 1)}
	switch from := opts.From.(type) {
	case esdb.Start:
	case esdb.End:
		s.next, s.live = len(l.events), true
		s.queue = append(s.queue, &esdb.SubscriptionEvent{CaughtUp: &esdb.Subscription{}})
	case esdb.Position:
		if s.next = l.index(from); s.next < 0 {
			s.queue = append(s.queue, &esdb.SubscriptionEvent{SubscriptionDropped: &esdb.SubscriptionDropped{
				Error: status.Error(codes.InvalidArgument, "Trying to read from an invalid position.")}})
			s.next = len(l.events)
		} else {
			s.next++ // exclusive
		}
	default:
		return nil, fmt.Errorf("fake: subscribe from %T", from)
	}
	l.subs[s] = true
	return s, nil
}

// fakeSub is a filtered subscription to $all.
type fakeSub struct {
	log        *fakeLog
	ctx        context.Context
	cancel     func()
	prefix     string
	next       int // index of the next event to consider
	considered int
	live       bool
	queue      []*esdb.SubscriptionEvent
	drop       chan error
	dropped    bool
}

func (s *fakeSub) Recv() *esdb.SubscriptionEvent {
	for {
		if s.dropped {
			return &esdb.SubscriptionEvent{SubscriptionDropped: &esdb.SubscriptionDropped{Error: fmt.Errorf("subscription has been dropped")}}
		}
		if len(s.queue) > 0 {
			m := s.queue[0]
			s.queue = s.queue[1:]
			if m.SubscriptionDropped != nil {
				s.dropped = true
			}
			return m
		}
		select {
		case err := <-s.drop:
			s.dropped = true
			return &esdb.SubscriptionEvent{SubscriptionDropped: &esdb.SubscriptionDropped{Error: err}}
		default:
		}
		l := s.log
		l.mu.Lock()
		if s.next < len(l.events) {
			e := l.events[s.next]
			s.next++
			s.considered++
			if strings.HasPrefix(e.StreamID, s.prefix) {
				cp := *e
				s.queue = append(s.queue, &esdb.SubscriptionEvent{EventAppeared: &esdb.ResolvedEvent{Event: &cp}})
			}
			if s.considered%l.window == 0 {
				p := e.Position
				s.queue = append(s.queue, &esdb.SubscriptionEvent{CheckPointReached: &p})
			}
			l.mu.Unlock()
			continue
		}
		if !s.live {
			s.live = true
			if len(l.events) > 0 {
				p := l.events[len(l.events)-1].Position
				s.queue = append(s.queue, &esdb.SubscriptionEvent{CheckPointReached: &p})
			}
			s.queue = append(s.queue, &esdb.SubscriptionEvent{CaughtUp: &esdb.Subscription{}})
			l.mu.Unlock()
			continue
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case err := <-s.drop:
			s.dropped = true
			return &esdb.SubscriptionEvent{SubscriptionDropped: &esdb.SubscriptionDropped{Error: err}}
		case <-s.ctx.Done():
			s.dropped = true
			return &esdb.SubscriptionEvent{SubscriptionDropped: &esdb.SubscriptionDropped{Error: status.Error(codes.Canceled, "context canceled")}}
		}
	}
}

func (s *fakeSub) Close() error {
	s.cancel()
	s.log.mu.Lock()
	delete(s.log.subs, s)
	s.log.mu.Unlock()
	return nil
}

// fakeDialer makes clients on one log and remembers them.
type fakeDialer struct {
	log     *fakeLog
	mu      sync.Mutex
	clients []*fakeClient
	setup   func(*fakeClient)
}

func (d *fakeDialer) dial() (eventstoredb.Client, error) {
	c := newFakeClient(d.log)
	if d.setup != nil {
		d.setup(c)
	}
	d.mu.Lock()
	d.clients = append(d.clients, c)
	d.mu.Unlock()
	return c, nil
}

func (d *fakeDialer) client(i int) *fakeClient {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i >= len(d.clients) {
		return nil
	}
	return d.clients[i]
}

func (d *fakeDialer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.clients)
}
