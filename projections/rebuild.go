package projections

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/contactledger/ledger/ledger"
	"github.com/oklog/ulid/v2"
)

// The errors of rebuilds.
var (
	ErrUnknownProjection = &kernel.Error{Code: kernel.CodeNotFound, Reason: "projection-not-found", Message: "no such projection"}
	ErrNotRebuildable    = &kernel.Error{Code: kernel.CodeConflict, Reason: "not-rebuildable", Message: "this projection keeps no read model to rebuild"}
	ErrRebuildRunning    = &kernel.Error{Code: kernel.CodeConflict, Reason: "rebuild-running", Message: "a rebuild of this projection is already running"}
	ErrNoRebuilds        = &kernel.Error{Code: kernel.CodeConflict, Reason: "not-rebuildable", Message: "this store cannot rebuild projections"}
	errTooFar            = errors.New("the live projection is too far ahead to switch now")
)

// All names every view in a rebuild request.
const All = "all"

// Rebuild tuning: how many events the fold reads at once, how many rows a
// bulk load writes at once, how many events a catch-up step reads, and how
// far behind the live projection a shadow may be when it switches.
var (
	FoldPage     = 5000
	LoadBatch    = 2000
	CatchUpPage  = 1000
	SwitchWindow = 5000
)

// staleAfter is how long a running rebuild may go without saving its
// progress before it counts as dead (its process stopped).
const staleAfter = 30 * time.Second

// Effective returns the job as it should be shown: a running job whose
// process stopped saving its progress is failed.
func (j RebuildJob) Effective(now time.Time) RebuildJob {
	if j.State == RebuildRunning && now.Sub(j.UpdatedAt) > staleAfter {
		j.State, j.Error = RebuildFailed, "the rebuilding process stopped"
	}
	return j
}

// Covers reports whether the job rebuilds the view.
func (j RebuildJob) Covers(view string) bool { return j.Projection == view || j.Projection == All }

func (r *Runner) shadowStore() (ShadowStore, error) {
	ss, ok := r.store.(ShadowStore)
	if !ok {
		return nil, ErrNoRebuilds
	}
	return ss, nil
}

// rebuildViews resolves a rebuild request's name to views.
func rebuildViews(name string) ([]View, error) {
	if name == Erasure {
		return nil, ErrNotRebuildable
	}
	if name == Identities {
		return []View{IdentityView()}, nil
	}
	var out []View
	for _, v := range Views() {
		if name == All || v.Name == name {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, ErrUnknownProjection
	}
	return out, nil
}

// lockViews takes the rebuild locks of views, or none.
func lockViews(ctx context.Context, ss ShadowStore, views []View) (func(), error) {
	names := make([]string, len(views))
	for i, v := range views {
		names[i] = v.Name
	}
	release, ok, err := ss.LockRebuild(ctx, names...)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrRebuildRunning
	}
	return release, nil
}

// StartRebuild starts rebuilding a view (or All) in the background and
// returns its record at once; workspace and by name who asked for it. Only one process rebuilds a view at a time:
// ErrRebuildRunning otherwise.
func (r *Runner) StartRebuild(ctx context.Context, name, reason, workspace, by string) (RebuildJob, error) {
	job, run, err := r.prepareRebuild(ctx, name, reason, workspace, by)
	if err != nil {
		return RebuildJob{}, err
	}
	r.mu.Lock()
	base := r.base
	r.mu.Unlock()
	if base == nil {
		base = context.WithoutCancel(ctx)
	}
	r.rebuilds.Go(func() { _ = run(base, nil) })
	return job, nil
}

// RebuildJob returns a rebuild's record as it should be shown. Errors: kernel.ErrNotFound.
func (r *Runner) RebuildJob(ctx context.Context, id string) (RebuildJob, error) {
	ss, err := r.shadowStore()
	if err != nil {
		return RebuildJob{}, err
	}
	j, err := ss.Rebuild(ctx, id)
	if err != nil {
		return RebuildJob{}, err
	}
	return j.Effective(time.Now()), nil
}

// CancelRebuild asks a running rebuild to stop; whichever process runs it
// stops within a second and leaves the live projection untouched.
func (r *Runner) CancelRebuild(ctx context.Context, id string) (RebuildJob, error) {
	ss, err := r.shadowStore()
	if err != nil {
		return RebuildJob{}, err
	}
	if err := ss.CancelRebuild(ctx, id); err != nil {
		return RebuildJob{}, err
	}
	return r.RebuildJob(ctx, id)
}

// RecentRebuilds returns the latest rebuilds, newest first.
func (r *Runner) RecentRebuilds(ctx context.Context, limit int) ([]RebuildJob, error) {
	ss, err := r.shadowStore()
	if err != nil {
		return nil, err
	}
	jobs, err := ss.Rebuilds(ctx, limit)
	now := time.Now()
	for i := range jobs {
		jobs[i] = jobs[i].Effective(now)
	}
	return jobs, err
}

// Rate returns the rebuild's events per second and the seconds it still needs (-1: unknown).
func (j RebuildJob) Rate() (perSecond float64, eta float64) {
	end := j.UpdatedAt
	if !j.FinishedAt.IsZero() {
		end = j.FinishedAt
	}
	if secs := end.Sub(j.StartedAt).Seconds(); secs > 0 {
		perSecond = float64(j.EventsDone) / secs
	}
	switch {
	case j.State != RebuildRunning:
		eta = 0
	case perSecond > 0:
		eta = float64(max(0, j.EventsTotal-j.EventsDone)) / perSecond
	default:
		eta = -1
	}
	return perSecond, eta
}

// RunRebuild rebuilds a view (or All) and returns when it is done,
// calling progress as it goes.
func (r *Runner) RunRebuild(ctx context.Context, name, reason, by string, progress func(RebuildJob)) (RebuildJob, error) {
	job, run, err := r.prepareRebuild(ctx, name, reason, "", by)
	if err != nil {
		return RebuildJob{}, err
	}
	var last RebuildJob
	err = run(ctx, func(j RebuildJob) {
		last = j
		if progress != nil {
			progress(j)
		}
	})
	if last.ID == "" {
		last = job
	}
	return last, err
}

// WaitRebuilds waits for the rebuilds this runner started in the background.
func (r *Runner) WaitRebuilds() { r.rebuilds.Wait() }

func (r *Runner) prepareRebuild(ctx context.Context, name, reason, workspace, by string) (RebuildJob, func(context.Context, func(RebuildJob)) error, error) {
	views, err := rebuildViews(name)
	if err != nil {
		return RebuildJob{}, nil, err
	}
	ss, err := r.shadowStore()
	if err != nil {
		return RebuildJob{}, nil, err
	}
	release, err := lockViews(ctx, ss, views)
	if err != nil {
		return RebuildJob{}, nil, err
	}
	now := time.Now().UTC()
	job := RebuildJob{ID: "rb_" + ulid.Make().String(), Projection: name, State: RebuildRunning, Phase: "starting",
		Reason: reason, Workspace: workspace, RequestedBy: by, StartedAt: now, UpdatedAt: now}
	if _, err := ss.SaveRebuild(ctx, job); err != nil {
		release()
		return RebuildJob{}, nil, err
	}
	run := func(ctx context.Context, progress func(RebuildJob)) error {
		rb := &rebuild{r: r, ss: ss, job: job, views: views, gen: strings.ToLower(ulid.Make().String()), progress: progress, release: release}
		return rb.run(ctx)
	}
	return job, run, nil
}

// rebuild is one rebuild in progress.
type rebuild struct {
	r        *Runner
	ss       ShadowStore
	views    []View
	pending  []View // the views not switched in yet
	gen      string
	progress func(RebuildJob)
	// release gives up the rebuild locks; it runs before the final record
	// is saved, so that whoever sees the rebuild ended can start another.
	release func()

	mu      sync.Mutex
	job     RebuildJob
	saved   time.Time
	cancel  context.CancelCauseFunc
	buffers map[string][]Row

	// loads carries full buffers to the loader, which writes them while the
	// fold goes on (the fold is CPU, the load is the store: they overlap).
	loads   chan load
	loading sync.WaitGroup
	loadErr atomic.Value
}

type load struct {
	view string
	rows []Row
}

// startLoader starts the goroutine that loads flushed rows into the shadows.
func (b *rebuild) startLoader(ctx context.Context) {
	b.loads = make(chan load, 1)
	b.loading.Go(func() {
		for l := range b.loads {
			if b.loadErr.Load() != nil {
				continue
			}
			if err := b.ss.LoadShadow(ctx, l.view, b.gen, l.rows); err != nil {
				b.loadErr.Store(err)
			}
		}
	})
}

// stopLoader waits for the loads in flight and returns the first failure.
func (b *rebuild) stopLoader() error {
	close(b.loads)
	b.loading.Wait()
	err, _ := b.loadErr.Load().(error)
	return err
}

var errCancelled = errors.New("the rebuild was cancelled")

func (b *rebuild) shadow(v View) View {
	return View{Name: Shadow(v.Name, b.gen), State: v.State, States: v.States}
}

// save records progress, at most twice a second unless force, and picks up
// a cancellation requested through the store.
func (b *rebuild) save(ctx context.Context, force bool) error {
	b.mu.Lock()
	now := time.Now().UTC()
	if !force && now.Sub(b.saved) < 500*time.Millisecond {
		b.mu.Unlock()
		return nil
	}
	b.saved = now
	b.job.UpdatedAt = now
	j := b.job
	b.mu.Unlock()
	if b.progress != nil {
		b.progress(j)
	}
	if b.r.Observe != nil {
		b.r.Observe(j)
	}
	cancel, err := b.ss.SaveRebuild(context.WithoutCancel(ctx), j)
	if err != nil {
		return err
	}
	if cancel && j.State == RebuildRunning {
		b.cancel(errCancelled)
	}
	return nil
}

func (b *rebuild) phase(ctx context.Context, p string) error {
	b.mu.Lock()
	b.job.Phase = p
	b.mu.Unlock()
	return b.save(ctx, true)
}

func (b *rebuild) add(n int64, total int64) {
	b.mu.Lock()
	b.job.EventsDone += n
	b.job.EventsTotal = max(b.job.EventsTotal+total, b.job.EventsDone)
	b.mu.Unlock()
}

func (b *rebuild) run(ctx context.Context) (err error) {
	ctx, b.cancel = context.WithCancelCause(ctx)
	defer b.cancel(nil)
	log := b.r.log.With("rebuild", b.job.ID, "projection", b.job.Projection)
	log.Info("rebuilding projection", "reason", b.job.Reason)
	defer func() {
		b.mu.Lock()
		b.job.FinishedAt = time.Now().UTC()
		cancelled := errors.Is(context.Cause(ctx), errCancelled) || errors.Is(err, context.Canceled)
		switch {
		case err == nil:
			b.job.State, b.job.Phase = RebuildDone, "done"
		case cancelled:
			b.job.State, b.job.Error = RebuildCancelled, "cancelled; the live projection is untouched"
		default:
			b.job.State, b.job.Error = RebuildFailed, "failed; the live projection is untouched (the server log has the details under the rebuild's id)"
		}
		b.mu.Unlock()
		if err != nil {
			// A cancellation is what someone asked for, not a fault.
			if cancelled {
				log.Info("rebuild cancelled", "events", b.job.EventsDone)
			} else {
				log.Error("rebuild failed", "err", err)
			}
			for _, v := range b.views {
				if derr := b.ss.DropShadows(context.WithoutCancel(ctx), v.Name, b.gen); derr != nil {
					log.Warn("dropping the rebuild's tables failed", "view", v.Name, "err", derr)
				}
			}
		} else {
			log.Info("rebuilt projection", "events", b.job.EventsDone, "took", b.job.FinishedAt.Sub(b.job.StartedAt))
		}
		b.release()
		if serr := b.save(ctx, true); serr != nil && err == nil {
			err = serr
		}
	}()
	for _, v := range b.views {
		if err := b.ss.DropShadows(ctx, v.Name, ""); err != nil {
			return fmt.Errorf("drop leftovers of %s: %w", v.Name, err)
		}
		if err := b.ss.CreateShadow(ctx, v.Name, b.gen); err != nil {
			return fmt.Errorf("create the rebuild's table of %s: %w", v.Name, err)
		}
	}
	var from kernel.Position
	if sr, ok := b.r.events.(StreamReader); ok {
		if err := b.phase(ctx, "folding"); err != nil {
			return err
		}
		if from, err = b.fold(ctx, sr); err != nil {
			return err
		}
	}
	if err := b.phase(ctx, "indexing"); err != nil {
		return err
	}
	for _, v := range b.views {
		if err := b.ss.IndexShadow(ctx, v.Name, b.gen); err != nil {
			return fmt.Errorf("index the rebuild's table of %s: %w", v.Name, err)
		}
		if err := b.r.store.Commit(ctx, Batch{Projection: b.shadow(v).Name, To: from}); err != nil {
			return err
		}
	}
	if err := b.phase(ctx, "catching-up"); err != nil {
		return err
	}
	b.pending = slices.Clone(b.views)
	// Too far behind, or the table was busy: catch up and try again. Only
	// the switch is retried; a failure to catch up ends the rebuild.
	var failed error
	err = kernel.Retry(switchAttempts, func() error {
		if from, failed = b.catchUp(ctx, from); failed != nil {
			return nil
		}
		if failed = b.phase(ctx, "switching"); failed != nil {
			return nil
		}
		return b.switchAll(ctx)
	}, errTooFar, kernel.ErrConcurrency)
	if failed != nil {
		return failed
	}
	return err
}

// switchAttempts is how many times a rebuild catches up and tries to
// switch its shadows in before it gives up.
const switchAttempts = 21

// fold reads the log grouped by stream up to a stable head, folds each
// contact once with the aggregate and loads the final rows in bulk. It
// returns the position the shadows are at.
func (b *rebuild) fold(ctx context.Context, sr StreamReader) (kernel.Position, error) {
	upTo, err := sr.StableHead(ctx)
	if err != nil {
		return kernel.Position{}, err
	}
	total, err := sr.CountEvents(ctx, kernel.Position{}, upTo)
	if err != nil {
		return kernel.Position{}, err
	}
	b.add(0, total)
	b.buffers = map[string][]Row{}
	b.startLoader(ctx)
	stopped := false
	defer func() {
		if !stopped {
			b.stopLoader()
		}
	}()
	bidx := map[string]shred.BlindIndex{}
	var carry []kernel.Record
	pages := b.readAhead(ctx, sr, upTo)
	for {
		var page []kernel.Record
		select {
		case p, ok := <-pages:
			if !ok {
				return kernel.Position{}, context.Cause(ctx)
			}
			if p.err != nil {
				return kernel.Position{}, p.err
			}
			page = p.recs
		case <-ctx.Done():
			return kernel.Position{}, context.Cause(ctx)
		}
		end := len(page) < FoldPage
		// Split into whole streams; the last one may go on in the next page.
		var streams [][]kernel.Record
		all := append(carry, page...)
		start := 0
		for i := 1; i <= len(all); i++ {
			if i == len(all) || all[i].Stream != all[start].Stream {
				streams = append(streams, all[start:i])
				start = i
			}
		}
		carry = nil
		if !end && len(streams) > 0 {
			carry = slices.Clone(streams[len(streams)-1])
			streams = streams[:len(streams)-1]
		}
		if err := b.foldStreams(ctx, streams, bidx); err != nil {
			return kernel.Position{}, err
		}
		b.add(int64(len(page)), 0)
		if err := b.flush(ctx, LoadBatch); err != nil {
			return kernel.Position{}, err
		}
		if err := b.save(ctx, false); err != nil {
			return kernel.Position{}, err
		}
		if err := context.Cause(ctx); ctx.Err() != nil {
			return kernel.Position{}, err
		}
		if end {
			break
		}
	}
	if err := b.flush(ctx, 1); err != nil {
		return kernel.Position{}, err
	}
	stopped = true
	return upTo, b.stopLoader()
}

type page struct {
	recs []kernel.Record
	err  error
}

// readAhead reads the log grouped by stream up to upTo, a page ahead of the
// fold, until a short page (the end) or an error; it stops when ctx ends.
func (b *rebuild) readAhead(ctx context.Context, sr StreamReader, upTo kernel.Position) <-chan page {
	out := make(chan page, 1)
	go func() {
		defer close(out)
		afterStream, afterVersion := "", uint64(0)
		for {
			recs, err := sr.ReadByStream(ctx, upTo, afterStream, afterVersion, FoldPage)
			select {
			case out <- page{recs, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(recs) < FoldPage {
				return
			}
			last := recs[len(recs)-1]
			afterStream, afterVersion = last.Stream, last.Version
		}
	}()
	return out
}

// foldStreams folds whole streams and buffers the rows of those that end in a rebuilt view.
func (b *rebuild) foldStreams(ctx context.Context, streams [][]kernel.Record, bidx map[string]shred.BlindIndex) error {
	// Only contacts that end in a rebuilt view need their key: decide their
	// final state from the clear payloads first.
	need := map[string][]contact.ID{}
	var keep [][]kernel.Record
	var views []View
	for _, recs := range streams {
		if _, ok := contact.IDFromStream(recs[0].Stream); !ok {
			continue
		}
		var st contact.State
		for _, rec := range recs {
			if s, decides := enters(rec); decides {
				st = s
			}
		}
		i := slices.IndexFunc(b.views, func(v View) bool { return v.holds(st) })
		if i < 0 {
			continue
		}
		id, _ := contact.IDFromStream(recs[0].Stream)
		need[recs[0].Workspace] = append(need[recs[0].Workspace], id)
		keep, views = append(keep, recs), append(views, b.views[i])
	}
	keys := map[contact.ID]ledger.ContactKey{}
	for ws, ids := range need {
		ks, err := b.r.vault.ContactKeys(ctx, ws, ids)
		if err != nil {
			return err
		}
		for id, k := range ks {
			keys[id] = k
		}
		if _, ok := bidx[ws]; !ok {
			if bidx[ws], err = b.r.vault.BlindIndex(ctx, ws); err != nil {
				return err
			}
		}
	}
	// Decrypting, decoding and folding take most of a rebuild's CPU: every
	// core folds a share of the streams; the rows keep the log's order.
	rows := make([]*Row, len(keep))
	workers := min(runtime.GOMAXPROCS(0), max(len(keep)/64, 1))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(keep) && errs[w] == nil; i += workers {
				recs := keep[i]
				id, _ := contact.IDFromStream(recs[0].Stream)
				envs := make([]contact.Envelope, 0, len(recs))
				for _, rec := range recs {
					env, err := ledger.OpenRecord(keys[id], rec)
					if err != nil {
						errs[w] = err
						return
					}
					envs = append(envs, env)
				}
				c, err := contact.Replay(id, envs)
				if err != nil {
					errs[w] = err
					return
				}
				if !views[i].holds(c.State()) {
					continue
				}
				last := recs[len(recs)-1]
				row := BuildRow(c.Snapshot(), bidx[last.Workspace], last.Position)
				rows[i] = &row
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, row := range rows {
		if row != nil {
			b.buffers[views[i].Name] = append(b.buffers[views[i].Name], *row)
		}
	}
	return nil
}

// flush loads the buffered rows of each view that has at least min of them.
func (b *rebuild) flush(ctx context.Context, min int) error {
	for _, v := range b.views {
		rows := b.buffers[v.Name]
		if len(rows) == 0 || len(rows) < min {
			continue
		}
		if err, _ := b.loadErr.Load().(error); err != nil {
			return err
		}
		select {
		case b.loads <- load{view: v.Name, rows: rows}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		b.buffers[v.Name] = nil
	}
	return nil
}

// catchUp applies the log after from to the shadows with the live path,
// until it has read everything committed; it returns where they are.
func (b *rebuild) catchUp(ctx context.Context, from kernel.Position) (kernel.Position, error) {
	if sr, ok := b.r.events.(StreamReader); ok {
		if head, err := b.r.events.Head(ctx); err == nil && from.Less(head) {
			if n, err := sr.CountEvents(ctx, from, head); err == nil {
				b.add(0, n)
			}
		}
	}
	for {
		recs, err := b.r.events.ReadAll(ctx, from, CatchUpPage)
		if err != nil {
			return from, err
		}
		if len(recs) == 0 {
			return from, nil
		}
		to := recs[len(recs)-1].Position
		for _, v := range b.pending {
			sv := b.shadow(v)
			batch, err := b.r.viewBatch(ctx, sv, from, recs)
			if err != nil {
				return from, err
			}
			batch.Projection, batch.From, batch.To = sv.Name, from, to
			if err := b.r.store.Commit(ctx, batch); err != nil {
				return from, err
			}
		}
		from = to
		b.add(int64(len(recs)), 0)
		if err := b.save(ctx, false); err != nil {
			return from, err
		}
		if len(recs) < CatchUpPage {
			return from, nil
		}
	}
}

// switchAll switches each view's shadow in, bringing it level with the
// live projection inside the switch when the live one is a little ahead.
func (b *rebuild) switchAll(ctx context.Context) error {
	for len(b.pending) > 0 {
		v := b.pending[0]
		sv := b.shadow(v)
		err := b.ss.SwitchShadow(ctx, v.Name, b.gen, func(ctx context.Context, from, to kernel.Position) (Batch, error) {
			var recs []kernel.Record
			for cur := from; cur.Less(to); {
				page, err := b.r.events.ReadAll(ctx, cur, CatchUpPage)
				if err != nil {
					return Batch{}, err
				}
				if len(page) == 0 {
					return Batch{}, fmt.Errorf("the log ends at %s, before the live checkpoint %s", cur, to)
				}
				for _, rec := range page {
					if to.Less(rec.Position) {
						break
					}
					recs = append(recs, rec)
					cur = rec.Position
				}
				if !cur.Less(to) {
					break
				}
				if len(recs) > SwitchWindow {
					return Batch{}, errTooFar
				}
				if to.Less(page[len(page)-1].Position) {
					break
				}
			}
			return b.r.viewBatch(ctx, sv, from, recs)
		})
		if err != nil {
			return err
		}
		b.pending = b.pending[1:]
	}
	return nil
}
