package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
	"golang.org/x/time/rate"
)

// JobOptions configures the restore-job runner.
type JobOptions struct {
	// Rate bounds how many contacts a job restores per second, so a large
	// job leaves room for interactive traffic; 0 means as fast as it can.
	Rate float64
	// Scan is how often the runner looks for admitted jobs besides being
	// woken by new ones (and at start, to resume jobs a restart interrupted).
	Scan time.Duration
	// Lease, when set, lets one replica at a time run a workspace's job.
	Lease Lease
}

// progressEvery bounds how many outcomes a job keeps before recording them
// (and it records them at least every quarter second). Recording is for
// the job's status only: exactly-once rests on each contact's own stream
// (see restoreOnce), so a job resumed after a crash loses no restore.
const progressEvery = 1000

// jobWorkers is how many chunks of a restore job run at once, and jobChunk
// how many contacts a chunk loads, decides and appends in one go (one
// commit: see Service.executeMany).
const (
	jobWorkers = 4
	jobChunk   = 200
)

// outcome is what became of one contact of a restore job.
type outcome struct {
	cid, reason string
	restored    bool
	err         error
}

// restoreManyForJob restores a chunk of contacts for job jobID, exactly
// once each (see restoreOnce), loading them in one go. A contact that
// cannot be restored (no longer in trash, purged) fails with the reason.
func (s *Jobs) restoreManyForJob(ctx context.Context, workspace, jobID string, cids []string, by kernel.Actor, reason string, keepBoth bool) []outcome {
	out := make([]outcome, len(cids))
	var (
		ids []contact.ID
		at  []int
	)
	for i, cid := range cids {
		out[i].cid = cid
		id, err := contact.ParseID(cid)
		if err != nil {
			out[i].reason = "not a contact id"
			continue
		}
		ids, at = append(ids, id), append(at, i)
	}
	_, errs := s.executeMany(ctx, workspace, ids, Meta{Actor: by, CorrelationID: jobID, Operation: OperationJob + jobID}, restoreOnce(jobID, by, reason, keepBoth))
	for k, err := range errs {
		o := &out[at[k]]
		if err == nil {
			o.restored = true
			continue
		}
		var ce *kernel.Error
		if !errors.As(err, &ce) || ce.Code == "" {
			o.err = err
			continue
		}
		o.reason = ce.Message
	}
	return out
}

// restoreOnce restores a contact unless job jobID already did (the process
// died before the job recorded it): the restore carries the job's operation
// id ("job:<id>") as its causation id, or, when written before operation
// ids, the bare job id.
func restoreOnce(jobID string, by kernel.Actor, reason string, keepBoth bool) command {
	op := OperationJob + jobID
	return func(l loaded, p contact.Policy, now time.Time) error {
		if slices.ContainsFunc(l.recs, func(r kernel.Record) bool {
			return r.Type == contact.TypeRestored && (r.CausationID == op || r.CausationID == jobID)
		}) {
			return nil
		}
		if keepBoth {
			return l.c.RestoreKeepingBoth(reason, p, by, now)
		}
		return l.c.Restore(reason, p, by, now)
	}
}

// kickJobs wakes the runner.
func (s *Jobs) kickJobs() {
	select {
	case s.jobKick <- struct{}{}:
	default:
	}
}

// RunRestoreJobs runs admitted restore jobs until ctx ends: at start it
// resumes any job a stop or crash interrupted, then takes up new ones as
// they come. Each workspace's job runs on its own goroutine.
func (s *Jobs) RunRestoreJobs(ctx context.Context, o JobOptions) error {
	if o.Scan <= 0 {
		o.Scan = 2 * time.Second
	}
	var (
		mu      sync.Mutex
		running = map[string]bool{}
		wg      sync.WaitGroup
	)
	defer wg.Wait()
	for {
		ws, err := s.dir.Workspaces(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("restore jobs: cannot list workspaces", "err", err)
		}
		for _, w := range ws {
			mu.Lock()
			busy := running[w.Name]
			mu.Unlock()
			if busy {
				continue
			}
			lock, _, err := s.readLock(ctx, w.Name)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("restore jobs: cannot read the admission stream", "workspace", w.Name, "err", err)
				}
				continue
			}
			if lock.Holder == "" {
				continue
			}
			mu.Lock()
			running[w.Name] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() { mu.Lock(); delete(running, w.Name); mu.Unlock() }()
				if o.Lease != nil {
					release, ok, err := o.Lease.TryAcquire(ctx, "restore-jobs:"+w.Name)
					if err != nil || !ok {
						return
					}
					defer release()
				}
				if err := s.runJob(ctx, w.Name, lock.Holder, o); err != nil && ctx.Err() == nil {
					s.log.Error("restore job stopped; it resumes on the next scan", "workspace", w.Name, "job", lock.Holder, "err", err)
				}
			})
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.jobKick:
		case <-time.After(o.Scan):
		}
	}
}

// runJob takes job id up where its stream says it is and runs it to its end.
func (s *Jobs) runJob(ctx context.Context, workspace, id string, o JobOptions) error {
	r, err := s.startJob(ctx, workspace, id)
	if r == nil || err != nil {
		return err
	}
	failure := r.dispatch(ctx, o)
	if failure != nil {
		if ctx.Err() != nil {
			return ctx.Err() // a stop: the job resumes after the restart
		}
		if ferr := r.flush(ctx); ferr != nil {
			return ferr
		}
		r.log.Error("restore job failed", "err", failure)
		return s.endJob(ctx, workspace, id, r.meta, job.Failed{Error: "an internal error stopped the job; see the server log"})
	}
	if err := r.flush(ctx); err != nil {
		return err
	}
	var end any = job.Succeeded{}
	if r.j.CancelRequested && len(r.j.Pending()) > 0 {
		end = job.Cancelled{}
	}
	r.log.Info("restore job ended", "state", job.TypeOf(end), "restored", r.j.Restored, "failed", len(r.j.Failures))
	return s.endJob(ctx, workspace, id, r.meta, end)
}

// jobRun is a restore job being run: the job as its stream says, and the
// outcomes not recorded yet.
type jobRun struct {
	s         *Jobs
	log       *slog.Logger
	workspace string
	id        string
	meta      Meta
	j         *job.Job
	recs      []kernel.Record
	prog      job.Progressed
	lastFlush time.Time
}

// startJob loads the job and records that it runs. It returns no run when
// there is nothing to run: a job admitted but never queued, over, or
// cancelled before it ran, which it ends and releases.
func (s *Jobs) startJob(ctx context.Context, workspace, id string) (*jobRun, error) {
	log := s.log.With(slog.String("workspace", workspace), slog.String("job", id))
	meta := Meta{Actor: jobActor, CorrelationID: id}
	j, recs, err := s.loadJob(ctx, workspace, id)
	if errors.Is(err, ErrJobNotFound) {
		// Admitted, but the process died before the job's stream was written.
		log.Warn("releasing a restore job that was admitted but never queued")
		return nil, s.releaseJob(ctx, workspace, id)
	}
	if err != nil {
		return nil, err
	}
	if j.State.Terminal() {
		return nil, s.releaseJob(ctx, workspace, id)
	}
	if j.CancelRequested {
		// Cancelled while queued (or while its runner was stopped): it
		// restores nothing more. The dispatch below only sees a cancel
		// request when recording progress races it, so a small job would
		// otherwise run to its end and say it succeeded.
		log.Info("restore job cancelled before it ran", "done", len(j.Done))
		return nil, s.endJob(ctx, workspace, id, meta, job.Cancelled{})
	}
	if recs, err = s.appendJob(ctx, job.Stream(id), workspace, meta, recs, s.now(), job.Started{Resumed: j.State == job.StateRunning}); err != nil {
		return nil, err
	}
	resumed := j.State == job.StateRunning
	if err := j.Apply(job.Started{}, s.now()); err != nil {
		return nil, fmt.Errorf("the recorded start does not apply to the job: %w", err)
	}
	log.Info("restore job running", "total", j.Total, "done", len(j.Done), "resumed", resumed)
	return &jobRun{s: s, log: log, workspace: workspace, id: id, meta: meta, j: j, recs: recs, lastFlush: time.Now()}, nil
}

// flush records the outcomes so far. A concurrent append (a cancel
// request) makes it reload the job and record them after it.
func (r *jobRun) flush(ctx context.Context) error {
	if len(r.prog.Restored)+len(r.prog.Failed) == 0 {
		return nil
	}
	s, raced := r.s, false
	err := retryConflicts(func() error {
		if raced {
			var err error
			if r.j, r.recs, err = s.loadJob(ctx, r.workspace, r.id); err != nil {
				return err
			}
			if r.j.State.Terminal() {
				return errors.New("the job was ended by someone else")
			}
		}
		raced = true
		next, err := s.appendJob(ctx, job.Stream(r.id), r.workspace, r.meta, r.recs, s.now(), r.prog)
		if err != nil {
			return err
		}
		r.recs = next
		return nil
	})
	if err != nil {
		return err
	}
	if err := r.j.Apply(r.prog, s.now()); err != nil {
		return fmt.Errorf("the recorded progress does not apply to the job: %w", err)
	}
	r.prog, r.lastFlush = job.Progressed{}, time.Now()
	return nil
}

// dispatch restores the job's pending contacts and records their outcomes
// as they come, until every contact is done, a cancel request is seen or a
// restore fails; it returns the failure.
//
// Contacts are restored by jobWorkers at once, so their appends share the
// store's group commits; outcomes come back here, where they are recorded
// in order of arrival.
func (r *jobRun) dispatch(ctx context.Context, o JobOptions) error {
	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	results := r.restorePending(ctx, workCtx, o)
	var failure error
	for res := range results {
		if res.err != nil {
			if failure == nil {
				failure = fmt.Errorf("contact %s: %w", res.cid, res.err)
				stopWork()
			}
			continue
		}
		if res.restored {
			r.prog.Restored = append(r.prog.Restored, res.cid)
		} else {
			r.prog.Failed = append(r.prog.Failed, job.Failure{ID: res.cid, Reason: res.reason})
		}
		if failure == nil && (len(r.prog.Restored)+len(r.prog.Failed) >= progressEvery || time.Since(r.lastFlush) > 250*time.Millisecond) {
			if err := r.flush(ctx); err != nil {
				failure = err
				stopWork()
				continue
			}
			if r.j.CancelRequested {
				stopWork()
			}
		}
	}
	return failure
}

// restorePending hands the pending contacts to the workers in chunks (one
// by one at the job's rate, if it has one) until workCtx ends, and returns
// their outcomes, closed once every worker is done.
func (r *jobRun) restorePending(ctx, workCtx context.Context, o JobOptions) <-chan outcome {
	s, workspace, id := r.s, r.workspace, r.id
	pending := r.j.Pending()
	chunks := make(chan []string)
	results := make(chan outcome, 2*jobChunk)
	var workers sync.WaitGroup
	// The workers read what the job was queued with; j itself is the
	// dispatcher's, which reloads it when a cancel request races a flush.
	by, reason, keepBoth := r.j.By, r.j.Reason, r.j.KeepBoth
	for range min(jobWorkers, max(len(pending), 1)) {
		workers.Go(func() {
			for ids := range chunks {
				// In-flight restores finish even when dispatch stops (a
				// cancel request, another's failure): only ctx, the
				// server's life, interrupts them, and the job resumes.
				for _, o := range s.restoreManyForJob(ctx, workspace, id, ids, by, reason, keepBoth) {
					results <- o
				}
			}
		})
	}
	var limiter *rate.Limiter
	size := jobChunk
	if o.Rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(o.Rate), 1)
		size = 1 // a throttled job goes contact by contact, at its pace
	}
	go func() {
		defer close(chunks)
		for from := 0; from < len(pending); from += size {
			part := pending[from:min(from+size, len(pending))]
			if limiter != nil && limiter.Wait(workCtx) != nil {
				return
			}
			select {
			case chunks <- part:
			case <-workCtx.Done():
				return
			}
		}
	}()
	go func() { workers.Wait(); close(results) }()
	return results
}

// endJob appends the job's last event (after a cancel request that raced
// it, if need be) and frees the workspace's slot.
func (s *Jobs) endJob(ctx context.Context, workspace, id string, meta Meta, end any) error {
	err := retryConflicts(func() error {
		j, recs, err := s.loadJob(ctx, workspace, id)
		if err != nil || j.State.Terminal() {
			return err
		}
		if _, ok := end.(job.Succeeded); ok && j.CancelRequested && len(j.Pending()) > 0 {
			end = job.Cancelled{}
		}
		_, err = s.appendJob(ctx, job.Stream(id), workspace, meta, recs, s.now(), end)
		return err
	})
	if err != nil {
		return err
	}
	return s.releaseJob(ctx, workspace, id)
}

// releaseJob frees the workspace's slot if job id holds it.
func (s *Jobs) releaseJob(ctx context.Context, workspace, id string) error {
	return retryConflicts(func() error {
		lock, recs, err := s.readLock(ctx, workspace)
		if err != nil || lock.Holder != id {
			return err
		}
		_, err = s.appendJob(ctx, job.LockStream(workspace), workspace, Meta{Actor: jobActor, CorrelationID: id}, recs, s.now(), job.Released{Job: id})
		return err
	})
}

// RunRestoreJob runs one admitted restore job to its end in this process,
// as the server's runner would (`ledger restore` does this), and returns
// it once it is over. With a lease that another process holds (a server
// running the job already), it waits for that process to finish it.
// Exactly-once holds either way: each restore checks the contact's stream.
func (s *Jobs) RunRestoreJob(ctx context.Context, workspace, id string, o JobOptions) (*job.Job, error) {
	run := true
	if o.Lease != nil {
		release, ok, err := o.Lease.TryAcquire(ctx, "restore-jobs:"+workspace)
		if err != nil {
			return nil, err
		}
		if run = ok; ok {
			defer release()
		}
	}
	if run {
		if err := s.runJob(ctx, workspace, id, o); err != nil {
			// Another process may have run the job meanwhile (a server's
			// runner, without a lease): what counts is how the job ended.
			if j, jerr := s.RestoreJob(ctx, workspace, id); jerr != nil || !j.State.Terminal() {
				return nil, err
			}
		}
	}
	for {
		j, err := s.RestoreJob(ctx, workspace, id)
		if err != nil || j.State.Terminal() {
			return j, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
