// Package hold is the workspace-wide legal hold: while it stands, no
// retention purge runs in the workspace (a hold on one contact is an event
// of that contact's stream; see contact.Hold). It is an event stream of its
// own (workspacehold-<workspace>): placed, released, placed again, so it
// replays and audits like everything else. A workspace hold is about no
// one contact, so no contact's key can seal its case and reason: they stay
// in clear, and refuse what looks like an email address or a phone number.
// No I/O here.
package hold

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// StreamPrefix starts the name of each workspace's hold stream.
const StreamPrefix = "workspacehold-"

// Stream returns the hold stream of workspace.
func Stream(workspace string) string { return StreamPrefix + workspace }

// The wire names of the events.
const (
	TypePlaced   = "WorkspaceHoldPlaced"
	TypeReleased = "WorkspaceHoldReleased"
)

// Placed puts the workspace under legal hold.
type Placed struct {
	HoldID string       `json:"hold_id"`
	Case   string       `json:"case,omitempty"`
	Reason string       `json:"reason,omitempty"`
	By     kernel.Actor `json:"by"`
}

// Released lifts it.
type Released struct {
	HoldID string       `json:"hold_id"`
	Reason string       `json:"reason,omitempty"`
	By     kernel.Actor `json:"by"`
}

// TypeOf returns the wire name of an event of this package.
func TypeOf(e any) string {
	switch e.(type) {
	case Placed, *Placed:
		return TypePlaced
	case Released, *Released:
		return TypeReleased
	}
	return ""
}

// Decode reads an event of this package.
func Decode(typ string, data []byte) (any, error) {
	var e any
	switch typ {
	case TypePlaced:
		e = &Placed{}
	case TypeReleased:
		e = &Released{}
	default:
		return nil, fmt.Errorf("unknown workspace hold event %q", typ)
	}
	if err := json.Unmarshal(data, e); err != nil {
		return nil, fmt.Errorf("%s: %w", typ, err)
	}
	return e, nil
}

// Hold is the hold that stands.
type Hold struct {
	ID     string       `json:"id"`
	Case   string       `json:"case,omitempty"`
	Reason string       `json:"reason,omitempty"`
	At     time.Time    `json:"at"`
	By     kernel.Actor `json:"by"`
}

// Workspace is a workspace's hold state, folded from its stream.
type Workspace struct {
	// Active is the hold that stands, or nil.
	Active *Hold
}

// Apply folds one event.
func (w *Workspace) Apply(e any, at time.Time) error {
	switch ev := e.(type) {
	case *Placed:
		w.Active = &Hold{ID: ev.HoldID, Case: ev.Case, Reason: ev.Reason, At: at, By: ev.By}
	case *Released:
		w.Active = nil
	default:
		return fmt.Errorf("unknown workspace hold event %T", e)
	}
	return nil
}

// ErrAlreadyHeld refuses a second workspace hold.
var ErrAlreadyHeld = &kernel.Error{Code: kernel.CodeConflict, Reason: "already-held", Message: "the workspace is already under legal hold"}

// ErrNotHeld refuses to release a hold that is not there.
var ErrNotHeld = &kernel.Error{Code: kernel.CodeConflict, Reason: "not-held", Message: "the workspace is not under legal hold"}

// Place decides a new hold: its case and reason are kept in clear, so
// they must not hold an email address or a phone number.
func (w Workspace) Place(caseRef, reason string, by kernel.Actor) (Placed, error) {
	if w.Active != nil {
		return Placed{}, kernel.Errorf(ErrAlreadyHeld, "the workspace is already under legal hold %s; release it first to place another", w.Active.ID)
	}
	var errs []kernel.FieldError
	for _, f := range []struct{ name, v string }{{"case", caseRef}, {"reason", reason}} {
		if err := contact.ValidateClearText(f.name, f.v); err != nil {
			var ce *kernel.Error
			if errors.As(err, &ce) {
				errs = append(errs, ce.Fields...)
			}
		}
	}
	if len(caseRef) > contact.MaxCaseLen {
		errs = append(errs, kernel.FieldError{Field: "case", Message: fmt.Sprintf("is too long (maximum %d characters)", contact.MaxCaseLen)})
	}
	if len(errs) > 0 {
		return Placed{}, kernel.Invalid(errs...)
	}
	return Placed{HoldID: contact.HoldPrefix + ulid.Make().String(), Case: caseRef, Reason: reason, By: by}, nil
}

// Release decides the release of the hold that stands.
func (w Workspace) Release(reason string, by kernel.Actor) (Released, error) {
	if w.Active == nil {
		return Released{}, ErrNotHeld
	}
	if err := contact.ValidateClearText("reason", reason); err != nil {
		return Released{}, err
	}
	return Released{HoldID: w.Active.ID, Reason: reason, By: by}, nil
}
