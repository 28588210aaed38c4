package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// ErrJobNotFound is returned for an unknown restore job.
var ErrJobNotFound = &kernel.Error{Code: kernel.CodeNotFound, Reason: "job-not-found", Message: "restore job not found"}

// ErrJobRunning is the reason of a JobRunningError.
var ErrJobRunning = &kernel.Error{Code: kernel.CodeConflict, Reason: "restore-job-running", Message: "a restore job is already running in this workspace"}

// ErrJobFinished is returned when cancelling a job that is over.
var ErrJobFinished = &kernel.Error{Code: kernel.CodeConflict, Reason: "restore-job-finished", Message: "the restore job is over"}

// JobRunningError refuses a second restore job while Job runs.
type JobRunningError struct{ Job string }

func (e *JobRunningError) Error() string {
	return "restore job " + e.Job + " is running in this workspace; wait for it or cancel it first"
}

// Unwrap makes the error an ErrJobRunning for errors.Is and the HTTP adapter.
func (e *JobRunningError) Unwrap() error { return kernel.Errorf(ErrJobRunning, "%s", e.Error()) }

// RestoreFilter selects the trashed contacts a restore job restores.
type RestoreFilter struct {
	DeletedAfter  time.Time
	DeletedBefore time.Time
	DeletedBy     string
	Tag           string
	Q             string // name, email, phone or id; used to plan, never stored
	Reason        string
	// Operation restores what one operation moved to trash (see
	// OperationForms); with DeletedBy and the times, what a token trashed
	// between two times.
	Operation string
	// KeepBoth restores contacts whose email or phone a live contact holds
	// now all the same (on_conflict: keep_both).
	KeepBoth bool
}

// operationPattern is what an operation id looks like: a request id
// (X-Request-Id: letters, digits, '.', '_', '-'), perhaps after the prefix
// of its kind.
var operationPattern = regexp.MustCompile(`^(bulk:|import:|job:|retention:)?[A-Za-z0-9._-]{1,64}$`)

// ValidateOperation checks an operation id given as a filter.
func ValidateOperation(field, op string) error {
	if op != "" && !operationPattern.MatchString(op) {
		return kernel.Invalid(kernel.FieldError{Field: field, Message: "is an operation id as the ledger shows it: bulk:<request id>, import:<id>, job:<job id>, retention:<sweep id>, or a request id"})
	}
	return nil
}

// OperationForms returns the causation ids an operation's events may
// carry: the operation id, and for a typed one (bulk:, import:, job:) the
// bare id too, which events written before operation ids carried.
func OperationForms(op string) []string {
	if op == "" {
		return nil
	}
	for _, p := range []string{OperationBulk, OperationImport, OperationJob} {
		if bare, ok := strings.CutPrefix(op, p); ok {
			return []string{op, bare}
		}
	}
	return []string{op}
}

// planPage is how many trashed contacts a plan reads per query, and how many ids one planned event holds.
const planPage = 1000

// jobActor is the actor of the events a job's runner appends to the job's own streams.
var jobActor = kernel.System("restore-jobs")

// StartRestoreJob admits and queues a restore job in the workspace: it
// plans the job (the ids in trash that match, now) and the runner restores
// them in the background. Errors: a *JobRunningError (409) while another
// job holds the workspace's slot.
func (s *Jobs) StartRestoreJob(ctx context.Context, workspace string, meta Meta, f RestoreFilter) (*job.Job, error) {
	// A job's reason stays in clear in the job's own stream, which no
	// contact's erasure reaches: it must not hold an email or a phone.
	if err := contact.ValidateClearText("reason", f.Reason); err != nil {
		return nil, err
	}
	if err := ValidateOperation("operation", f.Operation); err != nil {
		return nil, err
	}
	p, err := s.policy(ctx, workspace)
	if err != nil {
		return nil, err
	}
	if !p.MayRestore(meta.Actor.Role) {
		return nil, kernel.Errorf(kernel.ErrRoleNotAllowed, "the workspace policy lets only admins restore contacts")
	}
	id := ulid.Make().String()
	now := s.now()
	m := Meta{Actor: meta.Actor, CorrelationID: meta.CorrelationID}
	// The job's stream is written before the job is admitted: a runner that
	// finds an admitted job always finds its stream (one that came between
	// the two, when admission went first, took the job for one whose process
	// died before queueing it, released its slot, and the job never ran).
	// Refused before planning when a job runs (admission checks again).
	if lock, _, running, err := s.slot(ctx, workspace); err != nil {
		return nil, err
	} else if running {
		return nil, &JobRunningError{Job: lock.Holder}
	}
	ids, err := s.plan(ctx, workspace, f)
	if err != nil {
		return nil, err
	}
	events := []any{job.Queued{Filter: f.filter(), Reason: f.Reason, Total: len(ids), By: meta.Actor, KeepBoth: f.KeepBoth}}
	for i := 0; i < len(ids); i += planPage {
		events = append(events, job.Planned{IDs: ids[i:min(i+planPage, len(ids))]})
	}
	recs, err := s.appendJob(ctx, job.Stream(id), workspace, m, nil, now, events...)
	if err != nil {
		return nil, err
	}
	// Admission: the workspace's lock stream says who holds the slot. A
	// race with the end of the previous job (its release) is retried.
	var running *JobRunningError
	err = retryConflicts(func() error {
		lock, lockRecs, busy, err := s.slot(ctx, workspace)
		if err != nil {
			return err
		}
		if busy {
			running = &JobRunningError{Job: lock.Holder}
			return running
		}
		// A holder that is over (or never got its stream) but was not
		// released is released in the same append that admits the new job.
		var release []any
		if lock.Holder != "" {
			release = append(release, job.Released{Job: lock.Holder})
		}
		_, err = s.appendJob(ctx, job.LockStream(workspace), workspace, m, lockRecs, now, append(release, job.Admitted{Job: id})...)
		return err
	})
	if running != nil {
		s.notAdmitted(ctx, workspace, id, m, recs, "job "+running.Job+" was running")
		return nil, running
	}
	if err != nil {
		s.notAdmitted(ctx, workspace, id, m, recs, "the admission failed")
		return nil, err
	}
	s.kickJobs()
	return s.RestoreJob(ctx, workspace, id)
}

// filter is what the job's trail keeps of f. Tags and queries are free
// text about contacts: it keeps only that there was one.
func (f RestoreFilter) filter() job.Filter {
	filter := job.Filter{DeletedBy: f.DeletedBy, Tagged: f.Tag != "", Query: f.Q != "", Operation: f.Operation}
	if !f.DeletedAfter.IsZero() {
		filter.DeletedAfter = &f.DeletedAfter
	}
	if !f.DeletedBefore.IsZero() {
		filter.DeletedBefore = &f.DeletedBefore
	}
	return filter
}

// slot reads the workspace's admission stream, and whether the job that
// holds the slot is still running (not when it ended, or never got its
// stream).
func (s *Jobs) slot(ctx context.Context, workspace string) (job.Lock, []kernel.Record, bool, error) {
	lock, recs, err := s.readLock(ctx, workspace)
	if err != nil || lock.Holder == "" {
		return lock, recs, false, err
	}
	held, err := s.RestoreJob(ctx, workspace, lock.Holder)
	if errors.Is(err, ErrJobNotFound) {
		return lock, recs, false, nil
	}
	if err != nil {
		return lock, recs, false, err
	}
	return lock, recs, !held.State.Terminal(), nil
}

// notAdmitted ends the stream of a job that was queued but not admitted,
// so that it never shows as queued. Should that fail too, the job only
// shows as queued to whoever knows its id, which nobody was given.
func (s *Jobs) notAdmitted(ctx context.Context, workspace, id string, m Meta, recs []kernel.Record, why string) {
	if _, err := s.appendJob(context.WithoutCancel(ctx), job.Stream(id), workspace, m, recs, s.now(), job.Failed{Error: "not admitted: " + why}); err != nil {
		s.log.Warn("ending a restore job that was not admitted failed", "job", id, "err", err)
	}
}

// plan returns the ids of the trashed contacts that match f, as the trash view has them now.
func (s *Jobs) plan(ctx context.Context, workspace string, f RestoreFilter) ([]string, error) {
	if err := s.caughtUp(ctx, "trash"); err != nil {
		return nil, err
	}
	q := ListQuery{Workspace: workspace, View: "trash", Q: f.Q, DeletedBy: f.DeletedBy,
		DeletedAfter: f.DeletedAfter, DeletedBefore: f.DeletedBefore, Operations: OperationForms(f.Operation), Limit: planPage}
	if f.Tag != "" {
		b, err := s.vault.BlindIndex(ctx, workspace)
		if err != nil {
			return nil, err
		}
		q.TagIndex = TagIndex(b, f.Tag)
	}
	var ids []string
	for {
		items, err := s.views.List(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			ids = append(ids, it.Contact.ID.String())
		}
		if len(items) < planPage {
			return ids, nil
		}
		last := items[len(items)-1]
		q.After = &Cursor{SortAt: last.SortAt, ID: last.Contact.ID.String()}
	}
}

// CancelRestoreJob asks a running or queued job to stop; the runner ends it
// as cancelled. Contacts it restored stay restored. Errors: ErrJobFinished.
func (s *Jobs) CancelRestoreJob(ctx context.Context, workspace, id string, meta Meta) (*job.Job, error) {
	var already *job.Job
	err := retryConflicts(func() error {
		j, recs, err := s.loadJob(ctx, workspace, id)
		if err != nil {
			return err
		}
		if j.State.Terminal() {
			return kernel.Errorf(ErrJobFinished, "the restore job is %s; there is nothing to cancel", j.State)
		}
		if j.CancelRequested {
			already = j
			return nil
		}
		_, err = s.appendJob(ctx, job.Stream(id), workspace, Meta{Actor: meta.Actor, CorrelationID: meta.CorrelationID}, recs, s.now(), job.CancelRequested{By: meta.Actor})
		return err
	})
	if err != nil || already != nil {
		return already, err
	}
	s.kickJobs()
	return s.RestoreJob(ctx, workspace, id)
}

func validJobID(id string) bool {
	_, err := ulid.ParseStrict(id)
	return err == nil && strings.ToUpper(id) == id
}

func (s *Jobs) loadJob(ctx context.Context, workspace, id string) (*job.Job, []kernel.Record, error) {
	if !validJobID(id) {
		return nil, nil, kernel.Errorf(ErrJobNotFound, "restore job not found (ids are 26-character ULIDs)")
	}
	recs, err := s.events.ReadStream(ctx, workspace, job.Stream(id))
	if errors.Is(err, kernel.ErrNotFound) {
		return nil, nil, ErrJobNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	j := &job.Job{ID: id, Workspace: workspace}
	for _, r := range recs {
		e, err := job.Decode(r.Type, r.Data)
		if err != nil {
			return nil, nil, fmt.Errorf("job %s v%d: %w", id, r.Version, err)
		}
		if err := j.Apply(e, r.Time); err != nil {
			return nil, nil, err
		}
	}
	return j, recs, nil
}

func (s *Jobs) readLock(ctx context.Context, workspace string) (job.Lock, []kernel.Record, error) {
	recs, err := s.events.ReadStream(ctx, workspace, job.LockStream(workspace))
	if errors.Is(err, kernel.ErrNotFound) {
		return job.Lock{}, nil, nil
	}
	if err != nil {
		return job.Lock{}, nil, err
	}
	var l job.Lock
	for _, r := range recs {
		e, err := job.Decode(r.Type, r.Data)
		if err != nil {
			return job.Lock{}, nil, err
		}
		if err := l.Apply(e); err != nil {
			return job.Lock{}, nil, err
		}
	}
	return l, recs, nil
}

// appendJob appends job events after the stream's records prev (nil for a
// new stream), chained like every other stream. Errors: kernel.ErrConcurrency.
func (s *Jobs) appendJob(ctx context.Context, stream, workspace string, meta Meta, prev []kernel.Record, at time.Time, events ...any) ([]kernel.Record, error) {
	return s.appendPlain(ctx, stream, workspace, meta, prev, at, job.TypeOf, events...)
}

// appendPlain appends events with no personal part (those of jobs and
// workspace holds) after the stream's records prev (nil for a new stream),
// chained like every other stream; typeOf names each event's type.
// Errors: kernel.ErrConcurrency.
func (s *core) appendPlain(ctx context.Context, stream, workspace string, meta Meta, prev []kernel.Record, at time.Time, typeOf func(any) string, events ...any) ([]kernel.Record, error) {
	var (
		after    uint64
		prevHash []byte
	)
	if len(prev) > 0 {
		after, prevHash = prev[len(prev)-1].Version, prev[len(prev)-1].Hash
	}
	actor := meta.Actor
	if actor.Principal == "" {
		actor = jobActor
	}
	out := make([]kernel.Record, 0, len(events))
	for i, e := range events {
		data, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		r := kernel.Record{
			ID: ulid.Make(), Stream: stream, Version: after + uint64(i) + 1, Type: typeOf(e),
			Time: at, Workspace: workspace, Actor: actor, CorrelationID: meta.CorrelationID, CausationID: meta.causation(),
			Schema: 1, Data: data, PrevHash: prevHash,
		}
		r.Hash = kernel.ChainHash(prevHash, r)
		prevHash = r.Hash
		out = append(out, r)
	}
	if _, err := s.events.Append(ctx, stream, after, out); err != nil {
		return nil, err
	}
	return append(append([]kernel.Record(nil), prev...), out...), nil
}

// RestorePreview is the answer of a restore job's dry run: what the job
// would restore now, contact by contact, without queueing it.
type RestorePreview struct {
	Filter job.Filter
	// Total is how many contacts the job would plan; OK and Failed how
	// many of them it would restore and fail.
	Total, OK, Failed int
	// Items are the planned contacts with what the restore would do to
	// each: every failure, and the first MaxPreviewItems in all.
	Items []BulkItem
	// Truncated is set when Items leaves restorable contacts out.
	Truncated bool
}

// MaxPreviewItems bounds the items a restore job's dry run lists.
const MaxPreviewItems = 1000

// PreviewRestoreJob answers what StartRestoreJob would do with f now:
// the same checks, the same plan, and each planned contact's restore
// decided exactly as the job's runner would decide it, with nothing
// written (no job, no event, no claim). Errors: those of StartRestoreJob,
// but a running job does not refuse a dry run.
func (s *Jobs) PreviewRestoreJob(ctx context.Context, workspace string, meta Meta, f RestoreFilter) (RestorePreview, error) {
	if err := contact.ValidateClearText("reason", f.Reason); err != nil {
		return RestorePreview{}, err
	}
	if err := ValidateOperation("operation", f.Operation); err != nil {
		return RestorePreview{}, err
	}
	p, err := s.policy(ctx, workspace)
	if err != nil {
		return RestorePreview{}, err
	}
	if !p.MayRestore(meta.Actor.Role) {
		return RestorePreview{}, kernel.Errorf(kernel.ErrRoleNotAllowed, "the workspace policy lets only admins restore contacts")
	}
	ids, err := s.plan(ctx, workspace, f)
	if err != nil {
		return RestorePreview{}, err
	}
	out := RestorePreview{Filter: f.filter(), Total: len(ids)}
	id := ulid.Make().String()
	m := Meta{Actor: meta.Actor, CorrelationID: meta.CorrelationID, Operation: OperationJob + id, DryRun: true}
	for from := 0; from < len(ids); from += jobChunk {
		chunk := ids[from:min(from+jobChunk, len(ids))]
		cids := make([]contact.ID, 0, len(chunk))
		for _, raw := range chunk {
			cid, err := contact.ParseID(raw)
			if err != nil {
				return RestorePreview{}, err
			}
			cids = append(cids, cid)
		}
		results, errs := s.executeMany(ctx, workspace, cids, m, restoreOnce(id, meta.Actor, f.Reason, f.KeepBoth))
		for i, cid := range cids {
			it := BulkItem{ID: cid.String(), Result: results[i], Err: errs[i]}
			if errs[i] != nil {
				if kernel.ErrorCode(errs[i]) == "" {
					return RestorePreview{}, errs[i]
				}
				out.Failed++
			} else {
				out.OK++
			}
			if it.Err != nil || len(out.Items) < MaxPreviewItems {
				out.Items = append(out.Items, it)
			} else {
				out.Truncated = true
			}
		}
	}
	return out, nil
}
