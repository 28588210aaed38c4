package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/contactledger/ledger/ledger"
)

var _ ledger.IdempotencyStore = (*Store)(nil)

// ClaimIdempotency returns the record of (workspace, key), creating a
// pending one when there is none, when it expired, or when a pending one's
// lock ran out.
func (s *Store) ClaimIdempotency(ctx context.Context, rec ledger.Idempotency) (ledger.Idempotency, bool, error) {
	var (
		out     ledger.Idempotency
		claimed bool
	)
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		cur, err := scanIdempotency(tx.QueryRowContext(ctx, `SELECT workspace, key, fingerprint, done, locked_until, status, header, body, contact_id, created_at, expires_at
			FROM idempotency WHERE workspace = ? AND key = ?`, rec.Workspace, rec.Key))
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case cur.ExpiresAt.Before(rec.CreatedAt):
			if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE workspace = ? AND key = ?`, rec.Workspace, rec.Key); err != nil {
				return err
			}
		case !cur.Done && cur.LockedUntil.Before(rec.CreatedAt):
			// The claim's request died with its process: take it over,
			// keeping when it was first claimed (a create derives its id from it).
			if _, err := tx.ExecContext(ctx, `UPDATE idempotency SET locked_until = ? WHERE workspace = ? AND key = ?`,
				micros(rec.LockedUntil), rec.Workspace, rec.Key); err != nil {
				return err
			}
			cur.LockedUntil = rec.LockedUntil
			out, claimed = cur, true
			return nil
		default:
			out = cur
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO idempotency (workspace, key, fingerprint, done, locked_until, status, header, body, contact_id, created_at, expires_at)
			VALUES (?, ?, ?, 0, ?, 0, '{}', NULL, '', ?, ?)`, rec.Workspace, rec.Key, rec.Fingerprint, micros(rec.LockedUntil), micros(rec.CreatedAt), micros(rec.ExpiresAt))
		out, claimed = rec, true
		return err
	}, nil)
	return out, claimed, err
}

func scanIdempotency(row scanner) (ledger.Idempotency, error) {
	var (
		r                            ledger.Idempotency
		done                         int
		header                       string
		locked, created, expiresAtUs int64
	)
	if err := row.Scan(&r.Workspace, &r.Key, &r.Fingerprint, &done, &locked, &r.Status, &header, &r.Body, &r.ContactID, &created, &expiresAtUs); err != nil {
		return ledger.Idempotency{}, err
	}
	if err := json.Unmarshal([]byte(header), &r.Header); err != nil {
		return ledger.Idempotency{}, err
	}
	r.Done, r.LockedUntil, r.CreatedAt, r.ExpiresAt = done == 1, fromMicros(locked), fromMicros(created), fromMicros(expiresAtUs)
	return r, nil
}

// CompleteIdempotency stores the outcome of a claimed key.
func (s *Store) CompleteIdempotency(ctx context.Context, rec ledger.Idempotency) error {
	header, err := json.Marshal(rec.Header)
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE idempotency SET fingerprint = ?, done = 1, status = ?, header = ?, body = ?, contact_id = ?
			WHERE workspace = ? AND key = ?`, rec.Fingerprint, rec.Status, string(header), rec.Body, rec.ContactID, rec.Workspace, rec.Key)
		return err
	}, nil)
}

// ReleaseIdempotency forgets a pending key.
func (s *Store) ReleaseIdempotency(ctx context.Context, workspace, key string) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE workspace = ? AND key = ? AND done = 0`, workspace, key)
		return err
	}, nil)
}

// ExpireIdempotency deletes the records that expired before now.
func (s *Store) ExpireIdempotency(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE expires_at < ?`, micros(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	}, nil)
	return int(n), err
}
