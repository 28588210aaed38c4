package ledger

import (
	"context"
	"errors"

	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
)

// RecentRestoreJobs returns the workspace's latest restore jobs, newest
// first, up to limit: the jobs its admission stream admitted, so a job
// that was refused a slot never shows.
func (s *Jobs) RecentRestoreJobs(ctx context.Context, workspace string, limit int) ([]*job.Job, error) {
	recs, err := s.events.ReadStream(ctx, workspace, job.LockStream(workspace))
	if errors.Is(err, kernel.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*job.Job
	for i := len(recs) - 1; i >= 0 && len(out) < limit; i-- {
		e, err := job.Decode(recs[i].Type, recs[i].Data)
		if err != nil {
			return nil, err
		}
		a, ok := e.(job.Admitted)
		if !ok {
			continue
		}
		j, err := s.RestoreJob(ctx, workspace, a.Job)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}
