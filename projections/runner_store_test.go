package projections_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/ledgertest"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
	"github.com/oklog/ulid/v2"
)

// fullStore is every projections port the real stores serve.
type fullStore interface {
	projections.Store
	projections.ShadowStore
	projections.FailureStore
	projections.Compacter
}

// recorder wraps a store: it records every committed batch and every
// failure recorded, and fails the commits fail says to fail.
type recorder struct {
	fullStore
	mu      sync.Mutex
	batches map[string][]projections.Batch
	failed  []string
	fail    func(b projections.Batch) error
}

func newRecorder(s projections.Store) *recorder {
	return &recorder{fullStore: s.(fullStore), batches: map[string][]projections.Batch{}}
}

func (r *recorder) Commit(ctx context.Context, b projections.Batch) error {
	r.mu.Lock()
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		if err := fail(b); err != nil {
			return err
		}
	}
	if err := r.fullStore.Commit(ctx, b); err != nil {
		return err
	}
	r.mu.Lock()
	r.batches[b.Projection] = append(r.batches[b.Projection], b)
	r.mu.Unlock()
	return nil
}

func (r *recorder) SetFailed(ctx context.Context, name string, since time.Time) error {
	r.mu.Lock()
	r.failed = append(r.failed, name)
	r.mu.Unlock()
	return r.fullStore.SetFailed(ctx, name, since)
}

func (r *recorder) setFail(f func(projections.Batch) error) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

func (r *recorder) committed(name string) []projections.Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches[name])
}

func (r *recorder) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.failed)
}

// subscriptions wraps the log and records where each subscription starts.
type subscriptions struct {
	kernel.EventStore
	mu    sync.Mutex
	froms []kernel.Position
}

func (s *subscriptions) Subscribe(ctx context.Context, from kernel.Position, h func(context.Context, []kernel.Record) error) error {
	s.mu.Lock()
	s.froms = append(s.froms, from)
	s.mu.Unlock()
	return s.EventStore.Subscribe(ctx, from, h)
}

func (s *subscriptions) starts() []kernel.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.froms)
}

// rows returns the rows of a view for the given contacts.
func rows(t *testing.T, s projections.Store, view string, ids ...contact.ID) map[contact.ID]projections.Row {
	t.Helper()
	refs := make([]projections.Ref, len(ids))
	for i, id := range ids {
		refs[i] = projections.Ref{Workspace: ledgertest.Workspace, ID: id}
	}
	got, err := s.Rows(t.Context(), view, refs)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func checkpoint(t *testing.T, s projections.Store, name string) kernel.Position {
	t.Helper()
	cp, err := s.Checkpoint(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func status(t *testing.T, r *projections.Runner, name string) projections.Status {
	t.Helper()
	all, err := r.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no status for %s", name)
	return projections.Status{}
}

// eventually polls cond until it holds or 20 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRunnerKeepsEachView moves contacts through every state and runs the
// projections: each view holds exactly the contacts in its state, with
// rows carrying their blind indexes and positions; the identity index
// holds the live ones; the erasure projection's batch names the
// tombstone's key; every checkpoint reaches the head and the status says
// live with no lag. On PostgreSQL the runner runs each projection under
// the store's lease and says it leads.
func TestRunnerKeepsEachView(t *testing.T) {
	t.Parallel()
	ledgertest.Stores(t, func(t *testing.T, o ledgertest.Options) {
		var rec *recorder
		o.Projections = func(s projections.Store) projections.Store {
			rec = newRecorder(s)
			return rec
		}
		e := ledgertest.New(t, o)
		ctx := t.Context()
		active := e.Create(t, "Ann", "ann@example.com", "vip")
		archived := e.Create(t, "Bob", "bob@example.com")
		e.Move(t, archived, ledger.Archive)
		trashed := e.Create(t, "Cat", "cat@example.com")
		e.Move(t, trashed, ledger.Trash)
		anon := e.Create(t, "Dan", "")
		e.Move(t, anon, ledger.Trash)
		e.Move(t, anon, ledger.Anonymize)
		purged := e.Create(t, "Eve", "eve@example.com")
		e.Move(t, purged, ledger.Trash)
		tomb := e.Move(t, purged, ledger.Purge)
		head := e.CaughtUp(t)
		all := []contact.ID{active, archived, trashed, anon, purged}

		want := map[string][]contact.ID{
			"active": {active}, "archived": {archived}, "trash": {trashed}, "anonymized": {anon},
			projections.Identities: {active, archived, trashed},
		}
		for view, ids := range want {
			got := rows(t, e.Store, view, all...)
			if len(got) != len(ids) {
				t.Errorf("%s holds %d of the contacts; want %v", view, len(got), ids)
			}
			for _, id := range ids {
				if _, ok := got[id]; !ok {
					t.Errorf("%s lacks %s", view, id)
				}
			}
		}
		row := rows(t, e.Store, "active", active)[active]
		if row.EmailIndex == "" || len(row.TagIndexes) != 1 || row.Contact.Personal.Name != "Ann" || row.Position.IsZero() || !row.SortAt.Equal(row.Contact.CreatedAt) {
			t.Errorf("the active row: %+v", row)
		}
		var destroyed []string
		for _, b := range rec.committed(projections.Erasure) {
			for _, ref := range b.DestroyKeys {
				destroyed = append(destroyed, ref.ID.String()+"="+b.Tombstones[ref.ID])
			}
		}
		if !slices.Contains(destroyed, purged.String()+"="+tomb.EventID) {
			t.Errorf("erasure batches destroyed %v; want %s with its tombstone %s", destroyed, purged, tomb.EventID)
		}
		for _, name := range projections.Names() {
			// A checkpoint that only moves past events that change none
			// of a projection's rows may be stored a moment later.
			eventually(t, name+"'s stored checkpoint to reach the head", func() bool { return checkpoint(t, e.Store, name) == head })
			st := status(t, e.Runner, name)
			if st.State != projections.StateLive || st.Checkpoint != head || st.Head != head || st.LagEvents != 0 || st.LagSeconds != 0 || !st.Leading || st.Version != projections.Version {
				t.Errorf("status of %s: %+v", name, st)
			}
		}
		// A listing reads the view through the service.
		page, err := e.Svc.List(ctx, ledger.ListQuery{Workspace: ledgertest.Workspace, View: "active", Tag: "vip", Limit: 10}, head, "", "")
		if err != nil || len(page.Items) != 1 || page.Items[0].ID != active {
			t.Fatalf("listing active by tag: %+v, %v", page.Items, err)
		}
	})
}

// TestRunnerResumesFromItsCheckpoint runs the projections, stops them,
// writes more while they are stopped, and starts a new runner: it
// subscribes from the checkpoints the first one committed (not from the
// start of the log), and catches up. Every projection's batches are
// contiguous: each starts where the previous one ended.
func TestRunnerResumesFromItsCheckpoint(t *testing.T) {
	t.Parallel()
	var rec *recorder
	e := ledgertest.New(t, ledgertest.Options{NoRunner: true, Projections: func(s projections.Store) projections.Store {
		rec = newRecorder(s)
		return rec
	}})
	var first []contact.ID
	for i := range 12 {
		first = append(first, e.Create(t, "First "+string(rune('A'+i)), ""))
	}
	stop := e.StartRunner(t)
	head := e.CaughtUp(t)
	for _, name := range projections.Names() {
		eventually(t, name+"'s stored checkpoint to reach the head", func() bool { return checkpoint(t, e.Store, name) == head })
	}
	stop()
	for _, name := range projections.Names() {
		var prev kernel.Position
		for i, b := range rec.committed(name) {
			if b.From != prev || !prev.Less(b.To) {
				t.Fatalf("%s batch %d goes from %v to %v; want from %v onwards", name, i, b.From, b.To, prev)
			}
			prev = b.To
		}
		if prev != head || checkpoint(t, e.Store, name) != head {
			t.Fatalf("%s: batches end at %v, checkpoint %v; want the head %v", name, prev, checkpoint(t, e.Store, name), head)
		}
	}

	later := e.Create(t, "Later", "")
	subs := &subscriptions{EventStore: e.Store}
	again := projections.NewRunner(subs, e.Store, e.Vault, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- again.Run(ctx) }()
	newHead, _ := e.Store.Head(ctx)
	for _, name := range projections.Names() {
		if err := again.WaitFor(ctx, name, newHead); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// WaitFor may see the committed checkpoint a moment before the
		// runner notes its own progress.
		eventually(t, name+" to note its progress", func() bool { p, ok := again.Position(name); return ok && p == newHead })
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	starts := subs.starts()
	if len(starts) != len(projections.Names()) {
		t.Fatalf("%d subscriptions; want one per projection: %v", len(starts), starts)
	}
	for _, from := range starts {
		if from != head {
			t.Fatalf("a projection resumed from %v; want its checkpoint %v", from, head)
		}
	}
	if got := rows(t, e.Store, "active", append(first, later)...); len(got) != len(first)+1 {
		t.Fatalf("active holds %d contacts; want %d", len(got), len(first)+1)
	}
}

// TestRunnerRetriesAFailingBatch fails the archived view's commits for a
// while: the projection shows failed (in this process and in the store)
// and lags, the others go on; once commits succeed again it catches up
// and shows live. A commit that finds its checkpoint moved is no failure:
// the projection starts over from the stored checkpoint.
func TestRunnerRetriesAFailingBatch(t *testing.T) {
	t.Parallel()
	var rec *recorder
	e := ledgertest.New(t, ledgertest.Options{Projections: func(s projections.Store) projections.Store {
		rec = newRecorder(s)
		return rec
	}})
	ctx := t.Context()
	e.CaughtUp(t)
	broken := errors.New("disk full")
	var moved sync.Once
	rec.setFail(func(b projections.Batch) error {
		switch b.Projection {
		case "archived":
			return broken
		case "trash":
			var err error
			moved.Do(func() { err = kernel.ErrConcurrency })
			return err
		}
		return nil
	})
	id := e.Create(t, "Ann", "")
	e.Move(t, id, ledger.Archive)
	gone := e.Create(t, "Bob", "")
	e.Move(t, gone, ledger.Trash)
	head, _ := e.Store.Head(ctx)
	eventually(t, "the archived view to show failed", func() bool {
		st := status(t, e.Runner, "archived")
		return st.State == projections.StateFailed && st.Checkpoint.Less(head) && st.LagEvents > 0 && st.LagSeconds >= 0
	})
	// The runner shows the failure in memory before it writes it to the
	// store: wait for the store too.
	eventually(t, "the store to record the archived view's failure", func() bool {
		failed, err := e.Store.(projections.FailureStore).Failed(ctx)
		if err != nil {
			t.Fatalf("the store's failures: %v", err)
		}
		return !failed["archived"].IsZero()
	})
	for _, name := range []string{"active", "trash", projections.Identities, projections.Erasure} {
		if err := e.Runner.WaitFor(ctx, name, head); err != nil {
			t.Fatalf("%s while archived fails: %v", name, err)
		}
	}
	if got := rows(t, e.Store, "trash", gone); len(got) != 1 {
		t.Fatal("the trash view lost a batch whose checkpoint moved")
	}
	rec.setFail(nil)
	if err := e.Runner.WaitFor(ctx, "archived", head); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, e.Store, "archived", id); len(got) != 1 {
		t.Fatal("the archived view lacks the contact after recovering")
	}
	eventually(t, "archived to show live", func() bool { return status(t, e.Runner, "archived").State == projections.StateLive })
	if failed, _ := e.Store.(projections.FailureStore).Failed(ctx); len(failed) != 0 {
		t.Fatalf("failures left in the store: %v", failed)
	}
	if f := rec.failures(); !slices.Equal(f, []string{"archived"}) {
		t.Fatalf("failures recorded: %v; want archived once (a moved checkpoint is none)", f)
	}
}

// TestRunnerStopsAtAPoisonEvent appends an event no key opens to a
// contact's stream: the views that hold the contact stop before it and
// show failed, while the projections it does not concern pass it.
func TestRunnerStopsAtAPoisonEvent(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	id := e.Create(t, "Ann", "")
	before := e.CaughtUp(t)
	recs, err := e.Store.ReadStream(ctx, ledgertest.Workspace, id.Stream())
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	poison := kernel.Record{ID: ulid.Make(), Stream: id.Stream(), Version: last.Version + 1, Type: contact.TypeUpdated, Time: time.Now().UTC(),
		Workspace: ledgertest.Workspace, Actor: ledgertest.Admin, CorrelationID: "req-poison", CausationID: "req-poison", Schema: 1,
		Data: []byte(`{"personal":"not sealed"}`), PrevHash: last.Hash}
	poison.Hash = kernel.ChainHash(last.Hash, poison)
	head, err := e.Store.Append(ctx, id.Stream(), last.Version, []kernel.Record{poison})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"archived", "trash", "anonymized", projections.Erasure} {
		if err := e.Runner.WaitFor(ctx, name, head); err != nil {
			t.Fatalf("%s stopped at an event it does not concern: %v", name, err)
		}
	}
	for _, name := range []string{"active", projections.Identities} {
		eventually(t, name+" to show failed", func() bool { return status(t, e.Runner, name).State == projections.StateFailed })
		if cp := checkpoint(t, e.Store, name); before.Less(cp) {
			t.Fatalf("%s checkpoint %v; want it to stay at or before %v, before the poison", name, cp, before)
		}
		if p, _ := e.Runner.Position(name); p != before {
			t.Fatalf("%s is at %v; want it to stay at %v, before the poison", name, p, before)
		}
	}
}

// TestWaitFor bounds how long a query waits for a projection: a zero
// position needs no wait, a position the store's checkpoint reached (run
// by another process) is found by polling, and one never reached fails
// as lagging.
func TestWaitFor(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	e.Create(t, "Ann", "")
	head := e.CaughtUp(t)
	other := projections.NewRunner(e.Store, e.Store, e.Vault, nil) // never run: another process runs the projections
	other.WaitTimeout = 200 * time.Millisecond
	for _, tc := range []struct {
		name string
		pos  kernel.Position
		want error
	}{
		{"the zero position", kernel.Position{}, nil},
		{"a position the store reached", head, nil},
		{"a position beyond the log", kernel.Position{Commit: head.Commit + 1000}, projections.ErrLagging},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := other.WaitFor(ctx, "active", tc.pos); !errors.Is(err, tc.want) {
				t.Fatalf("got %v; want %v", err, tc.want)
			}
		})
	}
	if _, ok := other.Position("active"); ok {
		t.Fatal("a runner that never ran says where it is")
	}
}
