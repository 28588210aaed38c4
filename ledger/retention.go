package ledger

import (
	"context"
	"errors"
	"time"

	"github.com/contactledger/ledger/domain/contact"
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
}

// retentionActor is who retention purges are recorded as.
var retentionActor = contact.System("retention")

// SweepRetention purges, in every workspace (or only the named one), each
// contact that has been in trash longer than the workspace's retention
// days. Each purge's tombstone says the retention policy did it. Workspaces
// whose policy turns retention or purging off are left alone.
func (s *Service) SweepRetention(ctx context.Context, only string) ([]SweepReport, error) {
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
		rep := SweepReport{Workspace: w.Name, RetentionDays: days, Failed: map[contact.ID]error{}}
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
		for _, id := range due {
			_, err := s.Transition(ctx, w.Name, id, Meta{Actor: retentionActor, CorrelationID: "retention-" + sweep, Operation: OperationRetention + sweep}, Purge,
				TransitionInput{Reason: "in trash longer than the workspace's retention", Trigger: contact.TriggerRetention})
			switch {
			case err == nil:
				rep.Purged = append(rep.Purged, id)
			case ctx.Err() != nil:
				out = append(out, rep)
				return out, ctx.Err()
			case errors.Is(err, contact.ErrTransition), errors.Is(err, contact.ErrPurged):
				// Restored, re-trashed later or purged meanwhile: not due any more.
			default:
				rep.Failed[id] = err
			}
		}
		if len(rep.Purged) > 0 || len(rep.Failed) > 0 {
			s.log.Info("retention sweep", "workspace", w.Name, "retention_days", days, "purged", len(rep.Purged), "failed", len(rep.Failed))
		}
		out = append(out, rep)
	}
	return out, nil
}

// RunRetention sweeps every interval until ctx ends, the first time at
// once. With a lease, only the replica holding it sweeps.
func (s *Service) RunRetention(ctx context.Context, interval time.Duration, lease Lease) error {
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
