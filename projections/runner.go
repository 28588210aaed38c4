package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/contactledger/ledger/ledger"
)

// Runner keeps every projection up to date with the log and tells queries how far each one is.
type Runner struct {
	events kernel.EventStore
	store  Store
	vault  *ledger.Vault
	log    *slog.Logger
	// Leaser, when set, makes each projection run only while this process
	// holds its lease (Acquire).
	Leaser ledger.Lease
	// WaitTimeout bounds how long a query waits for a projection to catch up.
	WaitTimeout time.Duration
	// FarBehind is how many events a view may lag behind the log when the
	// runner starts before it is rebuilt rather than caught up batch by
	// batch (see farBehind); 0 turns it off.
	FarBehind int64
	// Observe, when set, is told of every rebuild's progress (for metrics).
	Observe func(RebuildJob)

	mu      sync.Mutex
	pos     map[string]kernel.Position
	leading map[string]bool
	failing map[string]time.Time
	changed chan struct{}

	rebuilds sync.WaitGroup
	base     context.Context // Run's context: background rebuilds end with it
}

// NewRunner returns a runner; Run starts it.
func NewRunner(events kernel.EventStore, store Store, vault *ledger.Vault, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{events: events, store: store, vault: vault, log: log, WaitTimeout: 10 * time.Second, FarBehind: DefaultFarBehind,
		pos: map[string]kernel.Position{}, failing: map[string]time.Time{}, changed: make(chan struct{})}
}

// Run runs every projection until ctx ends. A projection whose batch fails
// is retried with backoff; the others go on.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	r.base = ctx
	r.mu.Unlock()
	defer r.rebuilds.Wait()
	var wg sync.WaitGroup
	// A view far behind the log is rebuilt before its live loop starts
	// (see FarBehind); the loop then follows on from the switched-in rows.
	behind := r.farBehind(ctx)
	gates := make(map[string]chan struct{}, len(behind))
	for _, name := range behind {
		gates[name] = make(chan struct{})
	}
	wg.Go(func() { r.rebuildAtStart(ctx, behind, gates) })
	for _, v := range append(Views(), IdentityView()) {
		wg.Go(func() {
			if g := gates[v.Name]; g != nil {
				select {
				case <-g:
				case <-ctx.Done():
					return
				}
			}
			r.loop(ctx, v.Name, func(ctx context.Context, from kernel.Position, recs []kernel.Record) (Batch, error) {
				return r.viewBatch(ctx, v, from, recs)
			})
		})
	}
	wg.Go(func() { r.loop(ctx, Erasure, r.erasureBatch) })
	wg.Wait()
	return ctx.Err()
}

func (r *Runner) loop(ctx context.Context, name string, build func(context.Context, kernel.Position, []kernel.Record) (Batch, error)) {
	if r.Leaser == nil {
		r.run(ctx, name, build)
		return
	}
	for ctx.Err() == nil {
		leaseCtx, release, err := r.Leaser.Acquire(ctx, name)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error("acquiring the lease of a projection failed", "projection", name, "err", err)
				time.Sleep(time.Second)
			}
			continue
		}
		r.setLeading(name, true)
		r.log.Info("running projection", "projection", name)
		r.run(leaseCtx, name, build)
		r.setLeading(name, false)
		release()
		if ctx.Err() == nil {
			r.log.Warn("lost the lease of a projection; waiting to take it again", "projection", name, "cause", context.Cause(leaseCtx))
		}
	}
}

func (r *Runner) setLeading(name string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leading == nil {
		r.leading = map[string]bool{}
	}
	r.leading[name] = on
}

// Leading reports whether this process runs the projection now.
func (r *Runner) Leading(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Leaser == nil || r.leading[name]
}

// LazyCheckpoint is how long a projection may leave its stored checkpoint
// behind when the events it applied changed none of its rows (an archive
// for the trash view, a create for the erasure projection): it commits
// such a move at most this often, or when the log goes quiet, instead of
// at every batch. Every commit is a write (and an fsync) that the
// commands' own commits wait behind; a projection that restarts re-reads
// those events and changes nothing. This process's queries follow the
// runner's own progress, which moves at once.
var LazyCheckpoint = 200 * time.Millisecond

// checkpoint is a projection's stored checkpoint and the move not stored yet.
type checkpoint struct {
	mu      sync.Mutex
	stored  kernel.Position
	pending kernel.Position // beyond stored when a move waits
	last    time.Time       // when the stored checkpoint last moved
	err     error           // a deferred move failed: the next batch returns it
}

// commit stores b (its From set to the stored checkpoint), or, when b
// changes nothing and the last commit was a moment ago, only notes its end.
func (cp *checkpoint) commit(ctx context.Context, store Store, b Batch) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.err != nil {
		err := cp.err
		cp.err = nil
		return err
	}
	if b.empty() && time.Since(cp.last) < LazyCheckpoint {
		cp.pending = b.To
		return nil
	}
	b.From = cp.stored
	if err := store.Commit(ctx, b); err != nil {
		return err
	}
	cp.stored, cp.pending, cp.last = b.To, kernel.Position{}, time.Now()
	return nil
}

// flush stores a move that waits, once the projection has been quiet long enough.
func (cp *checkpoint) flush(ctx context.Context, store Store, name string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if !cp.stored.Less(cp.pending) || time.Since(cp.last) < LazyCheckpoint || cp.err != nil {
		return
	}
	if err := store.Commit(ctx, Batch{Projection: name, From: cp.stored, To: cp.pending}); err != nil {
		cp.err = err
		return
	}
	cp.stored, cp.pending, cp.last = cp.pending, kernel.Position{}, time.Now()
}

// empty reports whether a batch changes no row, key or copy: it only moves the checkpoint.
func (b Batch) empty() bool {
	return len(b.Upserts) == 0 && len(b.Deletes) == 0 && len(b.DestroyKeys) == 0 && len(b.Erased) == 0
}

// run keeps one projection up to date until ctx ends, retrying failures with backoff.
func (r *Runner) run(ctx context.Context, name string, build func(context.Context, kernel.Position, []kernel.Record) (Batch, error)) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		from, err := r.store.Checkpoint(ctx, name)
		if err == nil {
			r.advance(name, from)
			cp := &checkpoint{stored: from, last: time.Now()}
			subCtx, stop := context.WithCancel(ctx)
			flushed := make(chan struct{})
			go func() {
				defer close(flushed)
				t := time.NewTicker(LazyCheckpoint)
				defer t.Stop()
				for {
					select {
					case <-subCtx.Done():
						return
					case <-t.C:
						cp.flush(subCtx, r.store, name)
					}
				}
			}()
			err = r.events.Subscribe(subCtx, from, func(ctx context.Context, recs []kernel.Record) error {
				b, err := build(ctx, from, recs)
				if err != nil {
					return err
				}
				b.Projection, b.To = name, recs[len(recs)-1].Position
				if err := cp.commit(ctx, r.store, b); err != nil {
					return fmt.Errorf("commit %s: %w", name, err)
				}
				from = b.To
				if c, ok := r.store.(Compacter); ok && len(b.Erased) > 0 {
					if err := c.Compact(ctx); err != nil {
						r.log.Warn("compaction after erasure failed", "projection", name, "err", err)
					}
				}
				r.advance(name, from)
				r.setFailing(name, false)
				backoff = 100 * time.Millisecond
				return nil
			})
			stop()
			<-flushed
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, kernel.ErrConcurrency) {
			// The checkpoint moved under us: a rebuild switched in a new
			// table, or another process holds the projection. Start over
			// from the stored checkpoint.
			r.log.Debug("projection checkpoint moved; resuming from it", "projection", name)
			continue
		}
		if r.setFailing(name, true) {
			if fs, ok := r.store.(FailureStore); ok {
				if ferr := fs.SetFailed(ctx, name, time.Now().UTC()); ferr != nil {
					r.log.Warn("recording a projection's failure failed", "projection", name, "err", ferr)
				}
			}
		}
		r.log.Error("projection failed; retrying", "projection", name, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// setFailing notes whether a projection's batches fail in this process; it
// reports whether the projection just started failing.
func (r *Runner) setFailing(name string, on bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, was := r.failing[name]
	if !on {
		delete(r.failing, name)
	} else if !was {
		r.failing[name] = time.Now()
	}
	return on && !was
}

// DefaultFarBehind is a new runner's FarBehind.
const DefaultFarBehind = 100_000

// farBehind returns the views (the identity index included) whose stored
// checkpoint is at least FarBehind events behind the log's head as the
// runner starts: a fresh server on a long log, an index added to a
// workspace that has history, a server back after a long stop. Applying
// such a backlog batch by batch writes every row's index entries in
// random order, at a few thousand events a second; a rebuild folds each
// contact once and loads the final rows in bulk, ten times faster. It
// returns none when the log cannot count its events.
func (r *Runner) farBehind(ctx context.Context) []string {
	counter, ok := r.events.(StreamReader)
	if !ok || r.FarBehind <= 0 {
		return nil
	}
	if _, ok := r.store.(ShadowStore); !ok {
		return nil
	}
	head, err := r.events.Head(ctx)
	if err != nil {
		r.log.Warn("reading the log's head failed; no view is rebuilt for lagging", "err", err)
		return nil
	}
	var out []string
	for _, v := range append(Views(), IdentityView()) {
		cp, err := r.store.Checkpoint(ctx, v.Name)
		if err != nil {
			r.log.Warn("reading a projection's checkpoint failed", "projection", v.Name, "err", err)
			continue
		}
		n, err := counter.CountEvents(ctx, cp, head)
		if err != nil {
			r.log.Warn("counting a projection's lag failed", "projection", v.Name, "err", err)
			continue
		}
		if n >= r.FarBehind {
			r.log.Info("projection far behind the log; rebuilding it before it runs", "projection", v.Name, "lag_events", n)
			out = append(out, v.Name)
		}
	}
	return out
}

// rebuildAtStart rebuilds, without downtime, the views far behind (each
// gate is closed once its view's rebuild is over, however it ended, so
// its live loop starts) and then every view whose rows were built by an
// older version of the projections' code. Another process may be
// rebuilding already (the rebuild lock): then this one leaves it be.
func (r *Runner) rebuildAtStart(ctx context.Context, behind []string, gates map[string]chan struct{}) {
	// gates is only read here and by the loops; closed says which are open.
	closed := make(map[string]bool, len(gates))
	open := func(view string) {
		if g := gates[view]; g != nil && !closed[view] {
			close(g)
			closed[view] = true
		}
	}
	defer func() {
		for view := range gates {
			open(view)
		}
	}()
	views := 0
	for _, name := range behind {
		if name != Identities {
			views++
		}
	}
	// Every view behind at once (a fresh server): one fold of the log for them all.
	targets := behind
	if views == len(Views()) {
		targets = []string{All}
		if slices.Contains(behind, Identities) {
			targets = append(targets, Identities)
		}
	}
	for _, name := range targets {
		_, err := r.RunRebuild(ctx, name, "behind", "system:projections", nil)
		if err != nil && !errors.Is(err, ErrRebuildRunning) && ctx.Err() == nil {
			r.log.Error("rebuilding a projection far behind failed; it catches up batch by batch", "projection", name, "err", err)
		}
		for _, v := range viewsOf(name) {
			open(v)
		}
	}
	r.rebuildOutdated(ctx, behind)
}

// viewsOf names the views a rebuild of name covers.
func viewsOf(name string) []string {
	vs, _ := rebuildViews(name)
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Name
	}
	return out
}

// rebuildOutdated rebuilds every view whose rows were built by an older
// version of the projections' code, except those rebuilt already.
func (r *Runner) rebuildOutdated(ctx context.Context, rebuilt []string) {
	ss, ok := r.store.(ShadowStore)
	if !ok {
		return
	}
	versions, err := ss.Versions(ctx)
	if err != nil {
		r.log.Error("reading the projections' versions failed", "err", err)
		return
	}
	for _, v := range append(Views(), IdentityView()) {
		if have, ok := versions[v.Name]; !ok || have >= Version || slices.Contains(rebuilt, v.Name) {
			continue
		}
		r.log.Info("projection built by older code; rebuilding it", "projection", v.Name, "version", versions[v.Name], "code_version", Version)
		_, err := r.RunRebuild(ctx, v.Name, "version", "system:projections", nil)
		if err != nil && !errors.Is(err, ErrRebuildRunning) && ctx.Err() == nil {
			r.log.Error("rebuilding an outdated projection failed; it keeps its rows", "projection", v.Name, "err", err)
		}
	}
}

func (r *Runner) advance(name string, p kernel.Position) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.pos[name]; ok && !cur.Less(p) {
		return
	}
	r.pos[name] = p
	close(r.changed)
	r.changed = make(chan struct{})
}

// Position returns how far this runner has seen projection get.
func (r *Runner) Position(name string) (kernel.Position, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pos[name]
	return p, ok
}

// ErrLagging is returned when a projection does not catch up in time.
var ErrLagging = &kernel.Error{Code: kernel.CodeUnavailable, Reason: "projection-lagging", Message: "the view is catching up with recent changes; retry shortly"}

// WaitFor returns once projection has applied the log up to pos. It follows
// this runner's own progress and, when another process runs the projection,
// the checkpoint in the store.
func (r *Runner) WaitFor(ctx context.Context, projection string, pos kernel.Position) error {
	if pos.IsZero() {
		return nil
	}
	timer := time.NewTimer(r.WaitTimeout)
	defer timer.Stop()
	poll := time.Millisecond
	for {
		r.mu.Lock()
		cur, changed := r.pos[projection], r.changed
		r.mu.Unlock()
		if !cur.Less(pos) {
			return nil
		}
		select {
		case <-changed:
			continue
		case <-time.After(poll):
			cp, err := r.store.Checkpoint(ctx, projection)
			if err != nil {
				return err
			}
			if !cp.Less(pos) {
				return nil
			}
			poll = min(poll*2, 50*time.Millisecond)
		case <-timer.C:
			return ErrLagging
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// erasureBatch destroys the data key of every contact whose tombstone is in recs.
func (r *Runner) erasureBatch(_ context.Context, _ kernel.Position, recs []kernel.Record) (Batch, error) {
	var b Batch
	for _, rec := range recs {
		if !erasing(rec) {
			continue
		}
		if id, ok := contact.IDFromStream(rec.Stream); ok {
			b.DestroyKeys = append(b.DestroyKeys, Ref{Workspace: rec.Workspace, ID: id})
			if b.Tombstones == nil {
				b.Tombstones = map[contact.ID]string{}
			}
			b.Tombstones[id] = rec.ID.String()
			b.Erased = append(b.Erased, Ref{Workspace: rec.Workspace, ID: id})
		}
	}
	return b, nil
}

// viewBatch applies recs to the rows of one view.
func (r *Runner) viewBatch(ctx context.Context, v View, _ kernel.Position, recs []kernel.Record) (Batch, error) {
	refs := batchRefs(recs)
	if len(refs) == 0 {
		return Batch{}, nil
	}
	rows, err := r.store.Rows(ctx, v.Name, refs)
	if err != nil {
		return Batch{}, fmt.Errorf("rows of %s: %w", v.Name, err)
	}
	f := &viewFold{v: v, keys: newKeyCache(r.vault), rows: rows,
		state: map[contact.ID]*contact.Contact{}, last: map[contact.ID]kernel.Position{}}
	for id, row := range rows {
		f.state[id] = contact.FromSnapshot(row.Contact)
	}
	if err := r.prepareEntering(ctx, f, refs, recs); err != nil {
		return Batch{}, err
	}
	for _, rec := range recs {
		if err := f.apply(ctx, rec); err != nil {
			return Batch{}, err
		}
	}
	return f.batch(ctx, refs)
}

// batchRefs returns the contacts whose streams recs touch, in first-seen order.
func batchRefs(recs []kernel.Record) []Ref {
	var refs []Ref
	seen := map[contact.ID]bool{}
	for _, rec := range recs {
		if id, ok := contact.IDFromStream(rec.Stream); ok && !seen[id] {
			seen[id] = true
			refs = append(refs, Ref{Workspace: rec.Workspace, ID: id})
		}
	}
	return refs
}

// viewFold is one batch of a view being folded: the rows it starts from,
// each contact's state and the position of the last event applied to it.
type viewFold struct {
	v        View
	keys     *keyCache
	rows     map[contact.ID]Row
	state    map[contact.ID]*contact.Contact
	last     map[contact.ID]kernel.Position
	entering map[contact.ID]kernel.Record    // the event that brings a contact into the view
	entered  map[contact.ID]*contact.Contact // the entering contacts, folded up to that event
}

// prepareEntering finds the contacts an event brings into the view (the
// first such event of each), fetches in one go the keys of every contact
// whose events this batch will read, and prepares the entering ones.
func (r *Runner) prepareEntering(ctx context.Context, f *viewFold, refs []Ref, recs []kernel.Record) error {
	need := map[string][]contact.ID{}
	for _, ref := range refs {
		if _, in := f.rows[ref.ID]; in {
			need[ref.Workspace] = append(need[ref.Workspace], ref.ID)
		}
	}
	f.entering = map[contact.ID]kernel.Record{}
	for _, rec := range recs {
		id, ok := contact.IDFromStream(rec.Stream)
		if _, in := f.rows[id]; !ok || in {
			continue
		}
		if _, done := f.entering[id]; done {
			continue
		}
		if st, decides := enters(rec); decides && f.v.holds(st) {
			f.entering[id] = rec
			need[rec.Workspace] = append(need[rec.Workspace], id)
		}
	}
	for ws, ids := range need {
		if err := f.keys.prefetch(ctx, ws, ids); err != nil {
			return err
		}
	}
	entered, err := r.enter(ctx, f.v.Name, f.keys, f.entering)
	f.entered = entered
	return err
}

// apply folds one event into its contact, unless the row already holds it
// or the contact is neither in the view nor entering it with this event.
func (f *viewFold) apply(ctx context.Context, rec kernel.Record) error {
	id, ok := contact.IDFromStream(rec.Stream)
	if !ok {
		return nil
	}
	c := f.state[id]
	if c != nil && rec.Version <= c.Version() {
		return nil // already in the row
	}
	if c == nil {
		if e, ok := f.entering[id]; !ok || e.ID != rec.ID {
			return nil
		}
		if pre, ok := f.entered[id]; ok {
			f.state[id], f.last[id] = pre, rec.Position
			return nil
		}
	}
	key, err := f.keys.get(ctx, rec.Workspace, id)
	if err != nil {
		return err
	}
	env, err := ledger.OpenRecord(key, rec)
	if err != nil {
		return err
	}
	if c != nil {
		if err := c.Apply(env); err != nil {
			return fmt.Errorf("%s: %w", f.v.Name, err)
		}
	} else if c, err = contact.Replay(id, []contact.Envelope{env}); err != nil {
		// The stream's first event: enter prepared the contacts of the others.
		return err
	}
	f.state[id], f.last[id] = c, rec.Position
	return nil
}

// batch returns the view's changes: rows of the contacts the batch moved
// that the view holds, deletes of those it no longer holds, and erasures.
func (f *viewFold) batch(ctx context.Context, refs []Ref) (Batch, error) {
	var b Batch
	for _, ref := range refs {
		c, ok := f.state[ref.ID]
		if !ok || f.last[ref.ID].IsZero() {
			continue
		}
		if c.Shredded() && c.Tombstone() != nil {
			b.Erased = append(b.Erased, ref)
		}
		if !f.v.holds(c.State()) {
			if _, had := f.rows[ref.ID]; had {
				b.Deletes = append(b.Deletes, ref)
			}
			continue
		}
		bidx, err := f.keys.blindIndex(ctx, ref.Workspace)
		if err != nil {
			return Batch{}, err
		}
		b.Upserts = append(b.Upserts, BuildRow(c.Snapshot(), bidx, f.last[ref.ID]))
	}
	return b, nil
}

// erasing reports whether rec is an erasure's tombstone.
func erasing(rec kernel.Record) bool {
	return rec.Type == contact.TypePurged || rec.Type == contact.TypeAnonymized
}

// enters returns the state a record's event puts a contact in, when it
// decides that on its own. It reads the clear payload only, so no key is needed.
func enters(rec kernel.Record) (contact.State, bool) {
	ev, err := contact.Decode(rec.Type, rec.Schema, rec.Data, nil, true)
	if err != nil {
		return "", false
	}
	return contact.EntersState(ev)
}

// rowSources returns the projections whose rows a contact entering
// projection may come from, the likeliest first: the identity index holds
// every live contact, trash those a restore brings back.
func rowSources(projection string) []string {
	out := []string{Identities, "trash", "active", "archived"}
	return slices.DeleteFunc(out, func(n string) bool { return n == projection })
}

// enter returns, for each contact that entering brings into projection
// with an event past its stream's first, the contact as of that event.
// A contact moving between views (a restore from trash to the view it
// came from, an archive, a trash) is taken from its row in another view or
// in the identity index when that row is at the event or at the one
// before (and the event is applied to it): no stream is read, nothing is
// folded again. The others are folded from their streams, read in one go.
func (r *Runner) enter(ctx context.Context, projection string, keys *keyCache, entering map[contact.ID]kernel.Record) (map[contact.ID]*contact.Contact, error) {
	out := map[contact.ID]*contact.Contact{}
	pending := map[contact.ID]kernel.Record{}
	moving := 0
	for id, rec := range entering {
		if rec.Version > 1 {
			pending[id] = rec
			if !erasing(rec) {
				moving++
			}
		}
	}
	for _, src := range rowSources(projection) {
		if moving == 0 {
			break
		}
		refs := make([]Ref, 0, len(pending))
		for id, rec := range pending {
			// An erased contact is folded with its key destroyed, never
			// taken from a row that was built while it could be read.
			if !erasing(rec) {
				refs = append(refs, Ref{Workspace: rec.Workspace, ID: id})
			}
		}
		rows, err := r.store.Rows(ctx, src, refs)
		if err != nil {
			return nil, fmt.Errorf("rows of %s: %w", src, err)
		}
		for id, row := range rows {
			rec := pending[id]
			c := contact.FromSnapshot(row.Contact)
			switch row.Contact.Version {
			case rec.Version:
			case rec.Version - 1:
				key, err := keys.get(ctx, rec.Workspace, id)
				if err != nil {
					return nil, err
				}
				env, err := ledger.OpenRecord(key, rec)
				if err != nil {
					return nil, err
				}
				if err := c.Apply(env); err != nil {
					return nil, fmt.Errorf("%s from %s: %w", projection, src, err)
				}
			default:
				continue // too far ahead, or behind: another source, or the stream
			}
			out[id] = c
			delete(pending, id)
			moving--
		}
	}
	streams := map[string][]string{}
	for _, rec := range pending {
		streams[rec.Workspace] = append(streams[rec.Workspace], rec.Stream)
	}
	for ws, sts := range streams {
		all, err := kernel.ReadStreams(ctx, r.events, ws, sts)
		if err != nil {
			return nil, fmt.Errorf("fold %d streams: %w", len(sts), err)
		}
		for _, st := range sts {
			id, _ := contact.IDFromStream(st)
			rec := pending[id]
			key, err := keys.get(ctx, ws, id)
			if err != nil {
				return nil, err
			}
			envs := make([]contact.Envelope, 0, rec.Version)
			for _, x := range all[st] {
				if x.Version > rec.Version {
					break
				}
				env, err := ledger.OpenRecord(key, x)
				if err != nil {
					return nil, err
				}
				envs = append(envs, env)
			}
			c, err := contact.Replay(id, envs)
			if err != nil {
				return nil, fmt.Errorf("fold %s: %w", st, err)
			}
			out[id] = c
		}
	}
	return out, nil
}

// BuildRow turns a contact's snapshot into its row, with the blind indexes
// of its email, phone and source identity.
func BuildRow(s contact.Snapshot, bidx shred.BlindIndex, pos kernel.Position) Row {
	return Row{
		Contact: s, SortAt: SortAt(s), Position: pos,
		EmailIndex: bidx.Of("email", contact.NormalizeEmail(s.Personal.Email)),
		PhoneIndex: bidx.Of("phone", contact.NormalizePhone(s.Personal.Phone)),
		ExtIndex:   ExtIndex(bidx, s.Source, s.Personal.ExternalID),
		TagIndexes: tagIndexes(bidx, s.Tags),
	}
}

// tagIndexes returns the blind indexes of tags, sorted.
func tagIndexes(bidx shred.BlindIndex, tags []string) []string {
	if len(tags) == 0 {
		return nil
	}
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = ledger.TagIndex(bidx, t)
	}
	slices.Sort(out)
	return out
}

// ExtIndex returns the blind index of a contact's identity in its source
// system, or "" when it has no external id. The external id is personal, so
// it is only ever matched through this index.
func ExtIndex(bidx shred.BlindIndex, source, externalID string) string {
	if source == "" || externalID == "" {
		return ""
	}
	return bidx.Of("ext", source+"\x00"+externalID)
}

// keyCache holds the keys of one batch, and no longer.
type keyCache struct {
	vault *ledger.Vault
	keys  map[contact.ID]ledger.ContactKey
	bidx  map[string]shred.BlindIndex
}

func newKeyCache(v *ledger.Vault) *keyCache {
	return &keyCache{vault: v, keys: map[contact.ID]ledger.ContactKey{}, bidx: map[string]shred.BlindIndex{}}
}

// prefetch fetches the keys of ids in one query.
func (k *keyCache) prefetch(ctx context.Context, workspace string, ids []contact.ID) error {
	got, err := k.vault.ContactKeys(ctx, workspace, ids)
	if err != nil {
		return err
	}
	maps.Copy(k.keys, got)
	return nil
}

func (k *keyCache) get(ctx context.Context, workspace string, id contact.ID) (ledger.ContactKey, error) {
	if key, ok := k.keys[id]; ok {
		return key, nil
	}
	key, err := k.vault.ContactKey(ctx, workspace, id)
	if err != nil {
		return ledger.ContactKey{}, err
	}
	k.keys[id] = key
	return key, nil
}

func (k *keyCache) blindIndex(ctx context.Context, workspace string) (shred.BlindIndex, error) {
	if b, ok := k.bidx[workspace]; ok {
		return b, nil
	}
	b, err := k.vault.BlindIndex(ctx, workspace)
	if err != nil {
		return shred.BlindIndex{}, err
	}
	k.bidx[workspace] = b
	return b, nil
}

var _ ledger.Progress = (*Runner)(nil)
