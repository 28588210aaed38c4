package ledger

import (
	"context"
	"errors"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// SweepReport is what one retention sweep did in one workspace.
type SweepReport struct {
	Workspace string
	// RetentionDays is the policy's retention (0: off, nothing swept).
	RetentionDays int
	Purged        []contact.ID
	// Failed maps contacts that could not be purged to why.
	Failed map[contact.ID]error
	// Operation is the sweep's operation id (retention:<sweep id>), the
	// causation id of every tombstone it wrote.
	Operation string
	// SkippedHeld counts contacts past the window left in trash because
	// they are under legal hold.
	SkippedHeld int
	// WorkspaceHold is the id of the workspace's legal hold when one stands:
	// then nothing is purged, and SkippedWorkspaceHold counts what was due.
	WorkspaceHold        string
	SkippedWorkspaceHold int
}

// retentionChunk is how many due contacts a sweep purges in one go.
const retentionChunk = 200

// Skipped is how many contacts past the window the sweep left in trash
// because of a legal hold.
func (r SweepReport) Skipped() int { return r.SkippedHeld + r.SkippedWorkspaceHold }

// The reasons a retention sweep skips a contact, as metrics label them.
const (
	SkipContactHold   = "contact_hold"
	SkipWorkspaceHold = "workspace_hold"
)

// retentionActor is who retention purges are recorded as.
var retentionActor = kernel.System("retention")

// SweepRetention purges, in every workspace (or only the named one), each
// contact that has been in trash longer than the workspace's retention
// days. Each purge's tombstone says the retention policy did it. Workspaces
// whose policy turns retention or purging off are left alone; so is every
// contact of a workspace under legal hold, and every contact under legal
// hold of its own: the report counts them.
func (s *Retention) SweepRetention(ctx context.Context, only string) ([]SweepReport, error) {
	ws, err := s.dir.Workspaces(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.caughtUp(ctx, "trash"); err != nil {
		return nil, err
	}
	now := s.now()
	sweep := ulid.Make().String()
	var out []SweepReport
	for _, w := range ws {
		if only != "" && w.Name != only {
			continue
		}
		days := w.Policy.RetentionDays()
		rep := SweepReport{Workspace: w.Name, RetentionDays: days, Failed: map[contact.ID]error{}, Operation: OperationRetention + sweep}
		if days == 0 || !w.Policy.Settings().PurgeAllowed {
			out = append(out, rep)
			continue
		}
		// Due when trashed_at + days <= now, that is trashed_at < cutoff.
		cutoff := now.AddDate(0, 0, -days).Add(time.Microsecond)
		q := ListQuery{Workspace: w.Name, View: "trash", DeletedBefore: cutoff, Limit: planPage}
		var due []contact.ID
		for {
			items, err := s.views.List(ctx, q)
			if err != nil {
				return out, err
			}
			for _, it := range items {
				due = append(due, it.Contact.ID)
			}
			if len(items) < planPage {
				break
			}
			last := items[len(items)-1]
			q.After = &Cursor{SortAt: last.SortAt, ID: last.Contact.ID.String()}
		}
		wh, _, err := s.holds.WorkspaceHold(ctx, w.Name)
		if err != nil {
			return out, err
		}
		if wh != nil {
			// The whole workspace is held: nothing is due until it is released.
			rep.WorkspaceHold, rep.SkippedWorkspaceHold, due = wh.ID, len(due), nil
		}
		// Purged in chunks, each loaded, decided and appended in one go.
		meta := Meta{Actor: retentionActor, CorrelationID: "retention-" + sweep, Operation: OperationRetention + sweep}
		for from := 0; from < len(due); from += retentionChunk {
			part := due[from:min(from+retentionChunk, len(due))]
			_, errs := s.contacts.TransitionMany(ctx, w.Name, part, meta, Purge,
				TransitionInput{Reason: "in trash longer than the workspace's retention", Trigger: contact.TriggerRetention})
			for i, err := range errs {
				id := part[i]
				switch {
				case err == nil:
					rep.Purged = append(rep.Purged, id)
				case ctx.Err() != nil:
					out = append(out, rep)
					return out, ctx.Err()
				case errors.Is(err, contact.ErrTransition), errors.Is(err, contact.ErrPurged):
					// Restored, re-trashed later or purged meanwhile: not due any more.
				case errors.Is(err, contact.ErrHeld):
					rep.SkippedHeld++
				default:
					rep.Failed[id] = err
				}
			}
		}
		if len(rep.Purged) > 0 || len(rep.Failed) > 0 || rep.Skipped() > 0 {
			s.log.Info("retention sweep", "workspace", w.Name, "retention_days", days, "operation", rep.Operation, "purged", len(rep.Purged),
				"failed", len(rep.Failed), "skipped_held", rep.SkippedHeld, "skipped_workspace_hold", rep.SkippedWorkspaceHold)
		}
		if s.metrics != nil {
			s.metrics.RetentionSkipped(SkipContactHold, rep.SkippedHeld)
			s.metrics.RetentionSkipped(SkipWorkspaceHold, rep.SkippedWorkspaceHold)
		}
		out = append(out, rep)
	}
	return out, nil
}

// RunRetention sweeps every interval until ctx ends, the first time at
// once. With a lease, only the replica holding it sweeps.
func (s *Retention) RunRetention(ctx context.Context, interval time.Duration, lease Lease) error {
	for {
		func() {
			if lease != nil {
				release, ok, err := lease.TryAcquire(ctx, "retention")
				if err != nil || !ok {
					return
				}
				defer release()
			}
			if _, err := s.SweepRetention(ctx, ""); err != nil && ctx.Err() == nil {
				s.log.Error("retention sweep failed; it runs again at the next interval", "err", err)
			}
		}()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
