package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
)

// Trail is a contact's events up to a point, and its state as it was then,
// folded from the log.
type Trail struct {
	Entries []HistoryEntry
	State   contact.Snapshot
	// Current is the stream's version now, which may be past the trail's end.
	Current uint64
}

// ErrNotYet is returned for a point in a contact's history before it existed.
var ErrNotYet = &kernel.Error{Code: kernel.CodeNotFound, Reason: "not-found", Message: "the contact did not exist yet at that time"}

// Trail returns a contact's events up to asOf (inclusive) and version, and
// its state after them; zero values don't limit. It reads the log itself,
// never a read model, so it answers for purged and anonymized contacts too:
// every event is there, personal parts read as shredded, and the state
// carries the tombstone.
func (s *Audit) Trail(ctx context.Context, workspace string, id contact.ID, asOf time.Time, version uint64) (Trail, error) {
	recs, err := s.events.ReadStream(ctx, workspace, id.Stream())
	if err != nil {
		return Trail{}, err
	}
	current := recs[len(recs)-1].Version
	if version > current {
		return Trail{}, kernel.Invalid(kernel.FieldError{Field: "version", Message: fmt.Sprintf("the contact has %d events", current)})
	}
	n := 0
	for _, r := range recs {
		if (version != 0 && r.Version > version) || (!asOf.IsZero() && r.Time.After(asOf)) {
			break
		}
		n++
	}
	if n == 0 {
		return Trail{}, ErrNotYet
	}
	recs = recs[:n]
	key, err := s.vault.ContactKey(ctx, workspace, id)
	if err == nil {
		key, err = key.withSealer()
	}
	if err != nil {
		return Trail{}, err
	}
	envs := make([]contact.Envelope, 0, n)
	entries := make([]HistoryEntry, 0, n)
	for _, r := range recs {
		e := HistoryEntry{Record: r}
		if r.Sealed != nil {
			if key.Destroyed {
				e.Shredded = true
			} else if e.Personal, err = key.sealer.Open(r.Stream, r.ID[:], r.Sealed); err != nil {
				return Trail{}, fmt.Errorf("open %s v%d: %w", r.Stream, r.Version, err)
			}
		}
		env, err := openOne(key, r)
		if err != nil {
			return Trail{}, err
		}
		envs, entries = append(envs, env), append(entries, e)
	}
	c, err := contact.Replay(id, envs)
	if err != nil {
		return Trail{}, err
	}
	return Trail{Entries: entries, State: c.Snapshot(), Current: current}, nil
}

// AuditPage is how many events the audit log and the chain check read at
// once: what they hold in memory, however long the log.
var AuditPage = 1000

// AuditLog calls emit with the pages of a workspace's events that match q,
// in global order, from q.After on, until the log ends, q.Limit events were
// emitted (when set), or emit fails. Only one page is held at a time.
func (s *Audit) AuditLog(ctx context.Context, q LogQuery, emit func([]kernel.Record) error) error {
	if err := s.waitStable(ctx); err != nil {
		return err
	}
	limit := q.Limit
	lr, indexed := s.events.(LogReader)
	for sent := 0; limit == 0 || sent < limit; {
		page := AuditPage
		if limit > 0 {
			page = min(page, limit-sent)
		}
		var recs []kernel.Record
		var err error
		var end bool
		if indexed {
			pq := q
			pq.Limit = page
			recs, err = lr.ReadLog(ctx, pq)
			end = len(recs) < page
		} else {
			// The store cannot filter: read the global log and keep what matches.
			var all []kernel.Record
			all, err = s.events.ReadAll(ctx, q.After, AuditPage)
			end = len(all) < AuditPage
			for _, r := range all {
				if q.Matches(r) && len(recs) < page {
					recs = append(recs, r)
				}
				q.After = r.Position
				if len(recs) == page {
					end = false
					break
				}
			}
		}
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			if err := emit(recs); err != nil {
				return err
			}
			sent += len(recs)
			if indexed {
				q.After = recs[len(recs)-1].Position
			}
		}
		if end {
			return nil
		}
	}
	return nil
}

// stableHeader is implemented by stores whose newest events may not be
// readable in global order yet (PostgreSQL: until older transactions end).
type stableHeader interface {
	StableHead(ctx context.Context) (kernel.Position, error)
}

// waitStable waits until every event committed before the call is readable
// in global order, so that a log read shows the caller's own writes.
func (s *core) waitStable(ctx context.Context) error {
	sh, ok := s.events.(stableHeader)
	if !ok {
		return nil
	}
	head, err := s.events.Head(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for wait := time.Millisecond; ; wait = min(wait*2, 100*time.Millisecond) {
		stable, err := sh.StableHead(ctx)
		if err != nil {
			return err
		}
		if !stable.Less(head) {
			return nil
		}
		if time.Now().After(deadline) {
			return ErrLogBusy
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// ErrLogBusy is returned when a long transaction keeps recent events from being read in order.
var ErrLogBusy = &kernel.Error{Code: kernel.CodeUnavailable, Reason: "log-busy", Message: "a long transaction keeps the newest events from being read in order; retry shortly"}

// VerifyScope selects the streams `audit verify` checks: one contact, one
// workspace, or (both empty) the whole log.
type VerifyScope struct {
	Workspace string
	Contact   *contact.ID
}

// VerifyReport is what a chain check found.
type VerifyReport struct {
	Events  int            `json:"events"`
	Streams int            `json:"streams"`
	Breaks  []kernel.Break `json:"breaks"`
}

// VerifyChains recomputes the hash chain of every stream in scope and
// reports the first break of each. progress, when set, is called with the
// number of events checked so far after each page.
func (s *Audit) VerifyChains(ctx context.Context, scope VerifyScope, progress func(events int)) (VerifyReport, error) {
	v := kernel.NewChainVerifier()
	rep := VerifyReport{Breaks: []kernel.Break{}}
	add := func(recs []kernel.Record) error {
		for _, r := range recs {
			if b := v.Add(r); b != nil {
				rep.Breaks = append(rep.Breaks, *b)
			}
		}
		if progress != nil {
			progress(v.Events)
		}
		return nil
	}
	var err error
	switch {
	case scope.Contact != nil:
		var recs []kernel.Record
		if recs, err = s.events.ReadStream(ctx, scope.Workspace, scope.Contact.Stream()); err == nil {
			err = add(recs)
		}
	case scope.Workspace != "":
		if _, err = s.dir.Workspace(ctx, scope.Workspace); err == nil {
			err = s.AuditLog(ctx, LogQuery{Workspace: scope.Workspace}, add)
		}
	default:
		var from kernel.Position
		for {
			var recs []kernel.Record
			if recs, err = s.events.ReadAll(ctx, from, AuditPage); err != nil || len(recs) == 0 {
				break
			}
			add(recs)
			from = recs[len(recs)-1].Position
		}
	}
	rep.Events, rep.Streams = v.Events, v.Streams
	return rep, err
}
