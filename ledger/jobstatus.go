package ledger

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
)

// jobStatuses keeps the restore jobs whose status was read lately, folded,
// so that the next read folds only the events appended since. A job of
// 100,000 contacts writes about 5,000 progress events; a client polling
// its status ten times a second made the server read and decode all of
// them each time, a quarter of its CPU for the length of the job.
type jobStatuses struct {
	mu      sync.Mutex
	entries map[string]*jobStatus // by workspace and job id
}

type jobStatus struct {
	mu   sync.Mutex
	j    *job.Job // nil until loaded, and after a failed read
	used time.Time
}

// jobStatusesKept bounds how many jobs the cache keeps; the least recently
// read goes first.
const jobStatusesKept = 32

func (c *jobStatuses) entry(workspace, id string) *jobStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := workspace + "\x00" + id
	e, ok := c.entries[key]
	if !ok {
		if c.entries == nil {
			c.entries = map[string]*jobStatus{}
		}
		if len(c.entries) >= jobStatusesKept {
			var oldest string
			var at time.Time
			for k, v := range c.entries {
				if oldest == "" || v.used.Before(at) {
					oldest, at = k, v.used
				}
			}
			delete(c.entries, oldest)
		}
		e = &jobStatus{}
		c.entries[key] = e
	}
	e.used = time.Now()
	return e
}

// RestoreJob returns a restore job's status as its stream tells it: every
// field but its plan and the set of contacts it is done with. With a store
// that reads a stream from a version on, it folds only the events appended
// since the job was last read.
func (s *Jobs) RestoreJob(ctx context.Context, workspace, id string) (*job.Job, error) {
	tr, ok := s.events.(kernel.TailReader)
	if !ok || !validJobID(id) {
		j, _, err := s.loadJob(ctx, workspace, id)
		if err != nil {
			return nil, err
		}
		return statusOf(j), nil
	}
	e := s.jobStatuses.entry(workspace, id)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.j == nil {
		j, _, err := s.loadJob(ctx, workspace, id)
		if err != nil {
			return nil, err
		}
		e.j = j
		return statusOf(j), nil
	}
	if e.j.State.Terminal() {
		return statusOf(e.j), nil // nothing follows the end of a job
	}
	recs, err := tr.ReadStreamAfter(ctx, workspace, job.Stream(id), e.j.Version)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		ev, err := job.Decode(r.Type, r.Data)
		if err == nil && r.Version != e.j.Version+1 {
			err = fmt.Errorf("version %d after %d", r.Version, e.j.Version)
		}
		if err == nil {
			err = e.j.Apply(ev, r.Time)
		}
		if err != nil {
			e.j = nil // half applied: the next read folds the stream again
			return nil, fmt.Errorf("job %s v%d: %w", id, r.Version, err)
		}
	}
	return statusOf(e.j), nil
}

// statusOf copies what a job's status shows, so that the caller shares
// nothing with the cache.
func statusOf(j *job.Job) *job.Job {
	c := *j
	c.Plan, c.Done = nil, nil
	c.Failures = slices.Clone(j.Failures)
	return &c
}
