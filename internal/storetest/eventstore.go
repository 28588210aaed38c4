// Package storetest holds the contract suites of the store ports. Every
// adapter's test runs them in one line against the real engine; an adapter
// is done when it passes them whole.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
	"github.com/oklog/ulid/v2"
)

// Features lets an adapter declare what it lacks instead of forking the suite.
type Features struct {
	// DensePositions is set when positions are consecutive integers (Commit == Prepare).
	DensePositions bool
	// NoLogReader is set by event stores without ledger.LogReader (the
	// audit log then filters ReadAll's pages itself).
	NoLogReader bool
	// NoStreamReader is set by event stores without projections.StreamReader
	// (rebuilds then replay the log in global order).
	NoStreamReader bool
	// NoShadowStore is set by state stores without projections.ShadowStore
	// (they cannot rebuild views without downtime).
	NoShadowStore bool
	// SharedLog is set when the log can't be emptied between tests (a
	// server such as EventStoreDB): New may return a store on a log that
	// already holds events, and other tests may append at the same time.
	// The suite then starts each test from the head it finds and looks only
	// at the events of the test's own streams.
	SharedLog bool
}

// EventStoreHarness makes stores for the event-store suite.
type EventStoreHarness struct {
	// New returns an empty store; the harness closes it when the test ends.
	New func(t *testing.T) kernel.EventStore
	// Reopen closes s and opens the same storage again, as a restart would.
	Reopen   func(t *testing.T, s kernel.EventStore) kernel.EventStore
	Features Features
}

// Rec returns a record for the suites: event number version of stream in workspace.
func Rec(workspace, stream string, version uint64) kernel.Record {
	r := kernel.Record{
		ID: ulid.Make(), Stream: stream, Version: version, Type: contact.TypeUpdated,
		Time: time.Now().UTC().Truncate(time.Microsecond), Workspace: workspace,
		Actor:         kernel.Actor{Principal: "tok_suite", Role: kernel.RoleMember},
		CorrelationID: "corr-" + stream, CausationID: "cause", Schema: 1,
		Data:   []byte(`{"fields":["name"]}`),
		Sealed: []byte{1, 2, 3, byte(version)},
	}
	r.Hash = kernel.ChainHash(nil, r)
	return r
}

// Recs returns n consecutive records of a stream after version after.
func Recs(workspace, stream string, after uint64, n int) []kernel.Record {
	out := make([]kernel.Record, n)
	for i := range out {
		out[i] = Rec(workspace, stream, after+uint64(i)+1)
	}
	return out
}

func newStream() string { return contact.NewID().Stream() }

// start returns where a test's own events will begin: the start of the log,
// or its head when the log is shared.
func start(t *testing.T, h EventStoreHarness, s kernel.EventStore) kernel.Position {
	t.Helper()
	if !h.Features.SharedLog {
		return kernel.Position{}
	}
	head, err := s.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return head
}

// own returns the records of the given streams when the log is shared, and
// recs unchanged when it is not (then every record is the test's own).
func own(h EventStoreHarness, recs []kernel.Record, streams ...string) []kernel.Record {
	if !h.Features.SharedLog {
		return recs
	}
	var out []kernel.Record
	for _, r := range recs {
		if slices.Contains(streams, r.Stream) {
			out = append(out, r)
		}
	}
	return out
}

// RunEventStore runs the event-store contract suite.
func RunEventStore(t *testing.T, h EventStoreHarness) {
	runBatches(t, h)
	runCases(t, h, eventStoreCases)
}

// eventStoreCases are the event-store contract, each case on a store of its own.
var eventStoreCases = []suiteCase[EventStoreHarness]{
	{name: "workspace log with filters, resumable", run: workspaceLog},
	{name: "read by stream up to a stable head, and count", run: readByStreamToStableHead, serial: true},
	{name: "append and read a stream", run: appendAndReadStream},
	{name: "expected version", run: expectedVersion},
	{name: "streams that are not contacts' (restore jobs) append and read alike", run: jobStreams},
	{name: "read many streams at once", run: readManyStreams},
	{name: "read a stream from a version on", run: readStreamAfter},
	{name: "invalid batches are refused whole", run: invalidBatchesRefused},
	{name: "workspace scoping", run: workspaceScoping},
	{name: "read all in order", run: readAllInOrder, serial: true},
	{name: "subscribe catches up, goes live and resumes after a restart", run: subscribeCatchesUp, serial: true},
	{name: "concurrent appends to one version: one wins", run: concurrentAppendsOneWins},
	{name: "concurrent appenders with a live subscriber lose, repeat and skip nothing", run: concurrentAppendersLiveSubscriber},
	{name: "large streams and payloads", run: largeStreamsAndPayloads},
}

func appendAndReadStream(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	st := newStream()
	in := Recs("ws", st, 0, 3)
	in[1].Sealed, in[2].PrevHash = nil, []byte("prev")
	pos, err := s.Append(ctx, st, 0, in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadStream(ctx, "ws", st)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d events, want 3", len(got))
	}
	for i, g := range got {
		w := in[i]
		if g.ID != w.ID || g.Stream != w.Stream || g.Version != w.Version || g.Type != w.Type || !g.Time.Equal(w.Time) ||
			g.Workspace != w.Workspace || g.Actor != w.Actor || g.CorrelationID != w.CorrelationID || g.CausationID != w.CausationID ||
			g.Schema != w.Schema || !bytes.Equal(g.Data, w.Data) || !bytes.Equal(g.Sealed, w.Sealed) ||
			!bytes.Equal(g.PrevHash, w.PrevHash) || !bytes.Equal(g.Hash, w.Hash) {
			t.Fatalf("event %d: got %+v, want %+v", i, g, w)
		}
		if (w.Sealed == nil) != (g.Sealed == nil) {
			t.Fatalf("event %d: got sealed %v, want %v (nil must stay nil)", i, g.Sealed, w.Sealed)
		}
		if i > 0 && !got[i-1].Position.Less(g.Position) {
			t.Fatalf("positions not increasing: %s then %s", got[i-1].Position, g.Position)
		}
	}
	if got[2].Position != pos {
		t.Fatalf("append returned %s, last event is at %s", pos, got[2].Position)
	}
}

func expectedVersion(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	st := newStream()
	if _, err := s.Append(ctx, st, 0, Recs("ws", st, 0, 2)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		expected uint64
	}{{"stream exists", 0}, {"behind", 1}, {"ahead", 5}} {
		_, err := s.Append(ctx, st, tc.expected, Recs("ws", st, tc.expected, 1))
		if !errors.Is(err, kernel.ErrConcurrency) {
			t.Fatalf("%s: got %v, want ErrConcurrency", tc.name, err)
		}
	}
	if got, _ := s.ReadStream(ctx, "ws", st); len(got) != 2 {
		t.Fatalf("got %d events after refused appends, want 2", len(got))
	}
	if _, err := s.Append(ctx, st, 2, Recs("ws", st, 2, 1)); err != nil {
		t.Fatalf("append at the right version: %v", err)
	}
}

func jobStreams(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	// Restore jobs keep their state in streams named job-<ULID> and
	// restorejobs-<workspace>, found by reading them by name: every
	// log must take any stream name, with the same concurrency rules.
	s := h.New(t)
	for _, st := range []string{"job-" + ulid.Make().String(), "restorejobs-acme-corp"} {
		in := Recs("acme-corp", st, 0, 2)
		for i := range in {
			in[i].Type, in[i].Sealed = "RestoreJobProgressed", nil
			in[i].Data = []byte(`{"restored":["01ARZ3NDEKTSV4RRFFQ69G5FAV"]}`)
		}
		if _, err := s.Append(ctx, st, 0, in); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
		if _, err := s.Append(ctx, st, 1, Recs("acme-corp", st, 1, 1)); !errors.Is(err, kernel.ErrConcurrency) {
			t.Fatalf("%s: a stale append got %v, want ErrConcurrency", st, err)
		}
		got, err := s.ReadStream(ctx, "acme-corp", st)
		if err != nil || len(got) != 2 || got[1].Type != "RestoreJobProgressed" || !bytes.Equal(got[1].Data, in[1].Data) {
			t.Fatalf("%s: read %d events, %v", st, len(got), err)
		}
		if _, err := s.ReadStream(ctx, "other", st); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("%s: another workspace read it: %v", st, err)
		}
	}
	if _, err := s.ReadStream(ctx, "acme-corp", "job-"+ulid.Make().String()); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("an unknown job stream: got %v, want ErrNotFound", err)
	}
}

func readManyStreams(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	a, b, other, unknown := newStream(), newStream(), newStream(), newStream()
	for st, n := range map[string]int{a: 3, b: 1} {
		if _, err := s.Append(ctx, st, 0, Recs("ws", st, 0, n)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Append(ctx, other, 0, Recs("ws-other", other, 0, 2)); err != nil {
		t.Fatal(err)
	}
	got, err := kernel.ReadStreams(ctx, s, "ws", []string{a, b, other, unknown})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[a]) != 3 || len(got[b]) != 1 {
		t.Fatalf("got %d streams (%d, %d events), want a and b only, with 3 and 1 events", len(got), len(got[a]), len(got[b]))
	}
	for i, r := range got[a] {
		if r.Version != uint64(i+1) || r.Stream != a || r.Workspace != "ws" {
			t.Fatalf("event %d of a: %+v", i, r)
		}
	}
	if got, err := kernel.ReadStreams(ctx, s, "ws", nil); err != nil || len(got) != 0 {
		t.Fatalf("no streams: got %v, %v", got, err)
	}
}

func readStreamAfter(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	tr, ok := s.(kernel.TailReader)
	if !ok {
		t.Fatalf("%T does not read a stream from a version on (kernel.TailReader)", s)
	}
	st := "job-" + ulid.Make().String()
	in := Recs("acme-corp", st, 0, 5)
	if _, err := s.Append(ctx, st, 0, in); err != nil {
		t.Fatal(err)
	}
	for after := range uint64(7) {
		got, err := tr.ReadStreamAfter(ctx, "acme-corp", st, after)
		if err != nil {
			t.Fatalf("after %d: %v", after, err)
		}
		if wantN := max(0, 5-int(after)); len(got) != wantN {
			t.Fatalf("after %d: %d events, want %d", after, len(got), wantN)
		}
		for i, r := range got {
			w := in[int(after)+i]
			if r.Version != w.Version || r.ID != w.ID || !bytes.Equal(r.Hash, w.Hash) || !bytes.Equal(r.Data, w.Data) || r.Workspace != "acme-corp" || r.Stream != st {
				t.Fatalf("after %d, event %d: %+v, want %+v", after, i, r, w)
			}
		}
	}
	if got, err := tr.ReadStreamAfter(ctx, "other", st, 0); err != nil || len(got) != 0 {
		t.Fatalf("another workspace read %d events, %v", len(got), err)
	}
	if got, err := tr.ReadStreamAfter(ctx, "acme-corp", "job-"+ulid.Make().String(), 0); err != nil || len(got) != 0 {
		t.Fatalf("an unknown stream: %d events, %v", len(got), err)
	}
}

func invalidBatchesRefused(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	st := newStream()
	bad := Recs("ws", st, 0, 3)
	bad[2].Version = 7
	if _, err := s.Append(ctx, st, 0, bad); err == nil {
		t.Fatal("got no error for a batch with a version gap")
	}
	if _, err := s.Append(ctx, st, 0, nil); err == nil {
		t.Fatal("got no error for an empty batch")
	}
	if _, err := s.ReadStream(ctx, "ws", st); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("got %v, want nothing written", err)
	}
}

func workspaceScoping(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	st := newStream()
	if _, err := s.Append(ctx, st, 0, Recs("ws-a", st, 0, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadStream(ctx, "ws-b", st); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("read from another workspace: got %v, want ErrNotFound", err)
	}
	if _, err := s.Append(ctx, st, 1, Recs("ws-b", st, 1, 1)); err == nil {
		t.Fatal("append from another workspace succeeded")
	}
	if _, err := s.ReadStream(ctx, "ws", newStream()); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("unknown stream: got %v, want ErrNotFound", err)
	}
}

func readAllInOrder(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	if head, err := s.Head(ctx); !h.Features.SharedLog && (err != nil || !head.IsZero()) {
		t.Fatalf("empty log: head %s, %v; want zero", head, err)
	}
	from := start(t, h, s)
	streams := []string{newStream(), newStream(), newStream()}
	var want []ulid.ULID
	versions := map[string]uint64{}
	for i := 0; i < 12; i++ {
		st := streams[i%3]
		r := Recs("ws", st, versions[st], 1+i%2)
		if _, err := s.Append(ctx, st, versions[st], r); err != nil {
			t.Fatal(err)
		}
		versions[st] += uint64(len(r))
		for _, x := range r {
			want = append(want, x.ID)
		}
	}
	all, err := s.ReadAll(ctx, from, 1000)
	if err != nil {
		t.Fatal(err)
	}
	all = own(h, all, streams...)
	if len(all) != len(want) {
		t.Fatalf("got %d events, want %d", len(all), len(want))
	}
	for i := range all {
		if all[i].ID != want[i] {
			t.Fatalf("event %d: got %s, want %s (commit order)", i, all[i].ID, want[i])
		}
		if i > 0 && !all[i-1].Position.Less(all[i].Position) {
			t.Fatalf("positions not increasing at %d", i)
		}
		if h.Features.DensePositions && all[i].Position.Commit != uint64(i+1) {
			t.Fatalf("event %d at %s, want dense positions", i, all[i].Position)
		}
	}
	readAllFromPosition(t, h, s, all, streams)
	head, err := s.Head(ctx)
	last := all[len(all)-1].Position
	if err != nil || head != last && !(h.Features.SharedLog && last.Less(head)) {
		t.Fatalf("head: got %s, %v; want %s", head, err, last)
	}
	rest, err := s.ReadAll(ctx, head, 10)
	if err != nil || len(own(h, rest, streams...)) != 0 {
		t.Fatalf("read after head: got %d events, %v; want none", len(rest), err)
	}
}

// readAllFromPosition checks a page read from the position of the fifth
// of all, the test's events in commit order.
func readAllFromPosition(t *testing.T, h EventStoreHarness, s kernel.EventStore, all []kernel.Record, streams []string) {
	t.Helper()
	page, err := s.ReadAll(context.Background(), all[4].Position, 3)
	if err != nil {
		t.Fatal(err)
	}
	if h.Features.SharedLog {
		// Other tests' events may come in between; ours must follow in order.
		mine := own(h, page, streams...)
		if len(page) != 3 || !all[4].Position.Less(page[0].Position) || len(mine) == 0 {
			t.Fatalf("read from a position: got %d events starting %v, want 3 after event 4", len(page), page)
		}
		for i, r := range mine {
			if r.ID != all[5+i].ID {
				t.Fatalf("read from a position: event %d is %s, want %s", i, r.ID, all[5+i].ID)
			}
		}
	} else if len(page) != 3 || page[0].ID != all[5].ID || page[2].ID != all[7].ID {
		t.Fatalf("read from a position: got %d events starting %v, want 3 starting after event 4", len(page), page)
	}
}

func subscribeCatchesUp(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	st := newStream()
	from := start(t, h, s)
	if _, err := s.Append(ctx, st, 0, Recs("ws", st, 0, 5)); err != nil {
		t.Fatal(err)
	}
	all, _ := s.ReadAll(ctx, from, 100)
	all = own(h, all, st)
	keep := func(r kernel.Record) bool { return len(own(h, []kernel.Record{r}, st)) == 1 }
	got := collect(t, s, all[1].Position, 6, keep, func() {
		if _, err := s.Append(ctx, st, 5, Recs("ws", st, 5, 3)); err != nil {
			t.Error(err)
		}
	})
	if got[0].Version != 3 || got[5].Version != 8 {
		t.Fatalf("got versions %d..%d, want 3..8 (from is exclusive, live events follow)", got[0].Version, got[5].Version)
	}
	checkpoint := got[5].Position
	s = h.Reopen(t, s)
	if _, err := s.Append(ctx, st, 8, Recs("ws", st, 8, 2)); err != nil {
		t.Fatal(err)
	}
	got = collect(t, s, checkpoint, 2, keep, nil)
	if got[0].Version != 9 || got[1].Version != 10 {
		t.Fatalf("after restart: got versions %d, %d; want 9, 10", got[0].Version, got[1].Version)
	}
}

func concurrentAppendsOneWins(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	st := newStream()
	if _, err := s.Append(ctx, st, 0, Recs("ws", st, 0, 1)); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = s.Append(ctx, st, 1, Recs("ws", st, 1, 2)) })
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, kernel.ErrConcurrency):
			t.Fatalf("got %v, want nil or ErrConcurrency", err)
		}
	}
	got, _ := s.ReadStream(ctx, "ws", st)
	if wins != 1 || len(got) != 3 {
		t.Fatalf("got %d winners and %d events, want 1 and 3", wins, len(got))
	}
}

func concurrentAppendersLiveSubscriber(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	const writers, perWriter, nStreams = 16, 40, 8
	streams := make([]string, nStreams)
	for i := range streams {
		streams[i] = newStream()
	}
	from := start(t, h, s)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu        sync.Mutex
		committed = map[ulid.ULID]bool{}
		seen      = map[ulid.ULID]int{}
		last      kernel.Position
		order     error
	)
	subDone := make(chan error, 1)
	go func() {
		subDone <- s.Subscribe(ctx, from, func(_ context.Context, recs []kernel.Record) error {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range recs {
				if !last.Less(r.Position) && order == nil {
					order = fmt.Errorf("position %s after %s", r.Position, last)
				}
				last = r.Position
			}
			for _, r := range own(h, recs, streams...) {
				seen[r.ID]++
			}
			return nil
		})
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range perWriter {
				st := streams[rng.IntN(nStreams)]
				for {
					recs, err := s.ReadStream(ctx, "ws", st)
					var v uint64
					if err == nil {
						v = recs[len(recs)-1].Version
					} else if !errors.Is(err, kernel.ErrNotFound) {
						t.Error(err)
						return
					}
					batch := Recs("ws", st, v, 1+rng.IntN(2))
					_, err = s.Append(ctx, st, v, batch)
					if errors.Is(err, kernel.ErrConcurrency) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					for _, r := range batch {
						committed[r.ID] = true
					}
					mu.Unlock()
					break
				}
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= len(committed) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-subDone
	mu.Lock()
	defer mu.Unlock()
	if order != nil {
		t.Fatal(order)
	}
	for id := range committed {
		if seen[id] != 1 {
			t.Fatalf("event %s seen %d times, want exactly once", id, seen[id])
		}
	}
	if len(seen) != len(committed) {
		t.Fatalf("subscriber saw %d events, %d were committed", len(seen), len(committed))
	}
}

func largeStreamsAndPayloads(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	st := newStream()
	const total, batch = 5000, 250
	for v := uint64(0); v < total; v += batch {
		if _, err := s.Append(ctx, st, v, Recs("ws", st, v, batch)); err != nil {
			t.Fatal(err)
		}
	}
	big := Rec("ws", st, total+1)
	big.Sealed = bytes.Repeat([]byte{0xAB}, 256<<10)
	if _, err := s.Append(ctx, st, total, []kernel.Record{big}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadStream(ctx, "ws", st)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != total+1 {
		t.Fatalf("got %d events, want %d", len(got), total+1)
	}
	for i, r := range got {
		if r.Version != uint64(i+1) {
			t.Fatalf("event %d has version %d", i, r.Version)
		}
	}
	if !bytes.Equal(got[total].Sealed, big.Sealed) {
		t.Fatal("the large payload did not round-trip")
	}
}

func workspaceLog(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	lr, ok := s.(ledger.LogReader)
	if !ok {
		if !h.Features.NoLogReader {
			t.Fatal("the store does not implement ledger.LogReader; declare Features.NoLogReader")
		}
		return
	}
	a, b, other := newStream(), newStream(), newStream()
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	var want []kernel.Record
	for i := range 10 {
		st, ws := a, "ws"
		switch i % 3 {
		case 1:
			st = b
		case 2:
			st, ws = other, "other"
		}
		cur, _ := s.ReadStream(ctx, ws, st)
		r := Rec(ws, st, uint64(len(cur))+1)
		r.Time = base.Add(time.Duration(i) * time.Hour)
		if i%2 == 0 {
			r.Type, r.Actor.Principal = contact.TypeArchived, "tok_two"
		}
		if _, err := s.Append(ctx, st, uint64(len(cur)), []kernel.Record{r}); err != nil {
			t.Fatal(err)
		}
		if ws == "ws" {
			want = append(want, r)
		}
	}
	read := func(q ledger.LogQuery) []kernel.Record {
		t.Helper()
		q.Workspace = "ws"
		if q.Limit == 0 {
			q.Limit = 100
		}
		got, err := lr.ReadLog(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(got); i++ {
			if !got[i-1].Position.Less(got[i].Position) {
				t.Fatalf("not in global order at %d", i)
			}
		}
		for _, r := range got {
			if !q.Matches(r) {
				t.Fatalf("event %s does not match %+v", r.ID, q)
			}
		}
		return got
	}
	// A log that orders by transaction (PostgreSQL) shows events only
	// once every older transaction on the server has ended; other
	// tests' transactions may hold them back a moment.
	all := read(ledger.LogQuery{})
	for deadline := time.Now().Add(20 * time.Second); len(all) < len(want) && time.Now().Before(deadline); all = read(ledger.LogQuery{}) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(all) != len(want) {
		t.Fatalf("got %d events, want the workspace's %d", len(all), len(want))
	}
	for i := range all {
		if all[i].ID != want[i].ID {
			t.Fatalf("event %d: got %s, want %s", i, all[i].ID, want[i].ID)
		}
	}
	// Resuming page by page gives the same events.
	var paged []kernel.Record
	var after kernel.Position
	for {
		p := read(ledger.LogQuery{After: after, Limit: 2})
		paged = append(paged, p...)
		if len(p) < 2 {
			break
		}
		after = p[len(p)-1].Position
	}
	if len(paged) != len(all) {
		t.Fatalf("paging read %d events, want %d", len(paged), len(all))
	}
	for name, tc := range map[string]struct {
		q    ledger.LogQuery
		want int
	}{
		"since":  {ledger.LogQuery{Since: base.Add(4 * time.Hour)}, 4},
		"until":  {ledger.LogQuery{Until: base.Add(4 * time.Hour)}, 3},
		"type":   {ledger.LogQuery{Types: []string{contact.TypeArchived}}, 3},
		"types":  {ledger.LogQuery{Types: []string{contact.TypeArchived, contact.TypeUpdated}}, 7},
		"actor":  {ledger.LogQuery{Actor: "tok_two"}, 3},
		"stream": {ledger.LogQuery{Stream: b}, 3},
		"all":    {ledger.LogQuery{Stream: a, Types: []string{contact.TypeArchived}, Since: base.Add(time.Hour)}, 1},
	} {
		if got := read(tc.q); len(got) != tc.want {
			t.Errorf("%s: got %d events, want %d", name, len(got), tc.want)
		}
	}
}

func readByStreamToStableHead(t *testing.T, h EventStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	sr, ok := s.(projections.StreamReader)
	if !ok {
		if !h.Features.NoStreamReader {
			t.Fatal("the store does not implement projections.StreamReader; declare Features.NoStreamReader")
		}
		return
	}
	if head, err := sr.StableHead(ctx); err != nil || !head.IsZero() {
		t.Fatalf("empty log: stable head %s, %v", head, err)
	}
	streams := []string{newStream(), newStream(), newStream()}
	for round := range 3 {
		for i, st := range streams {
			if _, err := s.Append(ctx, st, uint64(round*(i+1)), Recs("ws", st, uint64(round*(i+1)), i+1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	head, err := sr.StableHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := s.Head(ctx); h != head {
		t.Fatalf("stable head %s, head %s: want equal with nothing in flight", head, h)
	}
	// Events after the stable head are not read by stream.
	late := newStream()
	if _, err := s.Append(ctx, late, 0, Recs("ws", late, 0, 2)); err != nil {
		t.Fatal(err)
	}
	var got []kernel.Record
	st, v := "", uint64(0)
	for {
		page, err := sr.ReadByStream(ctx, head, st, v, 4)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if len(page) < 4 {
			break
		}
		st, v = page[len(page)-1].Stream, page[len(page)-1].Version
	}
	if len(got) != 18 {
		t.Fatalf("read %d events by stream, want 18", len(got))
	}
	for i := 1; i < len(got); i++ {
		p, c := got[i-1], got[i]
		if p.Stream > c.Stream || (p.Stream == c.Stream && p.Version+1 != c.Version) {
			t.Fatalf("not in stream and version order at %d: %s v%d then %s v%d", i, p.Stream, p.Version, c.Stream, c.Version)
		}
		if c.Stream == late || head.Less(c.Position) {
			t.Fatalf("read an event after the stable head: %s", c.Position)
		}
	}
	all, _ := s.ReadAll(ctx, kernel.Position{}, 100)
	for _, tc := range []struct {
		after, upTo kernel.Position
		want        int64
	}{
		{kernel.Position{}, head, 18},
		{all[3].Position, head, 14},
		{head, all[len(all)-1].Position, 2},
		{head, head, 0},
	} {
		if n, err := sr.CountEvents(ctx, tc.after, tc.upTo); err != nil || n != tc.want {
			t.Errorf("count (%s, %s]: got %d, %v; want %d", tc.after, tc.upTo, n, err, tc.want)
		}
	}
}

// collect subscribes from `from` until n events that keep accepts arrive,
// calling live once the subscription has caught up with what was there.
func collect(t *testing.T, s kernel.EventStore, from kernel.Position, n int, keep func(kernel.Record) bool, live func()) []kernel.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []kernel.Record
	var once sync.Once
	errStop := errors.New("enough")
	err := s.Subscribe(ctx, from, func(_ context.Context, recs []kernel.Record) error {
		for _, r := range recs {
			if keep(r) {
				got = append(got, r)
			}
		}
		if len(got) >= n {
			return errStop
		}
		if live != nil {
			once.Do(func() { go live() })
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("subscribe: got %v after %d events, want %d events", err, len(got), n)
	}
	if len(got) != n {
		t.Fatalf("got %d events, want %d", len(got), n)
	}
	return got
}
