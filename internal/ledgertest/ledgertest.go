// Package ledgertest wires the application layer (ledger.Service) and the
// projections' runner to a real store for the tests of the ledger and
// projections packages: the embedded SQLite store in a temporary
// directory, or a fresh PostgreSQL database (see internal/pgtest).
package ledgertest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/keyring"
	"github.com/contactledger/ledger/adapters/postgres"
	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
)

// Store is a real store: the log and every port of the state store.
type Store interface {
	kernel.EventStore
	projections.StateStore
}

// Options chooses the store and what is wired around it.
type Options struct {
	// Postgres runs on a fresh PostgreSQL database instead of SQLite.
	Postgres bool
	// NoRunner leaves the projections stopped: the test runs them itself.
	NoRunner bool
	// Events, when set, wraps the log the service and the runner see.
	Events func(kernel.EventStore) kernel.EventStore
	// Projections, when set, wraps the store the runner writes.
	Projections func(projections.Store) projections.Store
	// Identities, when set, wraps the identity index the service reads.
	Identities func(ledger.Identities) ledger.Identities
	// Metrics is the service's observer.
	Metrics ledger.Observer
	// Sender sends webhooks; without it the webhook operations are off.
	Sender ledger.WebhookSender
}

// Env is a service and a runner on one real store.
type Env struct {
	Dir    string
	Store  Store
	Events kernel.EventStore
	Keys   *keyring.Keyring
	Vault  *ledger.Vault
	Runner *projections.Runner
	Svc    *ledger.Service
	Clock  *Clock
	// Lease is the store's lease (PostgreSQL only), else nil.
	Lease ledger.Lease

	stop func()
}

// Workspace is the workspace New creates.
const Workspace = "ws"

// Admin is the actor of the tests' commands.
var Admin = kernel.Actor{Principal: "tok_admin", Role: kernel.RoleAdmin}

// New opens a store, wires a service and a runner on it, creates the
// workspace Workspace and (unless o.NoRunner) runs the projections until
// the test ends.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &Env{Dir: dir, Clock: NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))}
	if o.Postgres {
		pg, err := postgres.Open(ctx, pgtest.URL(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.Store, e.Lease = pg, pg
	} else {
		db, err := sqlite.Open(ctx, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.Store = db
	}
	t.Cleanup(func() { e.Store.Close() })
	keys, err := keyring.OpenLocal(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	e.Keys = keys
	e.Events = e.Store
	if o.Events != nil {
		e.Events = o.Events(e.Store)
	}
	var ps projections.Store = e.Store
	if o.Projections != nil {
		ps = o.Projections(e.Store)
	}
	e.Vault = ledger.NewVault(e.Store, keys)
	e.Runner = projections.NewRunner(e.Events, ps, e.Vault, nil)
	if l, ok := e.Store.(ledger.Lease); ok && o.Postgres {
		e.Runner.Leaser = l
	}
	// As the server does: with the log in the state store, keys, identity
	// claims and appends commit together; a wrapped log stands for one
	// apart (EventStoreDB), where they are written step by step.
	var keysWithLog ledger.KeyedAppender
	if ka, ok := e.Store.(ledger.KeyedAppender); ok && o.Events == nil {
		keysWithLog = ka
	}
	var idx ledger.Identities = e.Store
	if o.Identities != nil {
		idx = o.Identities(e.Store)
	}
	e.Svc = ledger.New(ledger.Options{
		Events: e.Events, Vault: e.Vault, Directory: e.Store, Views: e.Store, Identities: idx, Claims: e.Store,
		Progress: e.Runner, Now: e.Clock.Now, Metrics: o.Metrics, Webhooks: e.Store, Sender: o.Sender, KeysWithLog: keysWithLog,
	})
	if _, err := e.Svc.CreateWorkspace(ctx, Workspace); err != nil {
		t.Fatal(err)
	}
	if !o.NoRunner {
		e.StartRunner(t)
	}
	return e
}

// StartRunner runs the projections until the test ends or the returned
// stop is called (stop waits for the runner to return).
func (e *Env) StartRunner(t testing.TB) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Runner.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	e.stop = stop
	return stop
}

// Meta is the metadata of an admin's request with the given request id.
func Meta(request string) ledger.Meta {
	return ledger.Meta{Actor: Admin, CorrelationID: request}
}

// Create creates a contact with the given name and email (and tags) in
// Workspace and returns its id.
func (e *Env) Create(t testing.TB, name, email string, tags ...string) contact.ID {
	t.Helper()
	res, err := e.Svc.Create(context.Background(), Workspace, Meta("req-create-"+name),
		contact.Draft{Personal: contact.Personal{Name: name, Email: email}, Tags: tags})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return res.Contact.ID
}

// Move runs transition tr on id as the admin.
func (e *Env) Move(t testing.TB, id contact.ID, tr ledger.Transition) ledger.Result {
	t.Helper()
	res, err := e.Svc.Transition(context.Background(), Workspace, id, Meta("req-"+string(tr)), tr, ledger.TransitionInput{Reason: "test"})
	if err != nil {
		t.Fatalf("%s %s: %v", tr, id, err)
	}
	return res
}

// CaughtUp waits until every projection has applied the whole log.
func (e *Env) CaughtUp(t testing.TB) kernel.Position {
	t.Helper()
	ctx := context.Background()
	head, err := e.Events.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range projections.Names() {
		if err := e.Runner.WaitFor(ctx, n, head); err != nil {
			t.Fatalf("wait for %s: %v", n, err)
		}
	}
	return head
}

// ViewIDs returns the ids in a view of Workspace (after waiting for it).
func (e *Env) ViewIDs(t testing.TB, view string) []contact.ID {
	t.Helper()
	page, err := e.Svc.List(context.Background(), ledger.ListQuery{Workspace: Workspace, View: view, Limit: 1000}, kernel.Position{}, "", "")
	if err != nil {
		t.Fatalf("list %s: %v", view, err)
	}
	var out []contact.ID
	for _, it := range page.Items {
		out = append(out, it.ID)
	}
	return out
}

// Clock is a clock tests move by hand.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Stores runs f as a parallel subtest on each store: "sqlite", and
// "postgres" (skipped without a server, failed under CI; see pgtest).
func Stores(t *testing.T, f func(t *testing.T, o Options)) {
	for _, s := range []struct {
		name     string
		postgres bool
	}{{"sqlite", false}, {"postgres", true}} {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			f(t, Options{Postgres: s.postgres})
		})
	}
}
