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
)

// populate creates n active contacts, m archived and one in trash, and
// waits for the projections.
func populate(t *testing.T, e *ledgertest.Env, n, m int) (active, archived []contact.ID) {
	t.Helper()
	for i := range n + m {
		id := e.Create(t, "Person "+string(rune('A'+i%26))+string(rune('a'+i/26)), "")
		if i >= n {
			e.Move(t, id, ledger.Archive)
			archived = append(archived, id)
		} else {
			active = append(active, id)
		}
	}
	e.Move(t, e.Create(t, "Trashed", ""), ledger.Trash)
	e.CaughtUp(t)
	return active, archived
}

// phases collects the phases a rebuild reports, and runs hooks on entering one.
type phases struct {
	mu    sync.Mutex
	seen  []string
	hooks map[string]func(projections.RebuildJob)
}

func (p *phases) observe(j projections.RebuildJob) {
	p.mu.Lock()
	first := len(p.seen) == 0 || p.seen[len(p.seen)-1] != j.Phase
	if first {
		p.seen = append(p.seen, j.Phase)
	}
	hook := p.hooks[j.Phase]
	if first {
		delete(p.hooks, j.Phase)
	}
	p.mu.Unlock()
	if first && hook != nil {
		hook(j)
	}
}

func (p *phases) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen)
}

// TestRebuildSwitchesInAFreshView rebuilds the active view while the live
// runner goes on and contacts are created during the rebuild's indexing
// (caught up before the switch) and during its switch (the live view is
// then ahead, and the switch brings the shadow level): the job goes
// through every phase and ends done, the view holds every active contact
// and nothing else, its checkpoint is the head, and the rebuild is listed.
// On PostgreSQL the fold reads up to the store's stable head.
func TestRebuildSwitchesInAFreshView(t *testing.T) {
	t.Parallel()
	ledgertest.Stores(t, func(t *testing.T, o ledgertest.Options) {
		e := ledgertest.New(t, o)
		ctx := t.Context()
		active, archived := populate(t, e, 20, 5)
		var during []contact.ID
		var statusDuring projections.Status
		p := &phases{hooks: map[string]func(projections.RebuildJob){
			"indexing": func(projections.RebuildJob) { during = append(during, e.Create(t, "During indexing", "")) },
			"switching": func(projections.RebuildJob) {
				id := e.Create(t, "During the switch", "")
				during = append(during, id)
				head, _ := e.Store.Head(ctx)
				if err := e.Runner.WaitFor(ctx, "active", head); err != nil {
					t.Error(err)
				}
				statusDuring = status(t, e.Runner, "active")
			},
		}}
		var observed []projections.RebuildJob
		var mu sync.Mutex
		e.Runner.Observe = func(j projections.RebuildJob) { mu.Lock(); observed = append(observed, j); mu.Unlock() }
		job, err := e.Runner.RunRebuild(ctx, "active", "requested", "tok_admin", p.observe)
		if err != nil {
			t.Fatal(err)
		}
		if job.State != projections.RebuildDone || job.Phase != "done" || job.FinishedAt.IsZero() || job.EventsDone < job.EventsTotal || job.EventsTotal == 0 {
			t.Fatalf("job: %+v", job)
		}
		if want := []string{"starting", "folding", "indexing", "catching-up", "switching", "done"}; !isSubsequence(want[1:], p.list()) {
			t.Fatalf("phases %v; want %v in order", p.list(), want)
		}
		if statusDuring.State != projections.StateRebuilding || statusDuring.Rebuild == nil || statusDuring.Rebuild.ID != job.ID {
			t.Errorf("status during the rebuild: %+v", statusDuring)
		}
		mu.Lock()
		if len(observed) == 0 || observed[len(observed)-1].State != projections.RebuildDone {
			t.Errorf("Observe saw %d updates; want the last one done", len(observed))
		}
		mu.Unlock()
		head := e.CaughtUp(t)
		want := append(slices.Clone(active), during...)
		got := rows(t, e.Store, "active", append(append(slices.Clone(want), archived...), contact.NewID())...)
		if len(got) != len(want) {
			t.Fatalf("the rebuilt view holds %d of the contacts; want %d", len(got), len(want))
		}
		for _, id := range want {
			if _, ok := got[id]; !ok {
				t.Fatalf("the rebuilt view lacks %s", id)
			}
		}
		eventually(t, "the rebuilt view's checkpoint to reach the head", func() bool { return checkpoint(t, e.Store, "active") == head })
		v, err := e.Store.(projections.ShadowStore).Versions(ctx)
		if err != nil || v["active"] != projections.Version {
			t.Fatalf("versions %v, %v; want active at %d", v, err, projections.Version)
		}
		recent, err := e.Runner.RecentRebuilds(ctx, 5)
		if err != nil || len(recent) != 1 || recent[0].ID != job.ID || recent[0].State != projections.RebuildDone || recent[0].RequestedBy != "tok_admin" {
			t.Fatalf("recent rebuilds: %+v, %v", recent, err)
		}
		if got, err := e.Runner.RebuildJob(ctx, job.ID); err != nil || got.State != projections.RebuildDone {
			t.Fatalf("the job by id: %+v, %v", got, err)
		}
		if st := status(t, e.Runner, "active"); st.State != projections.StateLive || st.Rebuild != nil {
			t.Fatalf("status after the rebuild: %+v", st)
		}
	})
}

func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestRebuildAllFoldsEveryView rebuilds every view at once with small
// pages, so the fold carries streams across pages and loads in several
// batches: each view holds what it held before.
func TestRebuildAllFoldsEveryView(t *testing.T) {
	// Not parallel: it turns the package's page sizes down.
	defer func(f, l, c int) { projections.FoldPage, projections.LoadBatch, projections.CatchUpPage = f, l, c }(projections.FoldPage, projections.LoadBatch, projections.CatchUpPage)
	projections.FoldPage, projections.LoadBatch, projections.CatchUpPage = 7, 3, 4
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	active, archived := populate(t, e, 12, 6)
	all := append(slices.Clone(active), archived...)
	before := map[string]map[contact.ID]projections.Row{}
	for _, v := range ledger.ViewNames {
		before[v] = rows(t, e.Store, v, all...)
	}
	job, err := e.Runner.RunRebuild(ctx, projections.All, "requested", "cli", nil)
	if err != nil || job.State != projections.RebuildDone {
		t.Fatalf("rebuild: %+v, %v", job, err)
	}
	for _, v := range ledger.ViewNames {
		after := rows(t, e.Store, v, all...)
		if len(after) != len(before[v]) {
			t.Fatalf("%s: %d rows after the rebuild; want %d", v, len(after), len(before[v]))
		}
		for id, r := range before[v] {
			a := after[id]
			if a.Contact.Personal.Name != r.Contact.Personal.Name || a.Position != r.Position || !a.SortAt.Equal(r.SortAt) {
				t.Fatalf("%s row of %s: %+v; want %+v", v, id, a, r)
			}
		}
	}
}

// failingFold wraps the log: reading it grouped by stream fails.
type failingFold struct {
	kernel.EventStore
	projections.StreamReader
}

func (failingFold) ReadByStream(context.Context, kernel.Position, string, uint64, int) ([]kernel.Record, error) {
	return nil, errors.New("read failed")
}

// TestRebuildEndsWithoutTouchingTheLiveView cancels one rebuild mid-way
// and breaks another's fold: each ends (cancelled, failed) with the live
// view as it was, and frees the view for the next rebuild.
func TestRebuildEndsWithoutTouchingTheLiveView(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		state projections.RebuildState
	}{{"cancelled", projections.RebuildCancelled}, {"failed", projections.RebuildFailed}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := ledgertest.New(t, ledgertest.Options{})
			ctx := t.Context()
			active, _ := populate(t, e, 8, 0)
			runner := e.Runner
			p := &phases{hooks: map[string]func(projections.RebuildJob){}}
			if tc.state == projections.RebuildFailed {
				runner = projections.NewRunner(failingFold{e.Store, e.Store.(projections.StreamReader)}, e.Store, e.Vault, nil)
			} else {
				p.hooks["folding"] = func(j projections.RebuildJob) {
					if c, err := runner.CancelRebuild(ctx, j.ID); err != nil || !c.Cancel {
						t.Errorf("cancel: %+v, %v", c, err)
					}
				}
			}
			job, err := runner.RunRebuild(ctx, "active", "requested", "cli", p.observe)
			if err == nil || job.State != tc.state || job.Error == "" || job.FinishedAt.IsZero() {
				t.Fatalf("rebuild: %+v, %v; want %s with an error", job, err, tc.state)
			}
			if got := rows(t, e.Store, "active", active...); len(got) != len(active) {
				t.Fatalf("the live view holds %d contacts; want %d", len(got), len(active))
			}
			if v, _ := e.Store.(projections.ShadowStore).Versions(ctx); v["active"] != projections.Version {
				t.Fatalf("versions after: %v", v)
			}
			again, err := e.Runner.RunRebuild(ctx, "active", "requested", "cli", nil)
			if err != nil || again.State != projections.RebuildDone {
				t.Fatalf("the next rebuild: %+v, %v", again, err)
			}
		})
	}
}

// TestStartRebuildRunsInTheBackground starts a rebuild that returns at
// once and finishes on its own; a rebuild of a view another holds is
// refused, and requests naming no rebuildable view are refused.
func TestStartRebuildRunsInTheBackground(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	populate(t, e, 3, 2)
	job, err := e.Runner.StartRebuild(ctx, "archived", "requested", ledgertest.Workspace, "tok_admin")
	if err != nil || job.State != projections.RebuildRunning || job.Workspace != ledgertest.Workspace {
		t.Fatalf("start: %+v, %v", job, err)
	}
	e.Runner.WaitRebuilds()
	eventually(t, "the rebuild to end", func() bool {
		j, err := e.Runner.RebuildJob(ctx, job.ID)
		return err == nil && j.State == projections.RebuildDone
	})
	release, ok, err := e.Store.(projections.ShadowStore).LockRebuild(ctx, "trash")
	if err != nil || !ok {
		t.Fatalf("lock: %v %v", ok, err)
	}
	defer release()
	for _, tc := range []struct{ name, view string }{
		{"a view being rebuilt", "trash"},
		{"all views while one is being rebuilt", projections.All},
		{"the erasure projection", projections.Erasure},
		{"an unknown projection", "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := map[string]error{"trash": projections.ErrRebuildRunning, projections.All: projections.ErrRebuildRunning,
				projections.Erasure: projections.ErrNotRebuildable, "nope": projections.ErrUnknownProjection}[tc.view]
			if _, err := e.Runner.StartRebuild(ctx, tc.view, "requested", "", "cli"); !errors.Is(err, want) {
				t.Fatalf("got %v; want %v", err, want)
			}
		})
	}
	if _, err := e.Runner.RebuildJob(ctx, "rb_unknown"); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("an unknown rebuild: %v", err)
	}
	if _, err := e.Runner.CancelRebuild(ctx, "rb_unknown"); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("cancelling an unknown rebuild: %v", err)
	}
}

// olderVersions makes the store say the active view was built by older code.
type olderVersions struct{ fullStore }

func (o olderVersions) Versions(ctx context.Context) (map[string]int, error) {
	v, err := o.fullStore.Versions(ctx)
	if err == nil {
		v["active"] = projections.Version - 1
	}
	return v, err
}

// TestRunRebuildsOutdatedViews starts the projections over rows an older
// version built: the runner rebuilds that view on its own, for the
// reason "version".
func TestRunRebuildsOutdatedViews(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{NoRunner: true})
	ctx := t.Context()
	id := e.Create(t, "Ann", "")
	r := projections.NewRunner(e.Store, olderVersions{e.Store.(fullStore)}, e.Vault, nil)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "a version rebuild to end", func() bool {
		js, err := r.RecentRebuilds(ctx, 5)
		return err == nil && len(js) == 1 && js[0].State == projections.RebuildDone && js[0].Reason == "version" && js[0].Projection == "active"
	})
	head, _ := e.Store.Head(ctx)
	if err := r.WaitFor(ctx, "active", head); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, e.Store, "active", id); len(got) != 1 {
		t.Fatal("the rebuilt view lacks the contact")
	}
}

// TestRebuildJobFigures checks how a rebuild's record is shown: its rate
// and time to go, and a running record whose process stopped saving shows
// failed.
func TestRebuildJobFigures(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		job       projections.RebuildJob
		now       time.Time
		rate, eta float64
		state     projections.RebuildState
	}{
		{"running halfway", projections.RebuildJob{State: projections.RebuildRunning, StartedAt: start, UpdatedAt: start.Add(10 * time.Second), EventsDone: 100, EventsTotal: 200},
			start.Add(11 * time.Second), 10, 10, projections.RebuildRunning},
		{"running without progress", projections.RebuildJob{State: projections.RebuildRunning, StartedAt: start, UpdatedAt: start},
			start, 0, -1, projections.RebuildRunning},
		{"done", projections.RebuildJob{State: projections.RebuildDone, StartedAt: start, UpdatedAt: start.Add(time.Hour), FinishedAt: start.Add(4 * time.Second), EventsDone: 40, EventsTotal: 40},
			start.Add(time.Hour), 10, 0, projections.RebuildDone},
		{"running but its process stopped", projections.RebuildJob{State: projections.RebuildRunning, StartedAt: start, UpdatedAt: start.Add(time.Second), EventsDone: 5},
			start.Add(time.Minute), 5, -2, projections.RebuildFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rate, eta := tc.job.Rate()
			if rate != tc.rate || (tc.eta != -2 && eta != tc.eta) {
				t.Fatalf("rate %v, eta %v; want %v, %v", rate, eta, tc.rate, tc.eta)
			}
			if got := tc.job.Effective(tc.now); got.State != tc.state || (tc.state == projections.RebuildFailed) != (got.Error != "") {
				t.Fatalf("effective: %s %q; want %s", got.State, got.Error, tc.state)
			}
		})
	}
	j := projections.RebuildJob{Projection: projections.All}
	if !j.Covers("trash") || (projections.RebuildJob{Projection: "active"}).Covers("trash") {
		t.Fatal("Covers")
	}
}

// TestShadowNames checks the names of rebuild tables.
func TestShadowNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, view, gen string
		ok              bool
	}{
		{projections.Shadow("active", "01abc"), "active", "01abc", true},
		{"active", "", "", false},
		{"active~UPPER", "", "", false},
		{"active~", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			view, gen, ok := projections.ParseShadow(tc.name)
			if view != tc.view || gen != tc.gen || ok != tc.ok {
				t.Fatalf("got %q %q %v; want %q %q %v", view, gen, ok, tc.view, tc.gen, tc.ok)
			}
		})
	}
}

// TestRunRebuildsViewsFarBehind starts the projections on a log they
// have not indexed, with FarBehind below its length: the runner rebuilds
// every view in one go and the identity index beside it (reason
// "behind") before their live loops start, and the rows are those a live
// catch-up would have written. On both stores.
func TestRunRebuildsViewsFarBehind(t *testing.T) {
	t.Parallel()
	ledgertest.Stores(t, func(t *testing.T, o ledgertest.Options) {
		o.NoRunner = true
		e := ledgertest.New(t, o)
		ctx := t.Context()
		ann := e.Create(t, "Ann", "ann@example.com")
		bob := e.Create(t, "Bob", "bob@example.com")
		e.Move(t, bob, ledger.Trash)
		cat := e.Create(t, "Cat", "cat@example.com")
		e.Move(t, cat, ledger.Archive)
		r := projections.NewRunner(e.Store, e.Store.(projections.Store), e.Vault, nil)
		r.FarBehind = 3
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		defer func() { cancel(); <-done }()
		head, _ := e.Store.Head(ctx)
		for _, name := range []string{"active", "archived", "trash", projections.Identities} {
			if err := r.WaitFor(ctx, name, head); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		// A rebuild's record says done a moment after its switch.
		got := map[string]string{}
		want := map[string]string{projections.All: string(projections.RebuildDone) + "/behind", projections.Identities: string(projections.RebuildDone) + "/behind"}
		eventually(t, "both rebuilds at start to be recorded done", func() bool {
			js, err := r.RecentRebuilds(ctx, 5)
			if err != nil {
				t.Fatal(err)
			}
			clear(got)
			for _, j := range js {
				got[j.Projection] = string(j.State) + "/" + j.Reason
			}
			return len(got) == len(want) && got[projections.All] == want[projections.All] && got[projections.Identities] == want[projections.Identities]
		})
		for view, id := range map[string]contact.ID{"active": ann, "trash": bob, "archived": cat} {
			if len(rows(t, e.Store, view, id)) != 1 {
				t.Errorf("the %s view lacks its contact", view)
			}
		}
		if got := rows(t, e.Store, projections.Identities, ann, bob, cat); len(got) != 3 {
			t.Errorf("the identity index holds %d of the 3 contacts", len(got))
		}
		// The live loops follow on from the rebuilt rows.
		dan := e.Create(t, "Dan", "dan@example.com")
		head, _ = e.Store.Head(ctx)
		for _, name := range []string{"active", projections.Identities} {
			if err := r.WaitFor(ctx, name, head); err != nil {
				t.Fatalf("%s after the rebuild: %v", name, err)
			}
		}
		if len(rows(t, e.Store, "active", dan)) != 1 || len(rows(t, e.Store, projections.Identities, dan)) != 1 {
			t.Error("a contact created after the rebuild is not in the views")
		}
	})
}
