package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
	"github.com/oklog/ulid/v2"
)

var _ kernel.EventStore = (*Store)(nil)

const eventColumns = `position, id, stream, version, type, time, workspace, actor, actor_role,
	correlation_id, causation_id, schema, data, sealed, prev_hash, hash`

// Append appends events to stream at the expected version, atomically.
func (s *Store) Append(ctx context.Context, stream string, expected uint64, events []kernel.Record) (kernel.Position, error) {
	if err := kernel.Validate(stream, expected, events); err != nil {
		return kernel.Position{}, err
	}
	var last int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		last, err = appendTx(ctx, tx, stream, expected, events)
		return err
	}, s.tail.Wake)
	if err != nil {
		return kernel.Position{}, err
	}
	return seq(last), nil
}

var _ kernel.BatchAppender = (*Store)(nil)

// AppendMany appends to many streams in one write of the single writer, so
// they share one commit (see kernel.BatchAppender and appendBatch).
func (s *Store) AppendMany(ctx context.Context, batch []kernel.StreamAppend) ([]kernel.AppendResult, error) {
	return s.appendBatch(ctx, batch, nil, nil)
}

var _ ledger.KeyedAppender = (*Store)(nil)

// AppendWithKeys stores each new contact's key with its stream's append,
// in one write of the single writer: a create is one commit, not two.
func (s *Store) AppendWithKeys(ctx context.Context, keys []ledger.KeyRow, batch []kernel.StreamAppend) ([]kernel.AppendResult, error) {
	if len(keys) != len(batch) {
		return nil, fmt.Errorf("append with keys: %d keys for %d streams", len(keys), len(batch))
	}
	return s.appendBatch(ctx, batch, keys, nil)
}

var _ ledger.ClaimedAppender = (*Store)(nil)

// AppendClaimed stores each new contact's key (keys may be nil) and each
// stream's identity claims with its append, in one write of the single
// writer: a batch's claims cost no commit of their own, and a stream that
// is not appended leaves none behind.
func (s *Store) AppendClaimed(ctx context.Context, keys []ledger.KeyRow, claims [][]ledger.IdentityClaim, batch []kernel.StreamAppend) ([]kernel.AppendResult, error) {
	if (keys != nil && len(keys) != len(batch)) || len(claims) != len(batch) {
		return nil, fmt.Errorf("append claimed: %d keys and %d claim lists for %d streams", len(keys), len(claims), len(batch))
	}
	if claims == nil {
		claims = [][]ledger.IdentityClaim{}
	}
	return s.appendBatch(ctx, batch, keys, claims)
}

// appendBatch appends a batch (with keys and claims, when set) in one write.
func (s *Store) appendBatch(ctx context.Context, batch []kernel.StreamAppend, keys []ledger.KeyRow, claims [][]ledger.IdentityClaim) ([]kernel.AppendResult, error) {
	errs, err := kernel.CheckBatch(batch)
	if err != nil {
		return nil, err
	}
	out := make([]kernel.AppendResult, len(batch))
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return appendBatch(ctx, tx, batch, keys, claims, errs, out)
	}, s.tail.Wake)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// appendTx checks stream's version and inserts its events in tx; it
// returns the position of the last one.
func appendTx(ctx context.Context, tx *sql.Tx, stream string, expected uint64, events []kernel.Record) (int64, error) {
	var cur uint64
	var ws sql.NullString
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0), MIN(workspace) FROM events WHERE stream = ?`, stream).Scan(&cur, &ws); err != nil {
		return 0, fmt.Errorf("append to %s: %w", stream, err)
	}
	if ws.Valid && ws.String != events[0].Workspace {
		return 0, kernel.ErrNotFound
	}
	if cur != expected {
		return 0, kernel.Errorf(kernel.ErrConcurrency, "stream is at version %d, not %d", cur, expected)
	}
	var last int64
	for _, e := range events {
		res, err := tx.ExecContext(ctx, `INSERT INTO events (id, stream, version, type, time, workspace, actor, actor_role,
			correlation_id, causation_id, schema, data, sealed, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.ID[:], e.Stream, e.Version, e.Type, micros(e.Time), e.Workspace, e.Actor.Principal, string(e.Actor.Role),
			e.CorrelationID, e.CausationID, e.Schema, e.Data, e.Sealed, e.PrevHash, e.Hash)
		if err != nil {
			return 0, fmt.Errorf("append to %s: %w", stream, err)
		}
		if last, err = res.LastInsertId(); err != nil {
			return 0, err
		}
	}
	return last, nil
}

func seq(n int64) kernel.Position { return kernel.Position{Commit: uint64(n), Prepare: uint64(n)} }

type scanner interface{ Scan(dest ...any) error }

func scanRecord(row scanner) (kernel.Record, error) {
	var (
		r       kernel.Record
		pos     int64
		id      []byte
		t       int64
		role    string
		version int64
	)
	if err := row.Scan(&pos, &id, &r.Stream, &version, &r.Type, &t, &r.Workspace, &r.Actor.Principal, &role,
		&r.CorrelationID, &r.CausationID, &r.Schema, &r.Data, &r.Sealed, &r.PrevHash, &r.Hash); err != nil {
		return kernel.Record{}, err
	}
	if len(id) != len(ulid.ULID{}) {
		return kernel.Record{}, fmt.Errorf("event at position %d has a malformed id", pos)
	}
	copy(r.ID[:], id)
	r.Position, r.Version, r.Time, r.Actor.Role = seq(pos), uint64(version), fromMicros(t), kernel.Role(role)
	return r, nil
}

func collect(rows *sql.Rows, err error) ([]kernel.Record, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []kernel.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

var _ kernel.MultiReader = (*Store)(nil)

// ReadStreams returns the events of many streams of the workspace, in one
// query. "+workspace" keeps SQLite (which has no statistics) from walking
// the whole workspace: each stream is looked up by its own index.
func (s *Store) ReadStreams(ctx context.Context, workspace string, streams []string) (map[string][]kernel.Record, error) {
	out := make(map[string][]kernel.Record, len(streams))
	if len(streams) == 0 {
		return out, nil
	}
	list, _ := json.Marshal(streams)
	recs, err := collect(s.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events
		WHERE +workspace = ? AND stream IN (SELECT value FROM json_each(?)) ORDER BY stream, version`, workspace, string(list)))
	if err != nil {
		return nil, fmt.Errorf("read %d streams: %w", len(streams), err)
	}
	for _, r := range recs {
		out[r.Stream] = append(out[r.Stream], r)
	}
	return out, nil
}

// ReadStream returns a stream's events in the workspace, in version order.
// Streams can be long (every change of a contact is an event), so it reads
// only what it doesn't know already and shares the strings that repeat.
func (s *Store) ReadStream(ctx context.Context, workspace, stream string) ([]kernel.Record, error) {
	out, err := s.readStream(ctx, workspace, stream, 0)
	if err == nil && len(out) == 0 {
		return nil, kernel.ErrNotFound
	}
	return out, err
}

// ReadStreamAfter returns a stream's events with a version above after.
func (s *Store) ReadStreamAfter(ctx context.Context, workspace, stream string, after uint64) ([]kernel.Record, error) {
	return s.readStream(ctx, workspace, stream, after)
}

func (s *Store) readStream(ctx context.Context, workspace, stream string, after uint64) ([]kernel.Record, error) {
	// The stream's newest version comes with the rows (SQLite evaluates the
	// subquery once), so that a long history is read into a slice of its
	// size: growing it by doubling cost a sixth of reading 10,000 events.
	rows, err := s.r.QueryContext(ctx, `SELECT position, id, version, type, time, actor, actor_role, correlation_id, causation_id,
		schema, data, sealed, prev_hash, hash, (SELECT MAX(version) FROM events WHERE stream = ?)
		FROM events WHERE stream = ? AND workspace = ? AND version > ? ORDER BY version`, stream, stream, workspace, int64(after))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	defer rows.Close()
	var (
		out    []kernel.Record
		strs   = map[string]string{}
		intern = func(b sql.RawBytes) string {
			if v, ok := strs[string(b)]; ok {
				return v
			}
			v := string(b)
			strs[v] = v
			return v
		}
		typ, actor, role, corr, caus sql.RawBytes
		last                         int64
	)
	for rows.Next() {
		var (
			r       = kernel.Record{Stream: stream, Workspace: workspace}
			pos, t  int64
			version int64
			id      sql.RawBytes
		)
		if err := rows.Scan(&pos, &id, &version, &typ, &t, &actor, &role, &corr, &caus, &r.Schema, &r.Data, &r.Sealed, &r.PrevHash, &r.Hash, &last); err != nil {
			return nil, fmt.Errorf("read %s: %w", stream, err)
		}
		if out == nil && last > int64(after) {
			out = make([]kernel.Record, 0, last-int64(after))
		}
		if len(id) != len(ulid.ULID{}) {
			return nil, fmt.Errorf("event at position %d has a malformed id", pos)
		}
		copy(r.ID[:], id)
		r.Position, r.Version, r.Time = seq(pos), uint64(version), fromMicros(t)
		r.Type, r.Actor.Principal, r.Actor.Role = intern(typ), intern(actor), kernel.Role(intern(role))
		r.CorrelationID, r.CausationID = intern(corr), intern(caus)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	return out, nil
}

// ReadAll returns up to limit events after from, in global order.
func (s *Store) ReadAll(ctx context.Context, from kernel.Position, limit int) ([]kernel.Record, error) {
	recs, err := collect(s.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events WHERE position > ? ORDER BY position LIMIT ?`, int64(from.Commit), limit))
	if err != nil {
		return nil, fmt.Errorf("read all from %s: %w", from, err)
	}
	return recs, nil
}

// Head returns the position of the newest event.
func (s *Store) Head(ctx context.Context) (kernel.Position, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(position), 0) FROM events`).Scan(&n); err != nil {
		return kernel.Position{}, fmt.Errorf("head: %w", err)
	}
	return seq(n), nil
}

// pollInterval is how often a subscriber looks for events appended by another process.
const pollInterval = 200 * time.Millisecond

// Subscribe delivers batches of events after from as they are committed,
// woken by this process's appends and polling for other processes'.
func (s *Store) Subscribe(ctx context.Context, from kernel.Position, handle func(context.Context, []kernel.Record) error) error {
	return s.tail.Subscribe(ctx, from, handle)
}

// isConstraint reports whether err is a uniqueness violation.
func isConstraint(err error) bool {
	var e interface{ Code() int }
	// SQLITE_CONSTRAINT is 19; its extended codes keep 19 in the low byte.
	return errors.As(err, &e) && e.Code()&0xff == 19
}

var (
	_ ledger.LogReader         = (*Store)(nil)
	_ projections.StreamReader = (*Store)(nil)
)

// ReadLog returns a workspace's events after q.After that match q, in global order.
func (s *Store) ReadLog(ctx context.Context, q ledger.LogQuery) ([]kernel.Record, error) {
	where := []string{"workspace = ?", "position > ?"}
	args := []any{q.Workspace, int64(q.After.Commit)}
	if !q.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, micros(q.Since))
	}
	if !q.Until.IsZero() {
		where, args = append(where, "time < ?"), append(args, micros(q.Until))
	}
	if len(q.Types) > 0 {
		list, _ := json.Marshal(q.Types)
		where, args = append(where, "type IN (SELECT value FROM json_each(?))"), append(args, string(list))
	}
	if q.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, q.Actor)
	}
	if q.Stream != "" {
		// One contact's events: walk its stream, not the whole workspace.
		where, args = append(where, "likelihood(stream = ?, 0.000001)"), append(args, q.Stream)
	}
	args = append(args, q.Limit)
	recs, err := collect(s.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events WHERE `+strings.Join(where, " AND ")+` ORDER BY position LIMIT ?`, args...))
	if err != nil {
		return nil, fmt.Errorf("read log of %s: %w", q.Workspace, err)
	}
	return recs, nil
}

// StableHead returns the head: the single writer commits positions in order.
func (s *Store) StableHead(ctx context.Context) (kernel.Position, error) { return s.Head(ctx) }

// ReadByStream returns events up to upTo ordered by stream and version, after (afterStream, afterVersion).
func (s *Store) ReadByStream(ctx context.Context, upTo kernel.Position, afterStream string, afterVersion uint64, limit int) ([]kernel.Record, error) {
	recs, err := collect(s.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events
		WHERE (stream, version) > (?, ?) AND position <= ? ORDER BY stream, version LIMIT ?`,
		afterStream, int64(afterVersion), int64(upTo.Commit), limit))
	if err != nil {
		return nil, fmt.Errorf("read by stream: %w", err)
	}
	return recs, nil
}

// CountEvents counts the events in (after, upTo].
func (s *Store) CountEvents(ctx context.Context, after, upTo kernel.Position) (int64, error) {
	var n int64
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE position > ? AND position <= ?`, int64(after.Commit), int64(upTo.Commit)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}
