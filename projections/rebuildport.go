package projections

import (
	"context"
	"regexp"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
)

var genPattern = regexp.MustCompile(`^[a-z0-9]{1,32}$`)

// Shadow names the table that a rebuild of view builds beside the live one:
// Rows, Commit and Checkpoint accept it as a projection name.
func Shadow(view, gen string) string { return view + "~" + gen }

// ParseShadow splits a shadow's name into its view and generation.
func ParseShadow(name string) (view, gen string, ok bool) {
	view, gen, ok = strings.Cut(name, "~")
	if !ok || !genPattern.MatchString(gen) {
		return "", "", false
	}
	return view, gen, true
}

// RebuildState is where a rebuild is.
type RebuildState string

// The states of a rebuild.
const (
	RebuildRunning   RebuildState = "running"
	RebuildDone      RebuildState = "done"
	RebuildFailed    RebuildState = "failed"
	RebuildCancelled RebuildState = "cancelled"
)

// RebuildJob is a rebuild's record, kept in the state store so that any
// process can show its progress. It holds no personal data.
type RebuildJob struct {
	ID         string
	Projection string // a view, or "all"
	State      RebuildState
	Phase      string // folding, indexing, catching-up, switching, done
	Reason     string // requested, version
	// Workspace and RequestedBy name who asked for it: a token of a
	// workspace, or (Workspace empty) the command line or the ledger itself.
	Workspace   string
	RequestedBy string
	EventsDone  int64
	EventsTotal int64
	StartedAt   time.Time
	UpdatedAt   time.Time
	FinishedAt  time.Time
	Error       string
	Cancel      bool
}

// ShadowStore is implemented by state stores that can rebuild a view into a
// table beside the live one and switch it in atomically.
type ShadowStore interface {
	// CreateShadow creates the empty table of Shadow(view, gen), without a
	// checkpoint and with its primary key as its only index.
	CreateShadow(ctx context.Context, view, gen string) error
	// LoadShadow inserts rows into a shadow in bulk (COPY on PostgreSQL).
	LoadShadow(ctx context.Context, view, gen string, rows []Row) error
	// IndexShadow builds a loaded shadow's other indexes: one sort each,
	// where growing them row by row during the load would cost a random
	// write per row and index. It holds the live view's writers back for
	// no longer than one index build at a time.
	IndexShadow(ctx context.Context, view, gen string) error
	// DropShadows drops the shadows of view (one generation, or every
	// leftover when gen is ""), with their checkpoints. Callers hold the
	// view's rebuild lock.
	DropShadows(ctx context.Context, view, gen string) error
	// SwitchShadow makes Shadow(view, gen) the live table of view in one
	// transaction, with the view's checkpoint locked: when the live
	// checkpoint is ahead of the shadow's, catchUp must return the batch
	// that brings the shadow from its checkpoint to the live one (or fail,
	// and nothing changes); the live checkpoint ends at the shadow's
	// position, and the projection's version becomes Version. A shadow
	// switches in with every index of the view (built in the switch when
	// IndexShadow has not run). The old table
	// is dropped after the switch. Errors: kernel.ErrConcurrency when the
	// tables were too busy to switch now (nothing changed; try again).
	SwitchShadow(ctx context.Context, view, gen string, catchUp func(ctx context.Context, from, to kernel.Position) (Batch, error)) error
	// LockRebuild takes the rebuild locks of the named views, all or none,
	// without waiting; ok is false when another rebuild holds one of them.
	// The locks go with the process.
	LockRebuild(ctx context.Context, names ...string) (release func(), ok bool, err error)
	// Versions returns the code version each projection's rows were built
	// with (projections without a checkpoint are absent).
	Versions(ctx context.Context) (map[string]int, error)
	// SaveRebuild inserts or updates a rebuild's record; it returns the
	// stored record's Cancel flag (a cancellation requested meanwhile).
	SaveRebuild(ctx context.Context, j RebuildJob) (cancel bool, err error)
	// Rebuild returns a rebuild's record. Errors: kernel.ErrNotFound.
	Rebuild(ctx context.Context, id string) (RebuildJob, error)
	// Rebuilds returns the most recent rebuilds, newest first.
	Rebuilds(ctx context.Context, limit int) ([]RebuildJob, error)
	// CancelRebuild asks a running rebuild to stop. Errors: kernel.ErrNotFound.
	CancelRebuild(ctx context.Context, id string) error
}
