// Package delivery delivers the log to webhook subscriptions, like a
// projection: each subscription has a checkpoint in the log, moved in the
// same transaction as the attempts and retries of the batch it covers, so
// delivery survives restarts and crashes without skipping an event
// (at-least-once: a batch sent but not committed is sent again).
//
// Events of one contact arrive in order: while an event waits for a
// retry, later events of the same contact queue behind it, and events of
// other contacts go on (a receiver that refuses one contact's event does
// not hold up the others). Failed attempts are retried with exponential
// backoff and jitter for more than a day (Svix's schedule); an event still
// failing then is given up, recorded as failed, and the contact's next
// event goes. A subscription whose every attempt failed for days is
// disabled, with the reason shown. Payloads are rendered from the log at
// each attempt, with the contact's key of that moment: once a contact is
// erased, a retry carries nothing personal.
//
// With several replicas on one PostgreSQL database, each subscription is
// delivered by one replica at a time, under a lease.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/contactledger/ledger/domain/feed"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/oklog/ulid/v2"
)

// Schedule is Svix's retry schedule: the delays before each retry after a
// failed attempt (immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h:
// about 27.6 hours in all, eight attempts).
var Schedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// DisableAfter is how long a subscription may fail every attempt before it
// is disabled.
const DisableAfter = 5 * 24 * time.Hour

// Observer is told of every attempt, for metrics. It gets a subscription's
// id (a server-made id) and an outcome, never a URL or anything personal.
type Observer interface {
	Attempt(subscription, outcome string, d time.Duration)
}

// Leases lets one process at a time deliver each subscription when several
// share a store.
type Leases interface {
	// OpenLeases opens a session that holds any number of named leases;
	// they all end with it.
	OpenLeases(ctx context.Context) (LeaseSession, error)
}

// LeaseSession holds leases until it is closed or lost.
type LeaseSession interface {
	// TryAcquire takes the named lease if no other session holds it.
	TryAcquire(ctx context.Context, name string) (bool, error)
	// Release gives a lease back.
	Release(ctx context.Context, name string) error
	// Lost is closed when the session ends on its own (its connection
	// broke): every lease it held is gone.
	Lost() <-chan struct{}
	Close() error
}

// Service is what delivery uses of the service: the log's wake-ups, the
// feed it delivers, the streams it checks, and the subscriptions' secrets.
type Service interface {
	LogChanged() <-chan struct{}
	SigningSecrets(ctx context.Context, w ledger.Webhook) ([][]byte, error)
	ReadStreams(ctx context.Context, workspace string, streams []string) (map[string][]kernel.Record, error)
	ReadFeed(ctx context.Context, q ledger.FeedQuery) ([]kernel.Record, kernel.Position, bool, error)
	Render(ctx context.Context, workspace string, recs []kernel.Record, personal bool) ([]ledger.Rendered, error)
}

// Options configures a Runner.
type Options struct {
	Service Service
	Store   ledger.WebhookStore
	Sender  ledger.WebhookSender
	// Leases, when set, makes each subscription delivered by the process
	// holding its lease; without it this process delivers every one.
	Leases  Leases
	Logger  *slog.Logger
	Observe Observer
	// Schedule overrides the retry delays (tests); DisableAfter how long
	// failing lasts before a subscription is disabled.
	Schedule     []time.Duration
	DisableAfter time.Duration
	// Batch is how many events a subscription reads and commits at once
	// (1,000); InFlight how many requests it keeps in flight (64).
	Batch    int
	InFlight int
	// Scan is how often the runner looks for new and changed subscriptions
	// besides being kicked (1 s); Poll how often an idle subscription looks
	// at the log besides being woken (1 s).
	Scan time.Duration
	Poll time.Duration
	// AttemptRetention is how long attempts are kept (7 days).
	AttemptRetention time.Duration
	Now              func() time.Time
}

// Runner delivers every enabled subscription it holds.
type Runner struct {
	o    Options
	svc  Service
	log  *slog.Logger
	kick chan struct{}

	mu      sync.Mutex
	running map[string]bool
}

// New returns a runner; Run starts it.
func New(o Options) *Runner {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Schedule == nil {
		o.Schedule = Schedule
	}
	if o.DisableAfter == 0 {
		o.DisableAfter = DisableAfter
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.InFlight <= 0 {
		o.InFlight = 64
	}
	if o.Scan <= 0 {
		o.Scan = time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.AttemptRetention <= 0 {
		o.AttemptRetention = 7 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Runner{o: o, svc: o.Service, log: o.Logger, kick: make(chan struct{}, 1), running: map[string]bool{}}
}

// Kick makes the runner look at the subscriptions now (one was created,
// changed or replayed in this process).
func (r *Runner) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Delivering reports whether this process delivers the subscription now.
func (r *Runner) Delivering(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[id]
}

func (r *Runner) now() time.Time { return r.o.Now().UTC().Truncate(time.Microsecond) }

// worker is one subscription's deliverer, running until cancelled.
type worker struct {
	revision int64
	cancel   context.CancelFunc
	done     chan struct{}
	failed   time.Time // when it last ended with an error
}

// Run delivers until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { r.prune(ctx) })
	defer wg.Wait()
	for ctx.Err() == nil {
		var session LeaseSession
		if r.o.Leases != nil {
			s, err := r.o.Leases.OpenLeases(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Error("opening the webhook leases failed; retrying", "err", err)
					sleep(ctx, r.o.Scan)
				}
				continue
			}
			session = s
		}
		r.serve(ctx, session)
		if session != nil {
			session.Close()
		}
	}
	return ctx.Err()
}

// serve runs workers for the subscriptions this process holds, until ctx
// ends or the lease session is lost.
func (r *Runner) serve(ctx context.Context, session LeaseSession) {
	sctx, cancel := context.WithCancel(ctx)
	p := &workerPool{r: r, session: session, workers: map[string]*worker{}, held: map[string]bool{}}
	var lost <-chan struct{}
	if session != nil {
		lost = session.Lost()
	}
	defer func() {
		cancel()
		// Closing the session gives every lease back.
		for _, w := range p.workers {
			<-w.done
		}
		r.mu.Lock()
		clear(r.running)
		r.mu.Unlock()
	}()
	for {
		hooks, err := r.o.Store.Webhooks(sctx, "")
		if err != nil && sctx.Err() == nil {
			r.log.Error("listing webhooks failed", "err", err)
		}
		want := map[string]ledger.Webhook{}
		for _, h := range hooks {
			if h.Enabled {
				want[h.ID] = h
			}
		}
		if err == nil {
			for id := range p.workers {
				if _, ok := want[id]; !ok {
					p.stop(id)
					p.release(ctx, id)
				}
			}
		}
		for _, h := range want {
			p.ensure(sctx, h)
		}
		select {
		case <-sctx.Done():
			return
		case <-lost:
			r.log.Warn("lost the webhook leases; taking them again")
			return
		case <-r.kick:
		case <-time.After(r.o.Scan):
		}
	}
}

// workerPool is the delivery workers of one serving session, one per
// enabled webhook whose lease the session holds.
type workerPool struct {
	r       *Runner
	session LeaseSession // nil: no leases (one process)
	workers map[string]*worker
	held    map[string]bool // leases this session holds
}

// release gives a webhook's lease back.
func (p *workerPool) release(ctx context.Context, id string) {
	if p.session != nil && p.held[id] {
		delete(p.held, id)
		if err := p.session.Release(ctx, "webhook."+id); err != nil {
			p.r.log.Warn("releasing a webhook lease failed", "webhook", id, "err", err)
		}
	}
}

// stop ends a webhook's worker and waits for it.
func (p *workerPool) stop(id string) {
	w := p.workers[id]
	w.cancel()
	<-w.done
	delete(p.workers, id)
	p.r.mu.Lock()
	delete(p.r.running, id)
	p.r.mu.Unlock()
}

// ensure keeps a webhook's worker running: it restarts one that ended with
// an error (after a pause) or serves an older revision, and starts one
// once the webhook's lease is taken.
func (p *workerPool) ensure(ctx context.Context, h ledger.Webhook) {
	id := h.ID
	if w, ok := p.workers[id]; ok {
		select {
		case <-w.done:
			// It ended with an error: start again after a pause.
			if time.Since(w.failed) < 2*time.Second {
				return
			}
			delete(p.workers, id)
		default:
			if w.revision == h.Revision {
				return
			}
			p.stop(id)
		}
	}
	if p.session != nil && !p.held[id] {
		got, err := p.session.TryAcquire(ctx, "webhook."+id)
		if err != nil || !got {
			return
		}
		p.held[id] = true
	}
	p.start(ctx, h)
}

// start runs a worker delivering h's events.
func (p *workerPool) start(ctx context.Context, h ledger.Webhook) {
	r := p.r
	wctx, wcancel := context.WithCancel(ctx)
	w := &worker{revision: h.Revision, cancel: wcancel, done: make(chan struct{})}
	p.workers[h.ID] = w
	r.mu.Lock()
	r.running[h.ID] = true
	r.mu.Unlock()
	go func() {
		defer close(w.done)
		err := r.deliver(wctx, h)
		switch {
		case err == nil || wctx.Err() != nil:
		case errors.Is(err, kernel.ErrNotFound):
			w.failed = time.Now() // deleted meanwhile: the next scan lets it go
		default:
			w.failed = time.Now()
			r.log.Error("webhook delivery failed; it restarts from its checkpoint", "webhook", h.ID, "err", err)
		}
	}()
}

// prune deletes old attempts every hour.
func (r *Runner) prune(ctx context.Context) {
	for {
		if n, err := r.o.Store.PruneAttempts(ctx, r.now().Add(-r.o.AttemptRetention)); err != nil && ctx.Err() == nil {
			r.log.Warn("pruning webhook attempts failed", "err", err)
		} else if n > 0 {
			r.log.Debug("pruned webhook attempts", "count", n)
		}
		if !sleep(ctx, time.Hour) {
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// item is one event to attempt: a new one from the log, or a pending one.
type item struct {
	rec     kernel.Record
	pending *ledger.PendingDelivery // nil for an event read from the log now
	rend    *ledger.Rendered        // nil: no public form (skipped)
	res     ledger.WebhookResponse
	at      time.Time
	sent    bool
}

// sub is one subscription's delivery state, held by its worker.
type sub struct {
	w       ledger.Webhook
	types   []string
	secrets [][]byte
	// secretsUntil is when a secret in a rotation's overlap stops signing:
	// the secrets are read again then.
	secretsUntil time.Time
	progress     ledger.WebhookProgress
	// queues are the pending events of each contact, in log order; the
	// first of each is the one that waits for a retry.
	queues map[string][]ledger.PendingDelivery
}

// deliver runs one subscription until ctx ends or a commit fails.
func (r *Runner) deliver(ctx context.Context, w ledger.Webhook) error {
	s := &sub{w: w, types: ledger.DeliveryTypes(w), queues: map[string][]ledger.PendingDelivery{}}
	var err error
	if s.progress, err = r.o.Store.WebhookProgress(ctx, w.ID); err != nil {
		return err
	}
	for after := (kernel.Position{}); ; {
		page, err := r.o.Store.PendingDeliveries(ctx, w.ID, after, 5000)
		if err != nil {
			return err
		}
		for _, p := range page {
			s.queues[p.Stream] = append(s.queues[p.Stream], p)
		}
		if len(page) < 5000 {
			break
		}
		after = page[len(page)-1].Position
	}
	if err := r.loadSecrets(ctx, s); err != nil {
		return err
	}
	defer func() {
		for _, k := range s.secrets {
			clear(k)
		}
	}()
	// The commit of a batch runs while the next batch is sent: commits
	// stay in order (each moves the checkpoint from where the previous one
	// left it), and a failed one ends the worker, which restarts from the
	// stored checkpoint (what was sent since goes again: at-least-once).
	var committing chan error
	settled := func() error {
		if committing == nil {
			return nil
		}
		err := <-committing
		committing = nil
		if err != nil {
			return fmt.Errorf("commit deliveries: %w", err)
		}
		return nil
	}
	defer settled()
	for ctx.Err() == nil {
		wake := r.svc.LogChanged()
		// A change of the subscription (settings, secrets, a replay) ends
		// this deliverer at once; the runner starts a new one on it.
		cur, err := r.o.Store.Webhook(ctx, w.Workspace, w.ID)
		if err != nil {
			return err
		}
		if cur.Revision != w.Revision {
			r.Kick()
			return nil
		}
		if !s.secretsUntil.IsZero() && !r.now().Before(s.secretsUntil) {
			if err := r.loadSecrets(ctx, s); err != nil {
				return err
			}
		}
		b, next, err := r.step(ctx, s)
		if err != nil {
			return err
		}
		if err := settled(); err != nil {
			return err
		}
		if b == nil {
			wait := r.o.Poll
			if !next.IsZero() {
				wait = min(wait, max(next.Sub(r.now()), time.Millisecond))
			}
			select {
			case <-ctx.Done():
			case <-wake:
			case <-time.After(wait):
			}
			continue
		}
		if b.Disable != "" {
			if err := r.o.Store.CommitDeliveries(ctx, *b); err != nil {
				return fmt.Errorf("commit deliveries: %w", err)
			}
			r.log.Warn("webhook disabled", "webhook", s.w.ID, "workspace", s.w.Workspace, "reason", b.Disable)
			r.Kick()
			<-ctx.Done() // the runner stops this worker when it sees the subscription disabled
			return nil
		}
		committing = make(chan error, 1)
		go func(ch chan<- error) { ch <- r.o.Store.CommitDeliveries(ctx, *b) }(committing)
	}
	return nil
}

// loadSecrets reads the secrets that sign now, and notes when one of them
// stops.
func (r *Runner) loadSecrets(ctx context.Context, s *sub) error {
	secrets, err := r.svc.SigningSecrets(ctx, s.w)
	if err != nil {
		return err
	}
	for _, k := range s.secrets {
		clear(k)
	}
	s.secrets, s.secretsUntil = secrets, time.Time{}
	now := r.now()
	for _, sec := range s.w.Secrets {
		if sec.ExpiresAt.After(now) && (s.secretsUntil.IsZero() || sec.ExpiresAt.Before(s.secretsUntil)) {
			s.secretsUntil = sec.ExpiresAt
		}
	}
	return nil
}

// maxChain bounds how many queued events of one contact go in one step.
const maxChain = 100

// step does one batch: the pending events that are due, and the next page
// of the log. It returns the batch to commit (nil when there was nothing
// to do), with the in-memory state already moved past it, and when the
// next pending event falls due.
func (r *Runner) step(ctx context.Context, s *sub) (*ledger.DeliveryBatch, time.Time, error) {
	now := r.now()
	// Chains of events per contact, each sent in order.
	chains := map[string][]*item{}
	var order []string // contacts in the order their chains start
	var due []string
	for stream, q := range s.queues {
		if !q[0].NextAt.After(now) {
			due = append(due, stream)
		}
	}
	if len(due) > r.o.Batch {
		due = due[:r.o.Batch]
	}
	var recs []kernel.Record
	if len(due) > 0 {
		byStream, err := r.svc.ReadStreams(ctx, s.w.Workspace, due)
		if err != nil {
			return nil, time.Time{}, err
		}
		for _, stream := range due {
			q := s.queues[stream]
			all := byStream[stream]
			for i := range q[:min(len(q), maxChain)] {
				p := &q[i]
				rec, ok := find(all, p.Position)
				if !ok {
					// The event is gone from the stream (it cannot be: the
					// log is never rewritten); drop it rather than stall.
					rec = kernel.Record{Stream: stream, Position: p.Position}
				}
				chains[stream] = append(chains[stream], &item{rec: rec, pending: p})
				recs = append(recs, rec)
			}
			order = append(order, stream)
		}
	}
	// The next page of the log.
	var page []kernel.Record
	last := s.progress.Position
	if len(due) < r.o.Batch {
		var err error
		page, last, _, err = r.svc.ReadFeed(ctx, ledger.FeedQuery{Workspace: s.w.Workspace, After: s.progress.Position,
			Types: s.types, Since: s.progress.Since, Limit: r.o.Batch})
		if err != nil {
			return nil, time.Time{}, err
		}
	}
	b := ledger.DeliveryBatch{Webhook: s.w.ID, Generation: s.progress.Generation, From: s.progress.Position, To: last, At: now,
		ClearSince: !s.progress.Since.IsZero() && len(page) > 0}
	var queued []ledger.PendingDelivery // new events queued behind a pending one
	for _, rec := range page {
		q, pendingOnes := s.queues[rec.Stream]
		_, chained := chains[rec.Stream]
		if pendingOnes && (!chained || len(q) > maxChain) {
			p := ledger.PendingDelivery{Webhook: s.w.ID, Stream: rec.Stream, Position: rec.Position, EventID: rec.ID.String()}
			queued = append(queued, p)
			continue
		}
		if !chained {
			order = append(order, rec.Stream)
		}
		chains[rec.Stream] = append(chains[rec.Stream], &item{rec: rec})
		recs = append(recs, rec)
	}
	if len(recs) == 0 && len(queued) == 0 && last == s.progress.Position {
		return nil, s.nextDue(), nil
	}
	// Render every event of the step at once, with the keys of this moment.
	rendered, err := r.svc.Render(ctx, s.w.Workspace, recs, s.w.IncludePersonal)
	if err != nil {
		return nil, time.Time{}, err
	}
	byPos := make(map[kernel.Position]*ledger.Rendered, len(rendered))
	for i := range rendered {
		byPos[rendered[i].Record.Position] = &rendered[i]
	}
	for _, stream := range order {
		for _, it := range chains[stream] {
			it.rend = byPos[it.rec.Position]
		}
	}
	r.send(ctx, s, order, chains)
	if ctx.Err() != nil {
		return nil, time.Time{}, ctx.Err()
	}
	r.settle(s, &b, order, chains, queued, now)
	s.apply(b)
	return &b, s.nextDue(), nil
}

func find(recs []kernel.Record, p kernel.Position) (kernel.Record, bool) {
	for _, r := range recs {
		if r.Position == p {
			return r, true
		}
	}
	return kernel.Record{}, false
}

// send makes the attempts: the chains of different contacts at once (up to
// InFlight), each chain in order, stopping at its first failure that will
// be retried.
func (r *Runner) send(ctx context.Context, s *sub, order []string, chains map[string][]*item) {
	next := make(chan []*item)
	var wg sync.WaitGroup
	for range min(r.o.InFlight, len(order)) {
		wg.Go(func() {
			for chain := range next {
				for _, it := range chain {
					if it.rend == nil {
						continue // no public form: nothing to send
					}
					it.at, it.sent = r.now(), true
					it.res = r.o.Sender.Send(ctx, ledger.WebhookMessage{URL: s.w.URL, ID: it.rec.ID.String(), Timestamp: it.at,
						Body: it.rend.Body, Secrets: s.secrets})
					if r.o.Observe != nil {
						outcome := "delivered"
						if !it.res.OK() {
							outcome = "failed"
						}
						r.o.Observe.Attempt(s.w.ID, outcome, it.res.Latency)
					}
					if !it.res.OK() && attemptsOf(it) < len(r.o.Schedule)+1 {
						break // retried later; the contact's later events wait
					}
				}
			}
		})
	}
	for _, stream := range order {
		select {
		case next <- chains[stream]:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
}

// attemptsOf is how many attempts an item has had, this one included.
func attemptsOf(it *item) int {
	if it.pending != nil {
		return it.pending.Attempts + 1
	}
	return 1
}

// delay is the wait before attempt n+1 after n failed, with ±20% jitter.
func (r *Runner) delay(n int) time.Duration {
	d := r.o.Schedule[min(n-1, len(r.o.Schedule)-1)]
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// settle turns the attempts into the batch: attempts, retries, events
// queued behind them, those done, erasure acknowledgments, health.
func (r *Runner) settle(s *sub, b *ledger.DeliveryBatch, order []string, chains map[string][]*item, queued []ledger.PendingDelivery, now time.Time) {
	var succeeded, failed bool
	var lastErr string
	for _, stream := range order {
		chain := chains[stream]
		stopped := -1 // index of the item that waits for a retry
		for i, it := range chain {
			if !it.sent {
				if it.rend == nil && stopped < 0 {
					// Nothing to send; done with it.
					if it.pending != nil {
						b.Done = append(b.Done, it.pending.Position)
					}
					continue
				}
				if stopped < 0 {
					stopped = i // unsent after a stop: cannot happen; keep it queued
				}
				if it.pending == nil {
					b.Pending = append(b.Pending, ledger.PendingDelivery{Webhook: s.w.ID, Stream: stream, Position: it.rec.Position, EventID: it.rec.ID.String()})
				}
				continue
			}
			n := attemptsOf(it)
			a := ledger.DeliveryAttempt{ID: ulid.Make().String(), Webhook: s.w.ID, EventID: it.rec.ID.String(), EventType: it.rend.Event.Type,
				ContactID: it.rend.Event.ContactID, Position: it.rec.Position, Attempt: n, At: it.at, Status: it.res.Status, Latency: it.res.Latency}
			if feed.IsErasure(it.rec.Type) {
				ack := ledger.ErasureAck{Webhook: s.w.ID, Workspace: s.w.Workspace, Contact: it.rend.Event.ContactID, EventID: a.EventID, NotifiedAt: it.at}
				if it.res.OK() {
					ack.AcknowledgedAt = it.at
				}
				b.Acks = append(b.Acks, ack)
			}
			switch {
			case it.res.OK():
				succeeded = true
				a.Outcome = ledger.AttemptDelivered
				if it.pending != nil {
					b.Done = append(b.Done, it.pending.Position)
				}
			case n >= len(r.o.Schedule)+1:
				failed, lastErr = true, it.res.Err.Error()
				a.Outcome, a.Error = ledger.AttemptFailed, lastErr
				if it.pending != nil {
					b.Done = append(b.Done, it.pending.Position)
				}
			default:
				failed, lastErr = true, it.res.Err.Error()
				a.Outcome, a.Error = ledger.AttemptRetrying, lastErr
				stopped = i
				p := ledger.PendingDelivery{Webhook: s.w.ID, Stream: stream, Position: it.rec.Position, EventID: a.EventID,
					Attempts: n, NextAt: it.at.Add(r.delay(n)), FirstAt: it.at}
				if it.pending != nil {
					p.FirstAt = it.pending.FirstAt
				}
				b.Pending = append(b.Pending, p)
			}
			b.Attempts = append(b.Attempts, a)
		}
		// The chain went through: the contact's next queued event, if any
		// was left out of it, is due now.
		if stopped < 0 {
			if q := s.queues[stream]; len(q) > len(pendingIn(chain)) {
				p := q[len(pendingIn(chain))]
				p.NextAt = now
				b.Pending = append(b.Pending, p)
			}
		}
	}
	b.Pending = append(b.Pending, queued...)
	switch {
	case succeeded:
		b.LastSuccessAt, b.Healthy = now, true
	case failed:
		b.FailingSince, b.LastError = now, lastErr
		since := s.progress.FailingSince
		if since.IsZero() {
			since = now
		}
		// The clock starts again when the subscription is changed (turned back on).
		if s.w.UpdatedAt.After(since) {
			since = s.w.UpdatedAt
		}
		if now.Sub(since) >= r.o.DisableAfter {
			b.Disable = fmt.Sprintf("every delivery failed since %s (last: %s); turn it back on once the receiver works: nothing is skipped meanwhile",
				since.Format(time.RFC3339), lastErr)
		}
	}
	if lastErr != "" {
		b.LastError = lastErr
	}
}

// pendingIn returns the pending items of a chain.
func pendingIn(chain []*item) []*item {
	var out []*item
	for _, it := range chain {
		if it.pending != nil {
			out = append(out, it)
		}
	}
	return out
}

// apply moves the in-memory state as the committed batch did.
func (s *sub) apply(b ledger.DeliveryBatch) {
	done := map[kernel.Position]bool{}
	for _, p := range b.Done {
		done[p] = true
	}
	upsert := map[kernel.Position]ledger.PendingDelivery{}
	for _, p := range b.Pending {
		upsert[p.Position] = p
	}
	for stream, q := range s.queues {
		kept := q[:0]
		for _, p := range q {
			if done[p.Position] {
				continue
			}
			if u, ok := upsert[p.Position]; ok {
				p = u
				delete(upsert, p.Position)
			}
			kept = append(kept, p)
		}
		if len(kept) == 0 {
			delete(s.queues, stream)
		} else {
			s.queues[stream] = kept
		}
	}
	// New pending events go at the end of their contact's queue, in order.
	var fresh []ledger.PendingDelivery
	for _, p := range b.Pending {
		if _, ok := upsert[p.Position]; ok {
			fresh = append(fresh, p)
		}
	}
	for _, p := range fresh {
		s.queues[p.Stream] = append(s.queues[p.Stream], p)
	}
	s.progress.Position = b.To
	if b.ClearSince {
		s.progress.Since = time.Time{}
	}
	if b.Healthy {
		s.progress.FailingSince = time.Time{}
	} else if !b.FailingSince.IsZero() && s.progress.FailingSince.IsZero() {
		s.progress.FailingSince = b.FailingSince
	}
}

// nextDue is when the earliest pending event falls due (zero: none).
func (s *sub) nextDue() time.Time {
	var next time.Time
	for _, q := range s.queues {
		if at := q[0].NextAt; next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

// ErrNoWebhooks is returned when webhooks are not configured.
var ErrNoWebhooks = errors.New("webhooks are not configured")
