package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/hold"
	"github.com/contactledger/ledger/domain/kernel"
)

// PlaceHold puts a contact under legal hold (ContactHeld in its stream,
// its case and reason sealed under its key) and returns the hold's id.
// From then on it cannot be purged or anonymized, by anyone or by
// retention, until the hold is released. Errors: contact.ErrAlreadyHeld.
func (s *LegalHolds) PlaceHold(ctx context.Context, workspace string, id contact.ID, meta Meta, caseRef, reason string) (Result, string, error) {
	var holdID string
	res, err := s.execute(ctx, workspace, id, meta, func(l loaded, _ contact.Policy, now time.Time) error {
		var err error
		holdID, err = l.c.PlaceHold(caseRef, reason, meta.Actor, now)
		return err
	})
	return res, holdID, err
}

// ReleaseHold lifts a contact's legal hold. Errors: contact.ErrNotHeld.
func (s *LegalHolds) ReleaseHold(ctx context.Context, workspace string, id contact.ID, meta Meta, reason string) (Result, error) {
	return s.execute(ctx, workspace, id, meta, func(l loaded, _ contact.Policy, now time.Time) error {
		return l.c.ReleaseHold(reason, meta.Actor, now)
	})
}

// MaxHoldsPage is the most held contacts one page of the holds listing has.
const MaxHoldsPage = 1000

// Holds returns the workspace's hold (nil when none stands) and up to
// limit contacts under legal hold, by id, after the contact id after.
// Held contacts come from the identity index, which keeps every live
// contact's state, its hold included (its case and reason as the contact's
// key reads them; the row goes with the contact's erasure); the call first
// waits until the index has applied every event committed before it.
func (s *LegalHolds) Holds(ctx context.Context, workspace, after string, limit int) (*hold.Hold, []contact.Snapshot, error) {
	wh, _, err := s.WorkspaceHold(ctx, workspace)
	if err != nil {
		return nil, nil, err
	}
	if err := s.caughtUp(ctx, identityProjection); err != nil {
		return nil, nil, err
	}
	held, err := s.identities.HeldContacts(ctx, workspace, after, limit)
	return wh, held, err
}

// WorkspaceHold returns the hold that stands on the whole workspace (nil
// when none) and its stream's records.
func (s *LegalHolds) WorkspaceHold(ctx context.Context, workspace string) (*hold.Hold, []kernel.Record, error) {
	recs, err := s.events.ReadStream(ctx, workspace, hold.Stream(workspace))
	if errors.Is(err, kernel.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var w hold.Workspace
	for _, r := range recs {
		e, err := hold.Decode(r.Type, r.Data)
		if err != nil {
			return nil, nil, fmt.Errorf("%s v%d: %w", r.Stream, r.Version, err)
		}
		if err := w.Apply(e, r.Time); err != nil {
			return nil, nil, err
		}
	}
	return w.Active, recs, nil
}

// PlaceWorkspaceHold puts the whole workspace under legal hold: no
// retention purge runs in it until the hold is released (purges and
// anonymizations asked for by hand still run; hold the contact to stop
// those). Errors: hold.ErrAlreadyHeld, kernel.ErrInvalid for a case or
// reason that looks like an email address or a phone number (they are
// kept in clear).
func (s *LegalHolds) PlaceWorkspaceHold(ctx context.Context, workspace string, meta Meta, caseRef, reason string) (*hold.Hold, error) {
	var placed *hold.Hold
	err := retryConflicts(func() error {
		w, recs, err := s.WorkspaceHold(ctx, workspace)
		if err != nil {
			return err
		}
		ev, err := hold.Workspace{Active: w}.Place(caseRef, reason, meta.Actor)
		if err != nil {
			return err
		}
		out, err := s.appendPlain(ctx, hold.Stream(workspace), workspace, meta, recs, s.now(), hold.TypeOf, ev)
		if err != nil {
			return err
		}
		last := out[len(out)-1]
		placed = &hold.Hold{ID: ev.HoldID, Case: ev.Case, Reason: ev.Reason, At: last.Time, By: ev.By}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return placed, nil
}

// ReleaseWorkspaceHold lifts the workspace's legal hold and returns the
// hold it lifted. Errors: hold.ErrNotHeld.
func (s *LegalHolds) ReleaseWorkspaceHold(ctx context.Context, workspace string, meta Meta, reason string) (*hold.Hold, error) {
	var released *hold.Hold
	err := retryConflicts(func() error {
		w, recs, err := s.WorkspaceHold(ctx, workspace)
		if err != nil {
			return err
		}
		ev, err := hold.Workspace{Active: w}.Release(reason, meta.Actor)
		if err != nil {
			return err
		}
		if _, err := s.appendPlain(ctx, hold.Stream(workspace), workspace, meta, recs, s.now(), hold.TypeOf, ev); err != nil {
			return err
		}
		released = w
		return nil
	})
	if err != nil {
		return nil, err
	}
	return released, nil
}
