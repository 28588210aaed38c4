package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// Reapplied is what re-applying one erasure receipt did.
type Reapplied struct {
	Workspace string
	Contact   contact.ID
	// Tombstone is "present" when the log holds the erasure's tombstone,
	// "written" when it had lost it and a new one was appended (EventID),
	// "no contact" when the log never had the contact (created after the
	// backup), "no workspace" when the deployment has no such workspace.
	Tombstone string
	EventID   string
	// KeyDestroyed is true when a data key of the contact was found and
	// destroyed: by this run, or by the erasure projection as it read the
	// tombstone this run wrote.
	KeyDestroyed bool
}

// reapplyActor is the actor of the tombstones that re-applying writes.
var reapplyActor = kernel.System("erasures-reapply")

// Reapply makes the erasure a receipt proves true again after a restore
// from a backup taken before it: the contact's data key is destroyed again,
// and when the log lost the tombstone a new one is appended (with the
// receipt's trigger, request, key id and fields; its causation id is the
// original tombstone's id), so that the views, the history and the identity
// index agree once the projections have read it. The caller must have
// verified the receipt. Running it twice changes nothing more.
func (s *Audit) Reapply(ctx context.Context, rc Receipt, correlation string) (Reapplied, error) {
	id, err := contact.ParseID(rc.Contact)
	if err != nil {
		return Reapplied{}, fmt.Errorf("receipt names contact %q: %w", rc.Contact, err)
	}
	out := Reapplied{Workspace: rc.Workspace, Contact: id}
	if _, err := s.dir.Workspace(ctx, rc.Workspace); errors.Is(err, kernel.ErrWorkspaceNotFound) {
		out.Tombstone = "no workspace"
		return out, nil
	} else if err != nil {
		return out, err
	}
	// had says the contact's data key existed when this run read the
	// contact: the tombstone it appends makes the erasure projection destroy
	// the key too, and may win the race to it, so whether this run destroyed
	// the key is known from what it read before, not after.
	had := false
	typ := contact.TypePurged
	if rc.Outcome == contact.StateAnonymized {
		typ = contact.TypeAnonymized
	}
	err = retryConflicts(func() error {
		l, err := s.load(ctx, rc.Workspace, id)
		if errors.Is(err, kernel.ErrNotFound) {
			out.Tombstone = "no contact"
			return nil
		}
		if err != nil {
			return err
		}
		out.Tombstone, had = "present", had || !l.key.Destroyed
		er := contact.Erasure{Trigger: rc.Erasure.Trigger, Request: rc.Erasure.Request, RetentionDays: rc.Erasure.RetentionDays,
			KeyID: rc.Erased.KeyID, Erased: rc.Erased.Fields}
		changed, err := l.c.Reerase(typ, er, reapplyActor, s.now())
		if err != nil || !changed {
			return err
		}
		last := l.recs[len(l.recs)-1]
		meta := Meta{Actor: reapplyActor, CorrelationID: correlation, CausationID: rc.Erasure.EventID}
		recs, err := seal(l.key, id.Stream(), rc.Workspace, meta, l.c.Saved(), last.Hash, l.c.Changes())
		if err != nil {
			return err
		}
		if _, err := s.appendEvents(ctx, id.Stream(), l.c.Saved(), recs); err != nil {
			return err
		}
		out.Tombstone, out.EventID = "written", recs[len(recs)-1].ID.String()
		return nil
	})
	if err != nil {
		return out, err
	}
	key, err := s.vault.ContactKey(ctx, rc.Workspace, id)
	if err != nil {
		return out, err
	}
	if !key.Destroyed {
		if err := s.vault.Destroy(ctx, rc.Workspace, id); err != nil {
			return out, err
		}
		had = true
	}
	out.KeyDestroyed = had
	return out, nil
}

// NewCorrelation returns a fresh id for the events of one run of a command.
func NewCorrelation(prefix string) string { return prefix + "-" + ulid.Make().String() }
