package projections

import (
	"context"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
)

// The states a projection can be in.
const (
	StateLive       = "live"
	StateRebuilding = "rebuilding"
	StateFailed     = "failed"
)

// Status is how far a projection is. It holds no personal data.
type Status struct {
	Name       string
	Checkpoint kernel.Position
	Head       kernel.Position
	// LagEvents counts the events committed after the checkpoint (-1: the store cannot count).
	LagEvents int64
	// LagSeconds is how old the oldest event not applied yet is (0 when caught up).
	LagSeconds float64
	State      string
	Version    int
	// Leading reports whether this process runs the projection.
	Leading bool
	// Rebuild is the running rebuild of the projection, if any.
	Rebuild *RebuildJob
}

// Status returns the status of every projection.
func (r *Runner) Status(ctx context.Context) ([]Status, error) {
	head, err := r.events.Head(ctx)
	if err != nil {
		return nil, err
	}
	var versions map[string]int
	var running []RebuildJob
	if ss, ok := r.store.(ShadowStore); ok {
		if versions, err = ss.Versions(ctx); err != nil {
			return nil, err
		}
		recent, err := ss.Rebuilds(ctx, 20)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		for _, j := range recent {
			if j = j.Effective(now); j.State == RebuildRunning {
				running = append(running, j)
			}
		}
	}
	failed := map[string]time.Time{}
	if fs, ok := r.store.(FailureStore); ok {
		if failed, err = fs.Failed(ctx); err != nil {
			return nil, err
		}
	}
	counter, _ := r.events.(StreamReader)
	var out []Status
	for _, name := range Names() {
		cp, err := r.store.Checkpoint(ctx, name)
		if err != nil {
			return nil, err
		}
		// A move that changed no row may not be stored yet (LazyCheckpoint):
		// this process's own progress says how far it is.
		if p, ok := r.Position(name); ok && r.Leading(name) && cp.Less(p) {
			cp = p
		}
		st := Status{Name: name, Checkpoint: cp, Head: head, LagEvents: -1, State: StateLive, Version: versions[name], Leading: r.Leading(name)}
		if st.Version == 0 {
			st.Version = Version
		}
		if counter != nil {
			if st.LagEvents, err = counter.CountEvents(ctx, cp, head); err != nil {
				return nil, err
			}
		}
		if cp.Less(head) {
			next, err := r.events.ReadAll(ctx, cp, 1)
			if err != nil {
				return nil, err
			}
			if len(next) > 0 {
				st.LagSeconds = max(0, time.Since(next[0].Time).Seconds())
			}
		} else if counter == nil {
			st.LagEvents = 0
		}
		r.mu.Lock()
		_, failing := r.failing[name]
		r.mu.Unlock()
		if _, stored := failed[name]; failing || stored {
			st.State = StateFailed
		}
		for _, j := range running {
			if j.Covers(name) {
				j := j
				st.State, st.Rebuild = StateRebuilding, &j
			}
		}
		out = append(out, st)
	}
	return out, nil
}
