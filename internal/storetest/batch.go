package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

// batchCases are the contract of batched appends (kernel.BatchAppender):
// per-stream commit, each stream checked against its own expected version.
// Every store passes them, through its own AppendMany or the fallback.
var batchCases = []struct {
	name string
	run  func(t *testing.T, h EventStoreHarness, s kernel.EventStore)
}{
	{"appends every stream at its own version", func(t *testing.T, h EventStoreHarness, s kernel.EventStore) {
		ctx := context.Background()
		a, b, c := newStream(), newStream(), newStream()
		mustAppend(t, s, b, 0, Recs("ws", b, 0, 2))
		batch := []kernel.StreamAppend{
			{Stream: a, Expected: 0, Events: Recs("ws", a, 0, 2)},
			{Stream: b, Expected: 2, Events: Recs("ws", b, 2, 1)},
			{Stream: c, Expected: 0, Events: Recs("ws-other", c, 0, 1)},
		}
		res := mustAppendMany(t, s, batch)
		for i, r := range res {
			if r.Err != nil {
				t.Fatalf("stream %d: %v", i, r.Err)
			}
			ws := batch[i].Events[0].Workspace
			got, err := s.ReadStream(ctx, ws, batch[i].Stream)
			if err != nil {
				t.Fatal(err)
			}
			want := batch[i].Events
			tail := got[len(got)-len(want):]
			for j := range want {
				if tail[j].ID != want[j].ID || tail[j].Version != want[j].Version || !bytes.Equal(tail[j].Hash, want[j].Hash) {
					t.Fatalf("stream %d, event %d: got %+v, want %+v", i, j, tail[j], want[j])
				}
			}
			if last := got[len(got)-1].Position; r.Position != last {
				t.Fatalf("stream %d: result at %s, its last event at %s", i, r.Position, last)
			}
		}
		if got, _ := s.ReadStream(ctx, "ws", b); len(got) != 3 {
			t.Fatalf("b has %d events, want 3", len(got))
		}
	}},
	{"a stale stream fails alone; the others are appended", func(t *testing.T, h EventStoreHarness, s kernel.EventStore) {
		ctx := context.Background()
		stale, fresh, ahead := newStream(), newStream(), newStream()
		mustAppend(t, s, stale, 0, Recs("ws", stale, 0, 2))
		res := mustAppendMany(t, s, []kernel.StreamAppend{
			{Stream: stale, Expected: 1, Events: Recs("ws", stale, 1, 1)},
			{Stream: fresh, Expected: 0, Events: Recs("ws", fresh, 0, 3)},
			{Stream: ahead, Expected: 4, Events: Recs("ws", ahead, 4, 1)},
		})
		if !errors.Is(res[0].Err, kernel.ErrConcurrency) || !errors.Is(res[2].Err, kernel.ErrConcurrency) {
			t.Fatalf("stale and ahead streams: got %v and %v, want ErrConcurrency", res[0].Err, res[2].Err)
		}
		if res[1].Err != nil {
			t.Fatalf("the sound stream failed with the stale one: %v", res[1].Err)
		}
		if got, _ := s.ReadStream(ctx, "ws", stale); len(got) != 2 {
			t.Fatalf("the stale stream has %d events, want 2", len(got))
		}
		if got, _ := s.ReadStream(ctx, "ws", fresh); len(got) != 3 {
			t.Fatalf("the sound stream has %d events, want 3", len(got))
		}
		if _, err := s.ReadStream(ctx, "ws", ahead); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("the stream appended ahead of its version exists: %v", err)
		}
	}},
	{"a stream of another workspace fails alone with ErrNotFound", func(t *testing.T, h EventStoreHarness, s kernel.EventStore) {
		ctx := context.Background()
		theirs, mine := newStream(), newStream()
		mustAppend(t, s, theirs, 0, Recs("ws-a", theirs, 0, 1))
		res := mustAppendMany(t, s, []kernel.StreamAppend{
			{Stream: theirs, Expected: 1, Events: Recs("ws-b", theirs, 1, 1)},
			{Stream: mine, Expected: 0, Events: Recs("ws-b", mine, 0, 1)},
		})
		if !errors.Is(res[0].Err, kernel.ErrNotFound) || res[1].Err != nil {
			t.Fatalf("got %v and %v, want ErrNotFound and nil", res[0].Err, res[1].Err)
		}
		if got, _ := s.ReadStream(ctx, "ws-a", theirs); len(got) != 1 {
			t.Fatalf("the other workspace's stream has %d events, want 1", len(got))
		}
	}},
	{"an invalid part fails alone", func(t *testing.T, h EventStoreHarness, s kernel.EventStore) {
		ctx := context.Background()
		gap, empty, good := newStream(), newStream(), newStream()
		bad := Recs("ws", gap, 0, 3)
		bad[2].Version = 9
		res := mustAppendMany(t, s, []kernel.StreamAppend{
			{Stream: gap, Expected: 0, Events: bad},
			{Stream: empty, Expected: 0},
			{Stream: good, Expected: 0, Events: Recs("ws", good, 0, 1)},
		})
		if res[0].Err == nil || res[1].Err == nil || res[2].Err != nil {
			t.Fatalf("got %v, %v, %v; want errors for the gap and the empty part only", res[0].Err, res[1].Err, res[2].Err)
		}
		for _, st := range []string{gap, empty} {
			if _, err := s.ReadStream(ctx, "ws", st); !errors.Is(err, kernel.ErrNotFound) {
				t.Fatalf("an invalid part was written: %v", err)
			}
		}
	}},
	{"a stream named twice refuses the batch whole", func(t *testing.T, h EventStoreHarness, s kernel.EventStore) {
		ctx := context.Background()
		a, b := newStream(), newStream()
		res, err := kernel.AppendMany(ctx, s, []kernel.StreamAppend{
			{Stream: a, Expected: 0, Events: Recs("ws", a, 0, 1)},
			{Stream: b, Expected: 0, Events: Recs("ws", b, 0, 1)},
			{Stream: a, Expected: 1, Events: Recs("ws", a, 1, 1)},
		})
		if !errors.Is(err, kernel.ErrDuplicateStream) || res != nil {
			t.Fatalf("got %v, %v; want ErrDuplicateStream and no results", res, err)
		}
		for _, st := range []string{a, b} {
			if _, err := s.ReadStream(ctx, "ws", st); !errors.Is(err, kernel.ErrNotFound) {
				t.Fatalf("a refused batch wrote %s: %v", st, err)
			}
		}
		if res, err := kernel.AppendMany(ctx, s, nil); err != nil || len(res) != 0 {
			t.Fatalf("an empty batch: got %v, %v", res, err)
		}
	}},
	{"the log holds a batch in order, for readers and subscribers", func(t *testing.T, h EventStoreHarness, s kernel.EventStore) {
		from := start(t, h, s)
		var batch []kernel.StreamAppend
		var streams []string
		for i := range 20 {
			st := newStream()
			streams = append(streams, st)
			batch = append(batch, kernel.StreamAppend{Stream: st, Expected: 0, Events: Recs("ws", st, 0, 1+i%3)})
		}
		res := mustAppendMany(t, s, batch)
		want := 0
		for i, r := range res {
			if r.Err != nil {
				t.Fatalf("stream %d: %v", i, r.Err)
			}
			want += len(batch[i].Events)
		}
		keep := func(r kernel.Record) bool { return len(own(h, []kernel.Record{r}, streams...)) == 1 }
		got := collect(t, s, from, want, keep, nil)
		last := map[string]uint64{}
		for i, r := range got {
			if i > 0 && !got[i-1].Position.Less(r.Position) {
				t.Fatalf("positions not increasing at %d", i)
			}
			if r.Version != last[r.Stream]+1 {
				t.Fatalf("%s: version %d after %d", r.Stream, r.Version, last[r.Stream])
			}
			last[r.Stream] = r.Version
		}
		for i, a := range batch {
			if last[a.Stream] != uint64(len(a.Events)) {
				t.Fatalf("stream %d: subscriber saw %d events, want %d", i, last[a.Stream], len(a.Events))
			}
		}
	}},
	{"racing batches: each stream's version is taken once", func(t *testing.T, h EventStoreHarness, s kernel.EventStore) {
		ctx := context.Background()
		const racers, nStreams = 6, 12
		streams := make([]string, nStreams)
		for i := range streams {
			streams[i] = newStream()
		}
		var wg sync.WaitGroup
		batches := make([][]kernel.StreamAppend, racers)
		results := make([][]kernel.AppendResult, racers)
		errs := make([]error, racers)
		for r := range racers {
			// Each racer takes every stream, starting at its own, with 1 or 2 events.
			for i := range nStreams {
				st := streams[(i+r)%nStreams]
				batches[r] = append(batches[r], kernel.StreamAppend{Stream: st, Expected: 0, Events: Recs("ws", st, 0, 1+(i+r)%2)})
			}
			wg.Go(func() { results[r], errs[r] = kernel.AppendMany(ctx, s, batches[r]) })
		}
		wg.Wait()
		winners := map[string][]kernel.Record{}
		for r := range racers {
			if errs[r] != nil {
				t.Fatalf("racer %d: %v", r, errs[r])
			}
			for i, res := range results[r] {
				st := batches[r][i].Stream
				switch {
				case res.Err == nil:
					if winners[st] != nil {
						t.Fatalf("%s: two batches won version 1", st)
					}
					winners[st] = batches[r][i].Events
				case !errors.Is(res.Err, kernel.ErrConcurrency):
					t.Fatalf("racer %d, %s: got %v, want nil or ErrConcurrency", r, st, res.Err)
				}
			}
		}
		for _, st := range streams {
			got, err := s.ReadStream(ctx, "ws", st)
			w := winners[st]
			if err != nil || len(got) != len(w) {
				t.Fatalf("%s: %d events (%v), the winner appended %d", st, len(got), err, len(w))
			}
			for i := range got {
				if got[i].ID != w[i].ID {
					t.Fatalf("%s: event %d is not the winner's", st, i)
				}
			}
		}
	}},
	{"concurrent single appends share commits and keep their own outcomes", func(t *testing.T, h EventStoreHarness, s kernel.EventStore) {
		// Group commit (PostgreSQL, SQLite) puts appends from different
		// callers in one transaction: a stale one among them must fail
		// alone, and every acknowledged one must be readable.
		ctx := context.Background()
		shared := newStream()
		mustAppend(t, s, shared, 0, Recs("ws", shared, 0, 1))
		const n = 48
		var wg sync.WaitGroup
		streams, errs := make([]string, n), make([]error, n)
		for i := range n {
			wg.Go(func() {
				if i%4 == 0 {
					// Every fourth appender races the others for one stream's version 2.
					streams[i] = shared
					_, errs[i] = s.Append(ctx, shared, 1, Recs("ws", shared, 1, 1))
					return
				}
				streams[i] = newStream()
				_, errs[i] = s.Append(ctx, streams[i], 0, Recs("ws", streams[i], 0, 1))
			})
		}
		wg.Wait()
		wins := 0
		for i, err := range errs {
			if streams[i] == shared {
				if err == nil {
					wins++
				} else if !errors.Is(err, kernel.ErrConcurrency) {
					t.Fatalf("racer for the shared stream: %v", err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("appender %d failed beside the racers: %v", i, err)
			}
			if got, err := s.ReadStream(ctx, "ws", streams[i]); err != nil || len(got) != 1 {
				t.Fatalf("appender %d: acknowledged, but read %d events, %v", i, len(got), err)
			}
		}
		if got, _ := s.ReadStream(ctx, "ws", shared); wins != 1 || len(got) != 2 {
			t.Fatalf("shared stream: %d winners and %d events, want 1 and 2", wins, len(got))
		}
	}},
	{"a batch survives a restart", func(t *testing.T, h EventStoreHarness, s kernel.EventStore) {
		ctx := context.Background()
		a, b := newStream(), newStream()
		mustAppendMany(t, s, []kernel.StreamAppend{
			{Stream: a, Expected: 0, Events: Recs("ws", a, 0, 2)},
			{Stream: b, Expected: 0, Events: Recs("ws", b, 0, 1)},
		})
		s = h.Reopen(t, s)
		for st, n := range map[string]int{a: 2, b: 1} {
			if got, err := s.ReadStream(ctx, "ws", st); err != nil || len(got) != n {
				t.Fatalf("after a restart %s has %d events (%v), want %d", st, len(got), err, n)
			}
		}
	}},
}

// keyedCases are the contract of appends that carry new contacts' keys
// (ledger.KeyedAppender), for stores that keep the log and the key vault
// in one database.
var keyedCases = []storeCase[keyedStore]{
	{"keys and appends are stored together", func(t *testing.T, s keyedStore) {
		ctx := context.Background()
		a, b := contact.NewID(), contact.NewID()
		keys := []ledger.KeyRow{keyRow(a), {}}
		res, err := s.AppendWithKeys(ctx, keys, []kernel.StreamAppend{
			{Stream: a.Stream(), Expected: 0, Events: Recs("ws", a.Stream(), 0, 1)},
			{Stream: b.Stream(), Expected: 0, Events: Recs("ws", b.Stream(), 0, 2)},
		})
		if err != nil || res[0].Err != nil || res[1].Err != nil {
			t.Fatalf("got %v, %v", res, err)
		}
		got, err := s.GetKeys(ctx, "ws", []string{a.String(), b.String()})
		if err != nil || len(got) != 1 || !bytes.Equal(got[a.String()].Wrapped, keys[0].Wrapped) {
			t.Fatalf("keys: got %v, %v; want a's only", got, err)
		}
		if recs, err := s.ReadStream(ctx, "ws", b.Stream()); err != nil || len(recs) != 2 {
			t.Fatalf("b without a key: %d events, %v", len(recs), err)
		}
	}},
	{"a taken key fails its stream alone, storing nothing of it", func(t *testing.T, s keyedStore) {
		ctx := context.Background()
		taken, other := contact.NewID(), contact.NewID()
		first := keyRow(taken)
		if err := s.PutKey(ctx, first); err != nil {
			t.Fatal(err)
		}
		res, err := s.AppendWithKeys(ctx, []ledger.KeyRow{keyRow(taken), keyRow(other)}, []kernel.StreamAppend{
			{Stream: taken.Stream(), Expected: 0, Events: Recs("ws", taken.Stream(), 0, 1)},
			{Stream: other.Stream(), Expected: 0, Events: Recs("ws", other.Stream(), 0, 1)},
		})
		if err != nil || !errors.Is(res[0].Err, kernel.ErrAlreadyExists) || res[1].Err != nil {
			t.Fatalf("got %v, %v; want ErrAlreadyExists, then nil", res, err)
		}
		if _, err := s.ReadStream(ctx, "ws", taken.Stream()); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("the stream of a taken key was appended: %v", err)
		}
		got, _ := s.GetKeys(ctx, "ws", []string{taken.String()})
		if !bytes.Equal(got[taken.String()].Wrapped, first.Wrapped) {
			t.Fatal("the taken key was replaced")
		}
	}},
	{"a stale stream stores no key", func(t *testing.T, s keyedStore) {
		ctx := context.Background()
		id := contact.NewID()
		mustAppend(t, s, id.Stream(), 0, Recs("ws", id.Stream(), 0, 1))
		res, err := s.AppendWithKeys(ctx, []ledger.KeyRow{keyRow(id)}, []kernel.StreamAppend{
			{Stream: id.Stream(), Expected: 0, Events: Recs("ws", id.Stream(), 0, 1)},
		})
		if err != nil || !errors.Is(res[0].Err, kernel.ErrConcurrency) {
			t.Fatalf("got %v, %v; want ErrConcurrency", res, err)
		}
		if got, _ := s.GetKeys(ctx, "ws", []string{id.String()}); len(got) != 0 {
			t.Fatal("a key was stored for a stream whose append failed")
		}
	}},
	{"racing creates of one contact: one key, one stream", func(t *testing.T, s keyedStore) {
		ctx := context.Background()
		id := contact.NewID()
		const n = 8
		var wg sync.WaitGroup
		res, errs := make([][]kernel.AppendResult, n), make([]error, n)
		keys := make([]ledger.KeyRow, n)
		for i := range n {
			keys[i] = keyRow(id)
			wg.Go(func() {
				res[i], errs[i] = s.AppendWithKeys(ctx, keys[i:i+1], []kernel.StreamAppend{
					{Stream: id.Stream(), Expected: 0, Events: Recs("ws", id.Stream(), 0, 1)},
				})
			})
		}
		wg.Wait()
		winner := -1
		for i := range n {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if res[i][0].Err == nil {
				if winner >= 0 {
					t.Fatal("two creates of one contact won")
				}
				winner = i
			} else if !errors.Is(res[i][0].Err, kernel.ErrAlreadyExists) && !errors.Is(res[i][0].Err, kernel.ErrConcurrency) {
				t.Fatalf("a losing create: %v", res[i][0].Err)
			}
		}
		got, _ := s.GetKeys(ctx, "ws", []string{id.String()})
		recs, _ := s.ReadStream(ctx, "ws", id.Stream())
		if winner < 0 || len(recs) != 1 || !bytes.Equal(got[id.String()].Wrapped, keys[winner].Wrapped) {
			t.Fatalf("winner %d, %d events, key %x; want one winner whose key is stored", winner, len(recs), got[id.String()].Wrapped)
		}
	}},
}

// keyedStore is a store that keeps the log and the key vault together.
type keyedStore interface {
	kernel.EventStore
	ledger.KeyStore
	ledger.KeyedAppender
}

func keyRow(id contact.ID) ledger.KeyRow {
	return ledger.KeyRow{Owner: id.String(), Workspace: "ws", KeyID: "dk_" + contact.NewID().String(), KEKID: "kek-suite",
		Wrapped: []byte("wrapped-" + contact.NewID().String()), CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
}

// runBatches runs the batch cases, and the keyed ones on stores that keep keys,
// in parallel: each case has a store of its own.
func runBatches(t *testing.T, h EventStoreHarness) {
	for _, c := range batchCases {
		t.Run("batch: "+c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, h, h.New(t))
		})
	}
	runStoreCases(t, h, "keyed batch: ", keyedCases, func(s kernel.EventStore) bool { _, ok := s.(ledger.KeyStore); return ok },
		"keys beside its log", "store them with appends (ledger.KeyedAppender)")
	runStoreCases(t, h, "claimed batch: ", claimedCases, func(s kernel.EventStore) bool { _, ok := s.(ledger.IdentityClaims); return ok },
		"identity claims beside its log", "store them with appends (ledger.ClaimedAppender)")
}

// storeCase is a contract case for stores that keep more than the log.
type storeCase[S any] struct {
	name string
	run  func(t *testing.T, s S)
}

// runStoreCases runs cases on the harness's store when it keeps (what)
// beside its log; such a store must be an S, which can (can).
func runStoreCases[S any](t *testing.T, h EventStoreHarness, prefix string, cases []storeCase[S], keeps func(kernel.EventStore) bool, what, can string) {
	for _, c := range cases {
		t.Run(prefix+c.name, func(t *testing.T) {
			t.Parallel()
			s := h.New(t)
			if !keeps(s) {
				t.Skipf("%T keeps no %s", s, what)
			}
			ss, ok := s.(S)
			if !ok {
				t.Fatalf("%T keeps %s but cannot %s", s, what, can)
			}
			c.run(t, ss)
		})
	}
}

func mustAppend(t *testing.T, s kernel.EventStore, stream string, expected uint64, recs []kernel.Record) {
	t.Helper()
	if _, err := s.Append(context.Background(), stream, expected, recs); err != nil {
		t.Fatal(err)
	}
}

func mustAppendMany(t *testing.T, s kernel.EventStore, batch []kernel.StreamAppend) []kernel.AppendResult {
	t.Helper()
	res, err := kernel.AppendMany(context.Background(), s, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(batch) {
		t.Fatalf("got %d results for %d streams", len(res), len(batch))
	}
	return res
}
