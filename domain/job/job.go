// Package job is the restore job: "restore every trashed contact that
// matches", run in the background, durable across restarts. A job is an
// event stream of its own (job-<ULID>): it is queued with its plan (the ids
// it will restore), then started, progresses in batches, and ends succeeded,
// failed or cancelled. A second stream per workspace (restorejobs-<name>)
// admits one job at a time: admissions and releases are appended with
// optimistic concurrency, so two requests can never both start a job.
// Job events hold no personal data. No I/O here.
package job

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
)

// State is where a job is.
type State string

// The states of a job.
const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
)

// Terminal reports whether a job in state s is over.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCancelled
}

// StreamPrefix starts the name of every job's stream.
const StreamPrefix = "job-"

// LockPrefix starts the name of each workspace's admission stream.
const LockPrefix = "restorejobs-"

// Stream returns the stream of job id.
func Stream(id string) string { return StreamPrefix + id }

// LockStream returns the stream that admits one restore job at a time in workspace.
func LockStream(workspace string) string { return LockPrefix + workspace }

// Filter is what a job restores: trashed contacts deleted in a time range,
// by someone, with a tag, or matching a query. The query's and the tag's text
// are personal data (a name or an email), so the job's trail keeps only that
// there was one.
type Filter struct {
	DeletedAfter  *time.Time `json:"deleted_after,omitempty"`
	DeletedBefore *time.Time `json:"deleted_before,omitempty"`
	DeletedBy     string     `json:"deleted_by,omitempty"`
	// Tag is the tag of jobs queued before tags were sealed; later jobs
	// keep only that there was one (Tagged): a tag is free text, and may
	// name a person.
	Tag    string `json:"tag,omitempty"`
	Tagged bool   `json:"tagged,omitempty"`
	Query  bool   `json:"query,omitempty"`
	// Operation restores what one operation trashed: a bulk request, an
	// import, a restore job or a single request, by its operation id.
	Operation string `json:"operation,omitempty"`
}

// Failure is a contact the job could not restore, and why (never personal data).
type Failure struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// The wire names of job events.
const (
	TypeQueued          = "RestoreJobQueued"
	TypePlanned         = "RestoreJobItemsPlanned"
	TypeStarted         = "RestoreJobStarted"
	TypeProgressed      = "RestoreJobProgressed"
	TypeCancelRequested = "RestoreJobCancelRequested"
	TypeSucceeded       = "RestoreJobSucceeded"
	TypeFailed          = "RestoreJobFailed"
	TypeCancelled       = "RestoreJobCancelled"
	TypeAdmitted        = "RestoreJobAdmitted"
	TypeReleased        = "RestoreJobReleased"
)

// Queued opens a job's stream.
type Queued struct {
	Filter Filter       `json:"filter"`
	Reason string       `json:"reason,omitempty"`
	Total  int          `json:"total"`
	By     kernel.Actor `json:"requested_by"`
	// KeepBoth restores contacts whose email or phone a live contact holds
	// now all the same (on_conflict: keep_both), as each restore records.
	KeepBoth bool `json:"keep_both,omitempty"`
}

// Planned lists ids the job will restore; a plan is split over several events.
type Planned struct {
	IDs []string `json:"ids"`
}

// Started says a runner took the job up (again, after a restart).
type Started struct {
	Resumed bool `json:"resumed,omitempty"`
}

// Progressed records contacts restored and failed since the last progress.
type Progressed struct {
	Restored []string  `json:"restored,omitempty"`
	Failed   []Failure `json:"failed,omitempty"`
}

// CancelRequested asks the runner to stop.
type CancelRequested struct {
	By kernel.Actor `json:"by"`
}

// Succeeded ends a job that went through its plan.
type Succeeded struct{}

// Failed ends a job that could not go on.
type Failed struct {
	Error string `json:"error"`
}

// Cancelled ends a job stopped on request.
type Cancelled struct{}

// Admitted gives the workspace's one job slot to a job.
type Admitted struct {
	Job string `json:"job"`
}

// Released frees the slot.
type Released struct {
	Job string `json:"job"`
}

var kinds = map[string]func() any{
	TypeQueued: func() any { return &Queued{} }, TypePlanned: func() any { return &Planned{} },
	TypeStarted: func() any { return &Started{} }, TypeProgressed: func() any { return &Progressed{} },
	TypeCancelRequested: func() any { return &CancelRequested{} }, TypeSucceeded: func() any { return &Succeeded{} },
	TypeFailed: func() any { return &Failed{} }, TypeCancelled: func() any { return &Cancelled{} },
	TypeAdmitted: func() any { return &Admitted{} }, TypeReleased: func() any { return &Released{} },
}

// Types returns the wire names of every job event type, sorted.
func Types() []string { return slices.Sorted(maps.Keys(kinds)) }

// TypeOf returns the wire name of a job event.
func TypeOf(e any) string {
	switch e.(type) {
	case Queued:
		return TypeQueued
	case Planned:
		return TypePlanned
	case Started:
		return TypeStarted
	case Progressed:
		return TypeProgressed
	case CancelRequested:
		return TypeCancelRequested
	case Succeeded:
		return TypeSucceeded
	case Failed:
		return TypeFailed
	case Cancelled:
		return TypeCancelled
	case Admitted:
		return TypeAdmitted
	case Released:
		return TypeReleased
	}
	return ""
}

// Decode rebuilds a job event from its wire name and payload.
func Decode(typ string, data []byte) (any, error) {
	k, ok := kinds[typ]
	if !ok {
		return nil, fmt.Errorf("unknown job event %q", typ)
	}
	v := k()
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", typ, err)
	}
	switch e := v.(type) {
	case *Queued:
		return *e, nil
	case *Planned:
		return *e, nil
	case *Started:
		return *e, nil
	case *Progressed:
		return *e, nil
	case *CancelRequested:
		return *e, nil
	case *Succeeded:
		return *e, nil
	case *Failed:
		return *e, nil
	case *Cancelled:
		return *e, nil
	case *Admitted:
		return *e, nil
	case *Released:
		return *e, nil
	}
	return nil, fmt.Errorf("decode %s: unexpected type", typ)
}

// Job is a restore job rebuilt from its stream.
type Job struct {
	ID              string
	Workspace       string
	State           State
	Filter          Filter
	Reason          string
	KeepBoth        bool
	Total           int
	By              kernel.Actor
	Plan            []string
	Restored        int
	Failures        []Failure
	Done            map[string]bool
	CancelRequested bool
	Error           string
	CreatedAt       time.Time
	StartedAt       time.Time
	FinishedAt      time.Time
	// Version is the number of events in the job's stream.
	Version uint64
}

// Apply applies one event of the job's stream.
func (j *Job) Apply(e any, at time.Time) error {
	if j.State.Terminal() {
		return fmt.Errorf("job %s: %s after the job ended", j.ID, TypeOf(e))
	}
	if _, ok := e.(Queued); !ok && j.State == "" {
		return fmt.Errorf("job %s: %s before it was queued", j.ID, TypeOf(e))
	}
	switch ev := e.(type) {
	case Queued:
		j.State, j.Filter, j.Reason, j.Total, j.By, j.CreatedAt = StateQueued, ev.Filter, ev.Reason, ev.Total, ev.By, at
		j.KeepBoth = ev.KeepBoth
		j.Done = map[string]bool{}
	case Planned:
		j.Plan = append(j.Plan, ev.IDs...)
	case Started:
		j.State = StateRunning
		if j.StartedAt.IsZero() {
			j.StartedAt = at
		}
	case Progressed:
		for _, id := range ev.Restored {
			if !j.Done[id] {
				j.Done[id] = true
				j.Restored++
			}
		}
		for _, f := range ev.Failed {
			if !j.Done[f.ID] {
				j.Done[f.ID] = true
				j.Failures = append(j.Failures, f)
			}
		}
	case CancelRequested:
		j.CancelRequested = true
	case Succeeded:
		j.State, j.FinishedAt = StateSucceeded, at
	case Failed:
		j.State, j.Error, j.FinishedAt = StateFailed, ev.Error, at
	case Cancelled:
		j.State, j.FinishedAt = StateCancelled, at
	default:
		return fmt.Errorf("job %s: unexpected event %T", j.ID, e)
	}
	j.Version++
	return nil
}

// Pending returns the planned ids not yet restored or failed, in plan order.
func (j *Job) Pending() []string {
	return slices.DeleteFunc(slices.Clone(j.Plan), func(id string) bool { return j.Done[id] })
}

// Lock is a workspace's admission stream, folded: which job holds the slot.
type Lock struct {
	Holder  string // the admitted job, or "" when the slot is free
	Version uint64
}

// Apply applies one event of the admission stream.
func (l *Lock) Apply(e any) error {
	switch ev := e.(type) {
	case Admitted:
		if l.Holder != "" {
			return fmt.Errorf("job %s admitted while %s holds the slot", ev.Job, l.Holder)
		}
		l.Holder = ev.Job
	case Released:
		if l.Holder != ev.Job {
			return fmt.Errorf("job %s released a slot held by %q", ev.Job, l.Holder)
		}
		l.Holder = ""
	default:
		return fmt.Errorf("unexpected admission event %T", e)
	}
	l.Version++
	return nil
}
