package ledger

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/feed"
	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
)

// Rendered is one event of the log in its public form.
type Rendered struct {
	Record kernel.Record
	Event  feed.Event
	// Body is the event as a CloudEvent in the JSON format.
	Body []byte
}

// contactTypes lists the internal types of the log that have a public form.
var contactTypes = func() []string {
	out, _ := feed.InternalTypes("types", feed.Types())
	return out
}()

// Render turns records of one workspace into their public form, in order.
// Records of other streams (restore jobs) have none and are left out. With
// personal set, each contact's personal values are read with its key,
// fetched for the call and never kept: once the key is destroyed, a render
// (a retry, a replay) carries nothing personal.
func (s *ChangeFeed) Render(ctx context.Context, workspace string, recs []kernel.Record, personal bool) ([]Rendered, error) {
	var keys map[contact.ID]ContactKey
	if personal {
		var ids []contact.ID
		seen := map[contact.ID]bool{}
		for _, r := range recs {
			if id, ok := contact.IDFromStream(r.Stream); ok && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			var err error
			if keys, err = s.vault.ContactKeys(ctx, workspace, ids); err != nil {
				return nil, err
			}
		}
	}
	jobs := map[string]bool{}
	out := make([]Rendered, 0, len(recs))
	for _, r := range recs {
		id, ok := contact.IDFromStream(r.Stream)
		if _, public := feed.PublicType(r.Type); !ok || !public || r.Workspace != workspace {
			continue
		}
		// Without personal values the key is not read: Readable stays
		// true, so events read as withheld (erasure notices as erased).
		in := feed.Stored{Record: r, Personal: personal, Readable: true}
		if personal {
			key := keys[id]
			env, err := OpenRecord(key, r)
			if err != nil {
				return nil, err
			}
			in.Event, in.Readable = env.Event, !key.Destroyed
		} else {
			ev, err := contact.Decode(r.Type, r.Schema, r.Data, nil, contact.HasPersonal(r.Type))
			if err != nil {
				return nil, err
			}
			in.Event = ev
		}
		legacy, err := s.legacyJob(ctx, workspace, r, jobs)
		if err != nil {
			return nil, err
		}
		in.LegacyJob = legacy
		e, err := feed.Map(in)
		if err != nil {
			return nil, err
		}
		body, err := feed.Marshal(r.ID.String(), e)
		if err != nil {
			return nil, err
		}
		out = append(out, Rendered{Record: r, Event: e, Body: body})
	}
	return out, nil
}

// legacyJob reports whether a restore's causation id is the bare id of a
// restore job, as jobs wrote it before operation ids had prefixes: such an
// id is also its correlation id, and the workspace has a job stream of
// that name. known caches the answers of one call.
func (s *ChangeFeed) legacyJob(ctx context.Context, workspace string, r kernel.Record, known map[string]bool) (bool, error) {
	if r.Type != contact.TypeRestored || r.CausationID != r.CorrelationID || strings.Contains(r.CausationID, ":") {
		return false, nil
	}
	if v, ok := known[r.CausationID]; ok {
		return v, nil
	}
	recs, err := s.events.ReadStream(ctx, workspace, job.Stream(r.CausationID))
	if err != nil && kernel.ErrorCode(err) != kernel.CodeNotFound {
		return false, err
	}
	known[r.CausationID] = len(recs) > 0
	return len(recs) > 0, nil
}

// FeedQuery selects a page of a workspace's change feed.
type FeedQuery struct {
	Workspace string
	// After is the position to resume after (the zero Position: from the start).
	After kernel.Position
	// Types are internal event types; empty: every type with a public form.
	Types []string
	Limit int
	// Since skips events older than it (zero: none).
	Since time.Time
	// Personal asks for personal values (the caller must be allowed them).
	Personal bool
}

// FeedPage is one page of the change feed.
type FeedPage struct {
	Events []Rendered
	// Last is the position the next page starts after: the last event read,
	// or the query's After when none was.
	Last kernel.Position
	// More says the page is full: there may be more after Last.
	More bool
}

// MaxFeedPage bounds one page of the change feed.
const MaxFeedPage = 1000

// Feed reads one page of a workspace's change feed, after q.After, in the
// log's order. Like the audit log it first waits until every event
// committed before the call is readable in order, so a client reads its
// own writes; a later page never holds an event before one already read.
func (s *ChangeFeed) Feed(ctx context.Context, q FeedQuery) (FeedPage, error) {
	if err := s.waitStable(ctx); err != nil {
		return FeedPage{}, err
	}
	return s.feedPage(ctx, q)
}

// FeedHead returns the position a reader that wants only new events starts
// after: every event committed later comes after it (on PostgreSQL, the
// newest event of the transactions older than every running one, so a
// transaction that commits late is not passed over).
func (s *ChangeFeed) FeedHead(ctx context.Context) (kernel.Position, error) {
	if sh, ok := s.events.(stableHeader); ok {
		return sh.StableHead(ctx)
	}
	return s.events.Head(ctx)
}

// FeedNow reads one page of the change feed without first waiting for the
// log to be stable: a reader that polls (a stream) gets the rest next time.
func (s *ChangeFeed) FeedNow(ctx context.Context, q FeedQuery) (FeedPage, error) {
	return s.feedPage(ctx, q)
}

// feedPage reads one page without waiting.
func (s *ChangeFeed) feedPage(ctx context.Context, q FeedQuery) (FeedPage, error) {
	recs, last, more, err := s.ReadFeed(ctx, q)
	if err != nil {
		return FeedPage{}, err
	}
	events, err := s.Render(ctx, q.Workspace, recs, q.Personal)
	if err != nil {
		return FeedPage{}, err
	}
	return FeedPage{Events: events, Last: last, More: more}, nil
}

// ReadStreams returns the events of each of the given streams of workspace,
// in version order; streams the workspace does not have are absent.
func (s *ChangeFeed) ReadStreams(ctx context.Context, workspace string, streams []string) (map[string][]kernel.Record, error) {
	return kernel.ReadStreams(ctx, s.events, workspace, streams)
}

// ReadFeed reads up to q.Limit records of q's workspace and types after
// q.After, unrendered: through the store's filtered read when it has one,
// else from the global log. It returns the position to resume after and
// whether more may follow. It does not wait for the log to be stable (see
// Feed): what it returns is in order, and a later read never returns an
// event before them.
func (s *ChangeFeed) ReadFeed(ctx context.Context, q FeedQuery) ([]kernel.Record, kernel.Position, bool, error) {
	types := q.Types
	if len(types) == 0 {
		types = contactTypes
	}
	lq := LogQuery{Workspace: q.Workspace, After: q.After, Types: types, Since: q.Since, Limit: q.Limit}
	if lr, ok := s.events.(LogReader); ok {
		recs, err := lr.ReadLog(ctx, lq)
		if err != nil {
			return nil, q.After, false, err
		}
		last := q.After
		if len(recs) > 0 {
			last = recs[len(recs)-1].Position
		}
		return recs, last, len(recs) == q.Limit, nil
	}
	// The store cannot filter: read the global log and keep what matches,
	// a few pages at most per call.
	var out []kernel.Record
	last := q.After
	for range 8 {
		all, err := s.events.ReadAll(ctx, last, AuditPage)
		if err != nil {
			return nil, q.After, false, err
		}
		for _, r := range all {
			if len(out) == q.Limit {
				return out, last, true, nil
			}
			if lq.Matches(r) {
				out = append(out, r)
			}
			last = r.Position
		}
		if len(all) < AuditPage {
			return out, last, false, nil
		}
	}
	return out, last, true, nil
}

// logWatch wakes those who wait for the log to grow.
type logWatch struct {
	mu      sync.Mutex
	changed chan struct{}
}

// LogChanged returns a channel that is closed when new events are
// committed (while WatchLog runs; without it, nothing wakes the waiters and
// they poll).
func (s *ChangeFeed) LogChanged() <-chan struct{} {
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	if s.watch.changed == nil {
		s.watch.changed = make(chan struct{})
	}
	return s.watch.changed
}

func (s *ChangeFeed) logChanged() {
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	if s.watch.changed != nil {
		close(s.watch.changed)
		s.watch.changed = nil
	}
}

// WatchLog follows the log from its head until ctx ends, waking every
// LogChanged waiter as events are committed (by this process or, through
// the store's subscription, by others).
func (s *ChangeFeed) WatchLog(ctx context.Context) error {
	for ctx.Err() == nil {
		head, err := s.FeedHead(ctx)
		if err == nil {
			err = s.events.Subscribe(ctx, head, func(context.Context, []kernel.Record) error {
				s.logChanged()
				return nil
			})
		}
		if ctx.Err() != nil {
			break
		}
		s.log.Warn("watching the log failed; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return ctx.Err()
}
