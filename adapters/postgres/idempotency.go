package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/contactledger/ledger/ledger"
	"github.com/jackc/pgx/v5"
)

var _ ledger.IdempotencyStore = (*Store)(nil)

// ClaimIdempotency returns the record of (workspace, key), creating a
// pending one when there is none, when it expired, or when a pending one's
// lock ran out. Concurrent claims meet at the primary key.
func (s *Store) ClaimIdempotency(ctx context.Context, rec ledger.Idempotency) (ledger.Idempotency, bool, error) {
	var (
		out     ledger.Idempotency
		claimed bool
	)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// A dead claim (its lock ran out) is taken over keeping when it was
		// first claimed, since a create derives its id from it; an expired
		// record is replaced.
		var created time.Time
		err := tx.QueryRow(ctx, `INSERT INTO idempotency (workspace, key, fingerprint, done, locked_until, status, header, body, contact_id, created_at, expires_at)
			VALUES ($1, $2, $3, false, $4, 0, '{}', NULL, '', $5, $6)
			ON CONFLICT (workspace, key) DO UPDATE SET
				fingerprint = CASE WHEN idempotency.expires_at < excluded.created_at THEN excluded.fingerprint ELSE idempotency.fingerprint END,
				done = false, locked_until = excluded.locked_until, status = 0, header = '{}', body = NULL, contact_id = '',
				created_at = CASE WHEN idempotency.expires_at < excluded.created_at THEN excluded.created_at ELSE idempotency.created_at END,
				expires_at = CASE WHEN idempotency.expires_at < excluded.created_at THEN excluded.expires_at ELSE idempotency.expires_at END
			WHERE idempotency.expires_at < excluded.created_at OR (NOT idempotency.done AND idempotency.locked_until < excluded.created_at)
			RETURNING created_at`,
			rec.Workspace, rec.Key, rec.Fingerprint, rec.LockedUntil, rec.CreatedAt, rec.ExpiresAt).Scan(&created)
		if err == nil {
			out, claimed = rec, true
			out.CreatedAt = created.UTC()
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		var r ledger.Idempotency
		err = tx.QueryRow(ctx, `SELECT workspace, key, fingerprint, done, locked_until, status, header, body, contact_id, created_at, expires_at
			FROM idempotency WHERE workspace = $1 AND key = $2`, rec.Workspace, rec.Key).
			Scan(&r.Workspace, &r.Key, &r.Fingerprint, &r.Done, &r.LockedUntil, &r.Status, &r.Header, &r.Body, &r.ContactID, &r.CreatedAt, &r.ExpiresAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return errors.New("idempotency record vanished during its claim")
		}
		r.LockedUntil, r.CreatedAt, r.ExpiresAt = r.LockedUntil.UTC(), r.CreatedAt.UTC(), r.ExpiresAt.UTC()
		out = r
		return err
	})
	return out, claimed, err
}

// CompleteIdempotency stores the outcome of a claimed key.
func (s *Store) CompleteIdempotency(ctx context.Context, rec ledger.Idempotency) error {
	header := rec.Header
	if header == nil {
		header = map[string]string{}
	}
	_, err := s.pool.Exec(ctx, `UPDATE idempotency SET fingerprint = $1, done = true, status = $2, header = $3, body = $4, contact_id = $5
		WHERE workspace = $6 AND key = $7`, rec.Fingerprint, rec.Status, header, rec.Body, rec.ContactID, rec.Workspace, rec.Key)
	return err
}

// ReleaseIdempotency forgets a pending key.
func (s *Store) ReleaseIdempotency(ctx context.Context, workspace, key string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM idempotency WHERE workspace = $1 AND key = $2 AND NOT done`, workspace, key)
	return err
}

// ExpireIdempotency deletes the records that expired before now.
func (s *Store) ExpireIdempotency(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency WHERE expires_at < $1`, now)
	return int(tag.RowsAffected()), err
}
