package wire

import (
	"time"

	"github.com/contactledger/ledger/projections"
)

// RebuildJSON is a rebuild and its progress.
type RebuildJSON struct {
	ID              string     `json:"id"`
	Projection      string     `json:"projection"`
	State           string     `json:"state"`
	Phase           string     `json:"phase"`
	Reason          string     `json:"reason"`
	RequestedBy     string     `json:"requested_by"`
	EventsDone      int64      `json:"events_done"`
	EventsTotal     int64      `json:"events_total"`
	EventsPerSecond float64    `json:"events_per_second"`
	ETASeconds      *float64   `json:"eta_seconds"`
	StartedAt       time.Time  `json:"started_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	FinishedAt      *time.Time `json:"finished_at,omitempty"`
	Error           string     `json:"error,omitempty"`
	CancelRequested bool       `json:"cancel_requested,omitempty"`
}

// RebuildJobJSON renders a rebuild.
func RebuildJobJSON(j projections.RebuildJob) RebuildJSON {
	rate, eta := j.Rate()
	out := RebuildJSON{ID: j.ID, Projection: j.Projection, State: string(j.State), Phase: j.Phase, Reason: j.Reason, RequestedBy: j.RequestedBy,
		EventsDone: j.EventsDone, EventsTotal: j.EventsTotal, EventsPerSecond: rate, StartedAt: j.StartedAt, UpdatedAt: j.UpdatedAt,
		Error: j.Error, CancelRequested: j.Cancel}
	if eta >= 0 {
		out.ETASeconds = &eta
	}
	if !j.FinishedAt.IsZero() {
		t := j.FinishedAt
		out.FinishedAt = &t
	}
	return out
}

// ProjectionJSON is a projection's status.
type ProjectionJSON struct {
	Name       string       `json:"name"`
	State      string       `json:"state"`
	Checkpoint string       `json:"checkpoint"`
	Head       string       `json:"head"`
	LagEvents  int64        `json:"lag_events"`
	LagSeconds float64      `json:"lag_seconds"`
	Version    int          `json:"version"`
	Leading    bool         `json:"leading"`
	Rebuild    *RebuildJSON `json:"rebuild,omitempty"`
}

// ProjectionsJSON renders projection statuses, with the rebuilds that
// visible lets the caller see.
func ProjectionsJSON(sts []projections.Status, visible func(projections.RebuildJob) bool) []ProjectionJSON {
	out := make([]ProjectionJSON, 0, len(sts))
	for _, st := range sts {
		p := ProjectionJSON{Name: st.Name, State: st.State, Checkpoint: st.Checkpoint.String(), Head: st.Head.String(),
			LagEvents: st.LagEvents, LagSeconds: st.LagSeconds, Version: st.Version, Leading: st.Leading}
		if st.Rebuild != nil && visible(*st.Rebuild) {
			r := RebuildJobJSON(*st.Rebuild)
			p.Rebuild = &r
		}
		out = append(out, p)
	}
	return out
}
