package projections_test

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/keyring"
	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
)

// countingLog counts the streams the projections read from the log.
type countingLog struct {
	*sqlite.Store
	streams atomic.Int64
}

func (c *countingLog) ReadStream(ctx context.Context, workspace, stream string) ([]kernel.Record, error) {
	c.streams.Add(1)
	return c.Store.ReadStream(ctx, workspace, stream)
}

func (c *countingLog) ReadStreams(ctx context.Context, workspace string, streams []string) (map[string][]kernel.Record, error) {
	c.streams.Add(int64(len(streams)))
	return c.Store.ReadStreams(ctx, workspace, streams)
}

// countingState counts each projection's commits.
type countingState struct {
	*sqlite.Store
	mu      sync.Mutex
	commits map[string]int
}

func (c *countingState) Commit(ctx context.Context, b projections.Batch) error {
	c.mu.Lock()
	c.commits[b.Projection]++
	c.mu.Unlock()
	return c.Store.Commit(ctx, b)
}

func (c *countingState) count(projection string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commits[projection]
}

type rig struct {
	t      *testing.T
	db     *sqlite.Store
	log    *countingLog
	state  *countingState
	svc    *ledger.Service
	runner *projections.Runner
}

// newRig runs the projections on a real embedded store, reading the log
// through a counter, beside a service that writes to it directly.
func newRig(t *testing.T) *rig {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keyring.OpenLocal(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	vault := ledger.NewVault(db, keys)
	r := &rig{t: t, db: db, log: &countingLog{Store: db}, state: &countingState{Store: db, commits: map[string]int{}}}
	r.runner = projections.NewRunner(r.log, r.state, vault, nil)
	r.svc = ledger.New(ledger.Options{Events: db, Vault: vault, Directory: db, Views: db, Identities: db, Progress: r.runner, KeysWithLog: db})
	done := make(chan struct{})
	go func() { r.runner.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; db.Close(); keys.Close() })
	if _, err := r.svc.CreateWorkspace(ctx, "ws"); err != nil {
		t.Fatal(err)
	}
	return r
}

// settle waits until every projection has applied the whole log.
func (r *rig) settle() {
	r.t.Helper()
	ctx := context.Background()
	head, err := r.db.Head(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, name := range projections.Names() {
		if err := r.runner.WaitFor(ctx, name, head); err != nil {
			r.t.Fatalf("%s: %v", name, err)
		}
	}
}

// rows returns the rows of ids in a projection.
func (r *rig) rows(projection string, ids []contact.ID) map[contact.ID]projections.Row {
	r.t.Helper()
	refs := make([]projections.Ref, len(ids))
	for i, id := range ids {
		refs[i] = projections.Ref{Workspace: "ws", ID: id}
	}
	rows, err := r.db.Rows(context.Background(), projection, refs)
	if err != nil {
		r.t.Fatal(err)
	}
	return rows
}

func (r *rig) transition(t ledger.Transition, ids []contact.ID) {
	r.t.Helper()
	_, errs := r.svc.TransitionMany(context.Background(), "ws", ids, ledger.Meta{Actor: kernel.System("test"), CorrelationID: "test"}, t, ledger.TransitionInput{})
	for i, err := range errs {
		if err != nil {
			r.t.Fatalf("%s %s: %v", t, ids[i], err)
		}
	}
}

// TestMovesBetweenViewsReadNoStream moves contacts between views (trash,
// restore to the view each came from, archive, unarchive) and checks that
// the projections took each from its row elsewhere instead of reading and
// folding its stream, and that every row equals the contact's fold.
func TestMovesBetweenViewsReadNoStream(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	var ids []contact.ID
	for i := range 40 {
		res, err := r.svc.Create(ctx, "ws", ledger.Meta{Actor: kernel.System("test"), CorrelationID: "test"},
			contact.Draft{Personal: contact.Personal{Name: fmt.Sprintf("Person %d", i), Email: fmt.Sprintf("p%d@example.com", i)}, Tags: []string{"t"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Contact.ID)
	}
	archived := ids[:10]
	r.settle()
	r.log.streams.Store(0)
	r.transition(ledger.Archive, archived)
	r.settle()
	r.transition(ledger.Trash, ids)
	r.settle()
	r.transition(ledger.Restore, ids)
	r.settle()
	r.transition(ledger.Unarchive, archived)
	r.settle()
	if n := r.log.streams.Load(); n != 0 {
		t.Fatalf("the projections read %d streams to move contacts between views, want none", n)
	}
	active := r.rows("active", ids)
	identities := r.rows(projections.Identities, ids)
	for _, id := range ids {
		v, err := r.svc.Get(ctx, "ws", id)
		if err != nil {
			t.Fatal(err)
		}
		for name, rows := range map[string]map[contact.ID]projections.Row{"active": active, projections.Identities: identities} {
			row, ok := rows[id]
			if !ok {
				t.Fatalf("%s is not in %s", id, name)
			}
			if !reflect.DeepEqual(row.Contact, v.Snapshot) {
				t.Fatalf("%s in %s:\n got %+v\nwant %+v (its fold)", id, name, row.Contact, v.Snapshot)
			}
		}
	}
	for _, view := range []string{"trash", "archived"} {
		if rows := r.rows(view, ids); len(rows) != 0 {
			t.Fatalf("%d contacts left in %s", len(rows), view)
		}
	}
}

// TestUnchangedViewsStoreTheirCheckpointLazily appends contacts one by one:
// the archived view, which none of them enters, stores its checkpoint a
// few times, not once per append, while the active view commits its rows
// as they come; once the log is quiet, both checkpoints are stored at its
// head.
func TestUnchangedViewsStoreTheirCheckpointLazily(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	before := r.state.count("archived")
	start := time.Now()
	const n = 30
	for i := range n {
		if _, err := r.svc.Create(ctx, "ws", ledger.Meta{Actor: kernel.System("test"), CorrelationID: "test"},
			contact.Draft{Personal: contact.Personal{Name: fmt.Sprintf("Lazy %d", i)}}); err != nil {
			t.Fatal(err)
		}
		r.settle()
	}
	took := time.Since(start)
	lazy, eager := r.state.count("archived")-before, r.state.count("active")
	if most := int(took/projections.LazyCheckpoint) + 2; lazy > most || eager < n {
		t.Fatalf("in %s: the archived view committed %d times (want at most %d), the active view %d (want at least %d)", took, lazy, most, eager, n)
	}
	head, err := r.db.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		cp, err := r.db.Checkpoint(ctx, "archived")
		if err != nil {
			t.Fatal(err)
		}
		if cp == head {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the archived view's stored checkpoint stays at %s, the log's head is %s", cp, head)
		}
	}
}
