package projections

import (
	"regexp"
	"strings"
	"time"
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
