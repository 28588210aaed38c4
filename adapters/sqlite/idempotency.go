package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/ledger"
)

var _ ledger.IdempotencyStore = (*Store)(nil)

const idempotencyColumns = `workspace, principal, key, fingerprint, done, locked_until, status, header, body, contact_id, erased_by, created_at, expires_at`

// ClaimIdempotency returns the record of (workspace, principal, key), or
// the unscoped one stored before keys belonged to tokens, creating a
// pending one when there is none, when it expired, or when a pending one's
// lock ran out and its request's fingerprint (when both are known) is rec's.
func (s *Store) ClaimIdempotency(ctx context.Context, rec ledger.Idempotency) (ledger.Idempotency, bool, error) {
	var (
		out     ledger.Idempotency
		claimed bool
	)
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		// The caller's own record, or an unscoped one (stored before keys
		// belonged to tokens), which is answered as it is, never claimed.
		cur, err := scanIdempotency(tx.QueryRowContext(ctx, `SELECT `+idempotencyColumns+`
			FROM idempotency WHERE workspace = ? AND key = ? AND principal IN (?, '') ORDER BY principal LIMIT 1`,
			rec.Workspace, rec.Key, rec.Principal))
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err == nil && cur.Principal == "" && rec.Principal != "":
			out = cur
			return nil
		case err != nil:
			return err
		case cur.ExpiresAt.Before(rec.CreatedAt):
			if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE workspace = ? AND key = ? AND principal = ?`, rec.Workspace, rec.Key, cur.Principal); err != nil {
				return err
			}
		case !cur.Done && cur.LockedUntil.Before(rec.CreatedAt) && sameFingerprint(cur.Fingerprint, rec.Fingerprint):
			// The claim's request died with its process: take it over,
			// keeping when it was first claimed (a create derives its id
			// from it).
			fp := cur.Fingerprint
			if fp == nil {
				fp = rec.Fingerprint
			}
			if _, err := tx.ExecContext(ctx, `UPDATE idempotency SET locked_until = ?, fingerprint = ? WHERE workspace = ? AND key = ? AND principal = ?`,
				micros(rec.LockedUntil), fp, rec.Workspace, rec.Key, cur.Principal); err != nil {
				return err
			}
			cur.LockedUntil, cur.Fingerprint = rec.LockedUntil, fp
			out, claimed = cur, true
			return nil
		default:
			out = cur
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO idempotency (`+idempotencyColumns+`)
			VALUES (?, ?, ?, ?, 0, ?, 0, '{}', NULL, '', '', ?, ?)`, rec.Workspace, rec.Principal, rec.Key, rec.Fingerprint,
			micros(rec.LockedUntil), micros(rec.CreatedAt), micros(rec.ExpiresAt))
		out, claimed = rec, true
		return err
	}, nil)
	return out, claimed, err
}

// sameFingerprint reports whether two fingerprints may be of one request:
// equal, or one of them not known yet.
func sameFingerprint(a, b []byte) bool { return a == nil || b == nil || bytes.Equal(a, b) }

func scanIdempotency(row scanner) (ledger.Idempotency, error) {
	var (
		r                            ledger.Idempotency
		done                         int
		header                       string
		locked, created, expiresAtUs int64
	)
	if err := row.Scan(&r.Workspace, &r.Principal, &r.Key, &r.Fingerprint, &done, &locked, &r.Status, &header, &r.Body, &r.ContactID, &r.ErasedBy,
		&created, &expiresAtUs); err != nil {
		return ledger.Idempotency{}, err
	}
	if err := json.Unmarshal([]byte(header), &r.Header); err != nil {
		return ledger.Idempotency{}, err
	}
	r.Done, r.LockedUntil, r.CreatedAt, r.ExpiresAt = done == 1, fromMicros(locked), fromMicros(created), fromMicros(expiresAtUs)
	return r, nil
}

// SetIdempotencyFingerprint records a claimed key's fingerprint unless one is.
func (s *Store) SetIdempotencyFingerprint(ctx context.Context, workspace, principal, key string, fp []byte) (bool, error) {
	var same bool
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var cur []byte
		err := tx.QueryRowContext(ctx, `SELECT fingerprint FROM idempotency WHERE workspace = ? AND key = ? AND principal = ?`,
			workspace, key, principal).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			same = true
			return nil
		}
		if err != nil {
			return err
		}
		if cur != nil {
			same = bytes.Equal(cur, fp)
			return nil
		}
		same = true
		_, err = tx.ExecContext(ctx, `UPDATE idempotency SET fingerprint = ? WHERE workspace = ? AND key = ? AND principal = ?`, fp, workspace, key, principal)
		return err
	}, nil)
	return same, err
}

// CompleteIdempotency stores the outcome of a claimed key.
func (s *Store) CompleteIdempotency(ctx context.Context, rec ledger.Idempotency) error {
	header, err := json.Marshal(rec.Header)
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		// An answer about a contact whose key is gone (erased while the
		// answer was on its way) keeps ids only.
		status, body := rec.Status, rec.Body
		if rec.ContactID != "" {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM data_keys WHERE workspace = ? AND owner = ?`, rec.Workspace, rec.ContactID).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				status, body, header = 0, nil, []byte("{}")
			}
		}
		_, err := tx.ExecContext(ctx, `UPDATE idempotency SET fingerprint = ?, done = 1, status = ?, header = ?, body = ?, contact_id = ?
			WHERE workspace = ? AND key = ? AND principal = ?`, rec.Fingerprint, status, string(header), body, rec.ContactID,
			rec.Workspace, rec.Key, rec.Principal)
		return err
	}, nil)
}

// ReleaseIdempotency forgets a pending key.
func (s *Store) ReleaseIdempotency(ctx context.Context, workspace, principal, key string) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE workspace = ? AND key = ? AND principal = ? AND done = 0`, workspace, key, principal)
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

// EraseIdempotency strips the stored answers about an erased contact to ids.
func (s *Store) EraseIdempotency(ctx context.Context, workspace string, id contact.ID, tombstone string) (int, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		n, err = eraseAnswers(ctx, tx, workspace, id.String(), tombstone)
		return err
	}, nil)
	return int(n), err
}

// eraseAnswers strips, in tx, the stored answers about a contact. The rows
// are deleted and written anew with ids only: an UPDATE that shrinks a cell
// left fragments of the old answer in the page's free space (seen by
// TestErasureUnderLoad), while a DELETE under secure_delete zeroes the
// whole cell. An empty tombstone (the key's destruction, before the
// projection names it) keeps a tombstone named before.
func eraseAnswers(ctx context.Context, tx *sql.Tx, workspace, id, tombstone string) (int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+idempotencyColumns+` FROM idempotency
		WHERE workspace = ?1 AND contact_id = ?2 AND (body IS NOT NULL OR (?3 <> '' AND erased_by <> ?3))`, workspace, id, tombstone)
	if err != nil {
		return 0, err
	}
	var recs []ledger.Idempotency
	for rows.Next() {
		r, err := scanIdempotency(rows)
		if err != nil {
			rows.Close()
			return 0, err
		}
		recs = append(recs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, r := range recs {
		if tombstone != "" {
			r.ErasedBy = tombstone
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE workspace = ? AND key = ? AND principal = ?`, r.Workspace, r.Key, r.Principal); err != nil {
			return 0, err
		}
		done := 0
		if r.Done {
			done = 1
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO idempotency (`+idempotencyColumns+`) VALUES (?, ?, ?, ?, ?, ?, 0, '{}', NULL, ?, ?, ?, ?)`,
			r.Workspace, r.Principal, r.Key, r.Fingerprint, done, micros(r.LockedUntil), r.ContactID, r.ErasedBy, micros(r.CreatedAt), micros(r.ExpiresAt)); err != nil {
			return 0, err
		}
	}
	return int64(len(recs)), nil
}
