package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
	"github.com/jackc/pgx/v5"
	"github.com/oklog/ulid/v2"
)

var _ kernel.EventStore = (*Store)(nil)

// eventColumns are the columns of a record. The transaction id is read as
// text (pgx has no xid8 type) under another name: ORDER BY tx must mean the
// xid8 column, not the text (which would sort "1000" before "999").
const eventColumns = `tx::text AS tx_text, seq, id, stream, version, type, time, workspace, actor, actor_role,
	correlation_id, causation_id, schema, data, sealed, prev_hash, hash`

// appendSQL checks the stream's version and inserts the events in one
// statement, so an append is one round trip. A concurrent append of the
// same version fails on the (stream, version) key.
const appendSQL = `
WITH cur AS (
	SELECT COALESCE(max(version), 0) AS v, COALESCE(bool_or(workspace <> $2), false) AS foreign_ws
	FROM events WHERE stream = $1
)
INSERT INTO events (id, stream, version, type, time, workspace, actor, actor_role,
	correlation_id, causation_id, schema, data, sealed, prev_hash, hash)
SELECT e.id, $1, e.version, e.type, e.time, $2, e.actor, e.actor_role, e.corr, e.caus, e.schema, e.data, e.sealed, e.prev_hash, e.hash
FROM unnest($4::bytea[], $5::bigint[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[],
	$12::int[], $13::bytea[], $14::bytea[], $15::bytea[], $16::bytea[])
	WITH ORDINALITY AS e(id, version, type, time, actor, actor_role, corr, caus, schema, data, sealed, prev_hash, hash, ord),
	cur
WHERE cur.v = $3 AND NOT cur.foreign_ws
ORDER BY e.ord
RETURNING tx::text AS tx_text, seq`

// Append appends events to stream at the expected version, atomically,
// through the group committers: appends made at the same time by other
// requests share its commit.
func (s *Store) Append(ctx context.Context, stream string, expected uint64, events []kernel.Record) (kernel.Position, error) {
	return s.appendQueued(ctx, item{StreamAppend: kernel.StreamAppend{Stream: stream, Expected: expected, Events: events}})
}

// AppendAlone appends events to stream at the expected version in a
// statement and a commit of its own, as every append did before group
// commit: the benchmark measures group commit against it.
func (s *Store) AppendAlone(ctx context.Context, stream string, expected uint64, events []kernel.Record) (kernel.Position, error) {
	if err := kernel.Validate(stream, expected, events); err != nil {
		return kernel.Position{}, err
	}
	n := len(events)
	var (
		ids, data, sealed, prev, hash = make([][]byte, n), make([][]byte, n), make([][]byte, n), make([][]byte, n), make([][]byte, n)
		versions                      = make([]int64, n)
		schemas                       = make([]int32, n)
		times                         = make([]time.Time, n)
		types, actors, roles          = make([]string, n), make([]string, n), make([]string, n)
		corrs, causes                 = make([]string, n), make([]string, n)
	)
	for i, e := range events {
		ids[i], versions[i], types[i], times[i] = e.ID[:], int64(e.Version), e.Type, e.Time
		actors[i], roles[i], corrs[i], causes[i] = e.Actor.Principal, string(e.Actor.Role), e.CorrelationID, e.CausationID
		schemas[i], data[i], sealed[i], prev[i], hash[i] = int32(e.Schema), e.Data, e.Sealed, e.PrevHash, e.Hash
	}
	rows, err := s.pool.Query(ctx, appendSQL, stream, events[0].Workspace, int64(expected),
		ids, versions, types, times, actors, roles, corrs, causes, schemas, data, sealed, prev, hash)
	if err != nil {
		return kernel.Position{}, fmt.Errorf("append to %s: %w", stream, err)
	}
	var last kernel.Position
	count := 0
	for rows.Next() {
		var tx string
		var seq int64
		if err := rows.Scan(&tx, &seq); err != nil {
			rows.Close()
			return kernel.Position{}, err
		}
		p, err := position(tx, seq)
		if err != nil {
			rows.Close()
			return kernel.Position{}, err
		}
		if last.Less(p) {
			last = p
		}
		count++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		if isUnique(err) {
			return kernel.Position{}, kernel.Errorf(kernel.ErrConcurrency, "another append to the stream won")
		}
		return kernel.Position{}, fmt.Errorf("append to %s: %w", stream, err)
	}
	if count == 0 {
		return kernel.Position{}, s.appendRefused(ctx, stream, events[0].Workspace, expected)
	}
	s.appendedLocally()
	return last, nil
}

// appendRefused says why an append inserted nothing.
func (s *Store) appendRefused(ctx context.Context, stream, workspace string, expected uint64) error {
	var cur int64
	var foreign bool
	err := s.pool.QueryRow(ctx, `SELECT COALESCE(max(version), 0), COALESCE(bool_or(workspace <> $2), false) FROM events WHERE stream = $1`, stream, workspace).Scan(&cur, &foreign)
	if err != nil {
		return fmt.Errorf("append to %s: %w", stream, err)
	}
	if foreign {
		return kernel.ErrNotFound
	}
	return kernel.Errorf(kernel.ErrConcurrency, "stream is at version %d, not %d", cur, expected)
}

func position(tx string, seq int64) (kernel.Position, error) {
	c, err := u64(tx)
	if err != nil {
		return kernel.Position{}, fmt.Errorf("transaction id %q: %w", tx, err)
	}
	return kernel.Position{Commit: c, Prepare: uint64(seq)}, nil
}

func scanRecords(rows pgx.Rows, err error) ([]kernel.Record, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []kernel.Record
	for rows.Next() {
		var (
			r       kernel.Record
			tx      string
			seq     int64
			id      []byte
			version int64
			role    string
			schema  int32
		)
		if err := rows.Scan(&tx, &seq, &id, &r.Stream, &version, &r.Type, &r.Time, &r.Workspace, &r.Actor.Principal, &role,
			&r.CorrelationID, &r.CausationID, &schema, &r.Data, &r.Sealed, &r.PrevHash, &r.Hash); err != nil {
			return nil, err
		}
		if len(id) != len(ulid.ULID{}) {
			return nil, fmt.Errorf("event %d has a malformed id", seq)
		}
		copy(r.ID[:], id)
		if r.Position, err = position(tx, seq); err != nil {
			return nil, err
		}
		r.Version, r.Actor.Role, r.Schema, r.Time = uint64(version), kernel.Role(role), int(schema), r.Time.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

var _ kernel.MultiReader = (*Store)(nil)

// ReadStreams returns the events of many streams of the workspace, in one query.
func (s *Store) ReadStreams(ctx context.Context, workspace string, streams []string) (map[string][]kernel.Record, error) {
	out := make(map[string][]kernel.Record, len(streams))
	if len(streams) == 0 {
		return out, nil
	}
	recs, err := scanRecords(s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE workspace = $1 AND stream = ANY($2) ORDER BY stream, version`, workspace, streams))
	if err != nil {
		return nil, fmt.Errorf("read %d streams: %w", len(streams), err)
	}
	for _, r := range recs {
		out[r.Stream] = append(out[r.Stream], r)
	}
	return out, nil
}

// ReadStream returns a stream's events in the workspace, in version order.
func (s *Store) ReadStream(ctx context.Context, workspace, stream string) ([]kernel.Record, error) {
	recs, err := scanRecords(s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE stream = $1 AND workspace = $2 ORDER BY version`, stream, workspace))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	if len(recs) == 0 {
		return nil, kernel.ErrNotFound
	}
	return recs, nil
}

// ReadStreamAfter returns a stream's events with a version above after.
func (s *Store) ReadStreamAfter(ctx context.Context, workspace, stream string, after uint64) ([]kernel.Record, error) {
	recs, err := scanRecords(s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE stream = $1 AND workspace = $2 AND version > $3
		ORDER BY version`, stream, workspace, int64(after)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	return recs, nil
}

// ReadAll returns up to limit events after from, in global order. It reads
// only events of transactions older than every transaction still running,
// so an event committed later can never land behind a position already read.
func (s *Store) ReadAll(ctx context.Context, from kernel.Position, limit int) ([]kernel.Record, error) {
	recs, err := scanRecords(s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events
		WHERE (tx, seq) > ($1::text::xid8, $2) AND tx < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY events.tx, events.seq LIMIT $3`, fmt.Sprint(from.Commit), int64(from.Prepare), limit))
	if err != nil {
		return nil, fmt.Errorf("read all from %s: %w", from, err)
	}
	return recs, nil
}

// Head returns the position of the newest committed event.
func (s *Store) Head(ctx context.Context) (kernel.Position, error) {
	var tx string
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT tx::text AS tx_text, seq FROM events ORDER BY events.tx DESC, events.seq DESC LIMIT 1`).Scan(&tx, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return kernel.Position{}, nil
	}
	if err != nil {
		return kernel.Position{}, fmt.Errorf("head: %w", err)
	}
	return position(tx, seq)
}

// idlePoll bounds how long a subscriber waits when nothing woke it: an
// event can become readable without a notification when an older,
// unrelated transaction ends.
const idlePoll = 100 * time.Millisecond

// Subscribe delivers batches of events after from as they become readable,
// woken by local appends and by other processes' notifications.
func (s *Store) Subscribe(ctx context.Context, from kernel.Position, handle func(context.Context, []kernel.Record) error) error {
	return s.tail.Subscribe(ctx, from, handle)
}

// appendedLocally wakes this process's subscribers and asks the notifier to
// tell the other processes.
func (s *Store) appendedLocally() {
	s.tail.Wake()
	select {
	case s.notifyCh <- struct{}{}:
	default:
	}
}

const channel = "ledger_events"

// notifyEvery bounds how often this process notifies the others of its
// appends; their subscribers read from the log what came meanwhile.
const notifyEvery = 10 * time.Millisecond

// notifier tells other processes about appends (NOTIFY, coalesced) and
// wakes this process's subscribers on theirs (LISTEN).
func (s *Store) notifier() {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-s.closed; cancel() }()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.notifyCh:
				if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, '')`, channel); err != nil && ctx.Err() == nil {
					s.log.Debug("notify failed; other processes will poll", "err", err)
				}
				// A notification is a transaction with a commit to flush:
				// under load, one per notifyEvery tells the other processes
				// as much as one per append (appends meanwhile leave a
				// signal pending, sent after the pause).
				select {
				case <-ctx.Done():
				case <-time.After(notifyEvery):
				}
			}
		}
	}()
	for ctx.Err() == nil {
		if err := s.listen(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("listening for other processes' appends failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (s *Store) listen(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return err
	}
	defer func() {
		if ctx.Err() == nil {
			conn.Exec(context.Background(), "UNLISTEN "+channel)
		} else {
			conn.Conn().Close(context.Background())
		}
	}()
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			return err
		}
		s.tail.Wake()
	}
}

var (
	_ ledger.LogReader         = (*Store)(nil)
	_ projections.StreamReader = (*Store)(nil)
)

// ReadLog returns a workspace's events after q.After that match q, in global
// order, under the same rule as ReadAll: only events of transactions older
// than every running one, so resuming after a position skips nothing.
func (s *Store) ReadLog(ctx context.Context, q ledger.LogQuery) ([]kernel.Record, error) {
	args := []any{q.Workspace, strconv.FormatUint(q.After.Commit, 10), int64(q.After.Prepare)}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := []string{"workspace = $1", "(tx, seq) > ($2::text::xid8, $3::bigint)", "tx < pg_snapshot_xmin(pg_current_snapshot())"}
	if !q.Since.IsZero() {
		where = append(where, "time >= "+arg(q.Since))
	}
	if !q.Until.IsZero() {
		where = append(where, "time < "+arg(q.Until))
	}
	if len(q.Types) > 0 {
		where = append(where, "type = ANY("+arg(q.Types)+")")
	}
	if q.Actor != "" {
		where = append(where, "actor = "+arg(q.Actor))
	}
	if q.Stream != "" {
		where = append(where, "stream = "+arg(q.Stream))
	}
	recs, err := scanRecords(s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE `+strings.Join(where, " AND ")+
		` ORDER BY events.tx, events.seq LIMIT `+arg(q.Limit), args...))
	if err != nil {
		return nil, fmt.Errorf("read log of %s: %w", q.Workspace, err)
	}
	return recs, nil
}

// StableHead returns the newest position among the events of transactions
// older than every running one: every event at or before it is committed,
// and any event still to commit has a younger transaction, so it comes after.
func (s *Store) StableHead(ctx context.Context) (kernel.Position, error) {
	var tx string
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT tx::text AS tx_text, seq FROM events WHERE tx < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY events.tx DESC, events.seq DESC LIMIT 1`).Scan(&tx, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return kernel.Position{}, nil
	}
	if err != nil {
		return kernel.Position{}, fmt.Errorf("stable head: %w", err)
	}
	return position(tx, seq)
}

// ReadByStream returns events up to upTo ordered by stream and version, after (afterStream, afterVersion).
func (s *Store) ReadByStream(ctx context.Context, upTo kernel.Position, afterStream string, afterVersion uint64, limit int) ([]kernel.Record, error) {
	recs, err := scanRecords(s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events
		WHERE (stream, version) > ($1, $2) AND (tx, seq) <= ($3::text::xid8, $4::bigint)
		ORDER BY events.stream, events.version LIMIT $5`, afterStream, int64(afterVersion), strconv.FormatUint(upTo.Commit, 10), int64(upTo.Prepare), limit))
	if err != nil {
		return nil, fmt.Errorf("read by stream: %w", err)
	}
	return recs, nil
}

// CountEvents counts the events in (after, upTo].
func (s *Store) CountEvents(ctx context.Context, after, upTo kernel.Position) (int64, error) {
	ac, ap := strconv.FormatUint(after.Commit, 10), int64(after.Prepare)
	uc, up := strconv.FormatUint(upTo.Commit, 10), int64(upTo.Prepare)
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE (tx, seq) > ($1::text::xid8, $2::bigint) AND (tx, seq) <= ($3::text::xid8, $4::bigint)`,
		ac, ap, uc, up).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}
