package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

// appendBatch appends the sound streams of batch (errs[i] == nil) in tx,
// with keys[i] when keys is set, and fills out with each stream's outcome:
// the batched append's rules (see kernel.BatchAppender). Every stream's
// version and workspace are checked in one query, the keys already taken
// in another; then the keys and events of the streams that pass go in with
// a few multi-row statements. Should those fail (which the checks make
// unexpected), the streams are appended one by one, each in a savepoint.
// Only a failure of the store is an error.
//
// claims, when set, are the identity claims of each stream's contact: a
// stream one of whose values another contact has claimed (or an earlier
// stream of the batch claims) fails with ledger.ErrClaimTaken, and the
// claims of the streams appended go in with them.
func appendBatch(ctx context.Context, tx *sql.Tx, batch []kernel.StreamAppend, keys []ledger.KeyRow, claims [][]ledger.IdentityClaim, errs []error, out []kernel.AppendResult) error {
	var sound []int
	for i := range batch {
		if errs[i] != nil {
			out[i].Err = errs[i]
		} else {
			sound = append(sound, i)
		}
	}
	if len(sound) == 0 {
		return nil
	}
	streams := make([]string, len(sound))
	for k, i := range sound {
		streams[k] = batch[i].Stream
	}
	heads, err := streamHeads(ctx, tx, streams)
	if err != nil {
		return err
	}
	var pass []int
	var owners []string
	for _, i := range sound {
		a, h := batch[i], heads[batch[i].Stream]
		switch {
		case h.workspace != "" && h.workspace != a.Events[0].Workspace:
			out[i].Err = kernel.ErrNotFound
		case h.version != a.Expected:
			out[i].Err = kernel.Errorf(kernel.ErrConcurrency, "stream is at version %d, not %d", h.version, a.Expected)
		default:
			pass = append(pass, i)
			if keys != nil && keys[i].Owner != "" {
				owners = append(owners, keys[i].Owner)
			}
		}
	}
	if len(owners) > 0 {
		taken, err := takenOwners(ctx, tx, owners)
		if err != nil {
			return err
		}
		pass = filter(pass, func(i int) bool {
			if taken[keys[i].Owner] {
				out[i].Err = kernel.Errorf(kernel.ErrAlreadyExists, "a key for this owner exists")
				return false
			}
			return true
		})
	}
	if claims != nil {
		if pass, err = unclaimed(ctx, tx, claims, pass, out); err != nil {
			return err
		}
	}
	if len(pass) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT batch"); err != nil {
		return err
	}
	positions, err := insertBatch(ctx, tx, batch, keys, pass)
	if err != nil {
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO batch"); rerr != nil {
			return rerr
		}
	}
	if _, rerr := tx.ExecContext(ctx, "RELEASE batch"); rerr != nil {
		return rerr
	}
	if err != nil {
		if err := appendEachTx(ctx, tx, batch, keys, pass, out); err != nil {
			return err
		}
	} else {
		for _, i := range pass {
			out[i].Position = seq(positions[batch[i].Stream])
		}
	}
	if claims == nil {
		return nil
	}
	var rows [][]any
	for _, i := range pass {
		if out[i].Err == nil {
			for _, c := range claims[i] {
				rows = append(rows, []any{c.Workspace, c.Kind, c.Index, c.Contact.String(), micros(c.At)})
			}
		}
	}
	return insertRows(ctx, tx, `INSERT INTO identity_claims (workspace, kind, bidx, contact_id, claimed_at) VALUES `,
		` ON CONFLICT (workspace, kind, bidx) DO NOTHING`, rows, nil)
}

// unclaimed returns the streams of pass none of whose claims another
// contact holds, or an earlier stream of pass claims; the others fail
// with ledger.ErrClaimTaken.
func unclaimed(ctx context.Context, tx *sql.Tx, claims [][]ledger.IdentityClaim, pass []int, out []kernel.AppendResult) ([]int, error) {
	type value struct{ workspace, kind, index string }
	seen := map[value]bool{}
	var keep []int
	for _, i := range pass {
		taken := false
		for _, c := range claims[i] {
			if seen[value{c.Workspace, c.Kind, c.Index}] {
				taken = true
				break
			}
			cur, err := scanClaim(tx.QueryRowContext(ctx, claimQuery, c.Workspace, c.Kind, c.Index))
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return nil, err
			}
			if err == nil && cur.Contact != c.Contact {
				taken = true
				break
			}
		}
		if taken {
			out[i].Err = ledger.ErrClaimTaken
			continue
		}
		for _, c := range claims[i] {
			seen[value{c.Workspace, c.Kind, c.Index}] = true
		}
		keep = append(keep, i)
	}
	return keep, nil
}

// head is where a stream is: its last version and its workspace ("" and
// 0 for a stream that does not exist).
type head struct {
	version   uint64
	workspace string
}

// streamHeads returns the head of each stream, each a probe of the
// (stream, version) index.
func streamHeads(ctx context.Context, tx *sql.Tx, streams []string) (map[string]head, error) {
	list, _ := json.Marshal(streams)
	rows, err := tx.QueryContext(ctx, `SELECT q.value,
		COALESCE((SELECT MAX(version) FROM events WHERE stream = q.value), 0),
		COALESCE((SELECT workspace FROM events WHERE stream = q.value ORDER BY version LIMIT 1), '')
		FROM json_each(?) q`, string(list))
	if err != nil {
		return nil, fmt.Errorf("append to %d streams: %w", len(streams), err)
	}
	defer rows.Close()
	out := make(map[string]head, len(streams))
	for rows.Next() {
		var s string
		var h head
		if err := rows.Scan(&s, &h.version, &h.workspace); err != nil {
			return nil, err
		}
		out[s] = h
	}
	return out, rows.Err()
}

// takenOwners returns which of owners already have a key.
func takenOwners(ctx context.Context, tx *sql.Tx, owners []string) (map[string]bool, error) {
	list, _ := json.Marshal(owners)
	rows, err := tx.QueryContext(ctx, `SELECT owner FROM data_keys WHERE owner IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			return nil, err
		}
		out[o] = true
	}
	return out, rows.Err()
}

// insertBatch inserts the keys and events of the streams pass names, a
// few dozen rows a statement, and returns each stream's last position.
func insertBatch(ctx context.Context, tx *sql.Tx, batch []kernel.StreamAppend, keys []ledger.KeyRow, pass []int) (map[string]int64, error) {
	var keyRows, eventRows [][]any
	for _, i := range pass {
		if keys != nil && keys[i].Owner != "" {
			k := keys[i]
			keyRows = append(keyRows, []any{k.Owner, k.Workspace, k.KeyID, k.KEKID, k.Wrapped, micros(k.CreatedAt)})
		}
		for _, e := range batch[i].Events {
			eventRows = append(eventRows, []any{e.ID[:], e.Stream, e.Version, e.Type, micros(e.Time), e.Workspace, e.Actor.Principal,
				string(e.Actor.Role), e.CorrelationID, e.CausationID, e.Schema, e.Data, e.Sealed, e.PrevHash, e.Hash})
		}
	}
	if err := insertRows(ctx, tx, `INSERT INTO data_keys (owner, workspace, key_id, kek_id, wrapped, created_at) VALUES `, "", keyRows, nil); err != nil {
		return nil, err
	}
	positions := make(map[string]int64, len(pass))
	err := insertRows(ctx, tx, `INSERT INTO events (id, stream, version, type, time, workspace, actor, actor_role,
		correlation_id, causation_id, schema, data, sealed, prev_hash, hash) VALUES `, ` RETURNING stream, position`, eventRows,
		func(rows *sql.Rows) error {
			var s string
			var p int64
			if err := rows.Scan(&s, &p); err != nil {
				return err
			}
			positions[s] = max(positions[s], p)
			return nil
		})
	return positions, err
}

// Row counts of the multi-row inserts: a few sizes, so that each is one
// statement of the connection's cache.
var insertSizes = []int{64, 8, 1}

// insertRows inserts rows with statements of insertSizes rows each (the
// largest that fit), reading each statement's RETURNING rows with scan.
func insertRows(ctx context.Context, tx *sql.Tx, prefix, returning string, rows [][]any, scan func(*sql.Rows) error) error {
	for len(rows) > 0 {
		n := insertSizes[len(insertSizes)-1]
		for _, size := range insertSizes {
			if size <= len(rows) {
				n = size
				break
			}
		}
		part := rows[:n]
		rows = rows[n:]
		one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(part[0])), ", ") + ")"
		q := prefix + strings.TrimSuffix(strings.Repeat(one+", ", n), ", ") + returning
		args := make([]any, 0, n*len(part[0]))
		for _, r := range part {
			args = append(args, r...)
		}
		if scan == nil {
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
			continue
		}
		res, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		for res.Next() {
			if err := scan(res); err != nil {
				res.Close()
				return err
			}
		}
		res.Close()
		if err := res.Err(); err != nil {
			return err
		}
	}
	return nil
}

// appendEachTx appends the streams pass names one by one, each in its own
// savepoint (with its key, when keys is set), filling out with each
// stream's outcome.
func appendEachTx(ctx context.Context, tx *sql.Tx, batch []kernel.StreamAppend, keys []ledger.KeyRow, pass []int, out []kernel.AppendResult) error {
	for _, i := range pass {
		a := batch[i]
		if _, err := tx.ExecContext(ctx, "SAVEPOINT stream"); err != nil {
			return err
		}
		var last int64
		var err error
		if keys != nil && keys[i].Owner != "" {
			k := keys[i]
			_, err = tx.ExecContext(ctx, `INSERT INTO data_keys (owner, workspace, key_id, kek_id, wrapped, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
				k.Owner, k.Workspace, k.KeyID, k.KEKID, k.Wrapped, micros(k.CreatedAt))
			if isConstraint(err) {
				err = kernel.Errorf(kernel.ErrAlreadyExists, "a key for this owner exists")
			}
		}
		if err == nil {
			last, err = appendTx(ctx, tx, a.Stream, a.Expected, a.Events)
		}
		if err != nil {
			if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO stream"); rerr != nil {
				return rerr
			}
			out[i].Err = err
		} else {
			out[i].Position = seq(last)
		}
		if _, err := tx.ExecContext(ctx, "RELEASE stream"); err != nil {
			return err
		}
	}
	return nil
}

func filter(s []int, keep func(int) bool) []int {
	out := s[:0]
	for _, v := range s {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}
