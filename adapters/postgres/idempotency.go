package postgres

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/ledger"
	"github.com/jackc/pgx/v5"
)

var _ ledger.IdempotencyStore = (*Store)(nil)

const idempotencyColumns = `workspace, principal, key, fingerprint, done, locked_until, status, header, body, contact_id, erased_by, created_at, expires_at`

// ClaimIdempotency returns the record of (workspace, principal, key), or
// the unscoped one stored before keys belonged to tokens, creating a
// pending one when there is none, when it expired, or when a pending one's
// lock ran out and its request's fingerprint (when both are known) is rec's.
// Concurrent claims meet at the primary key.
func (s *Store) ClaimIdempotency(ctx context.Context, rec ledger.Idempotency) (ledger.Idempotency, bool, error) {
	var (
		out     ledger.Idempotency
		claimed bool
	)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// An unscoped record (stored before keys belonged to tokens) is
		// answered as it is, never claimed.
		if legacy, err := readIdempotency(ctx, tx, rec.Workspace, "", rec.Key); err == nil && !legacy.ExpiresAt.Before(rec.CreatedAt) {
			out = legacy
			return nil
		} else if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// A dead claim (its lock ran out) whose request is the same (or not
		// known) is taken over keeping when it was first claimed, since a
		// create derives its id from it; an expired record is replaced.
		var (
			created time.Time
			fp      []byte
		)
		err := tx.QueryRow(ctx, `INSERT INTO idempotency (`+idempotencyColumns+`)
			VALUES ($1, $2, $3, $4, false, $5, 0, '{}', NULL, '', '', $6, $7)
			ON CONFLICT (workspace, key, principal) DO UPDATE SET
				fingerprint = CASE WHEN idempotency.expires_at < excluded.created_at OR idempotency.fingerprint IS NULL
					THEN excluded.fingerprint ELSE idempotency.fingerprint END,
				done = false, locked_until = excluded.locked_until, status = 0, header = '{}', body = NULL, contact_id = '', erased_by = '',
				created_at = CASE WHEN idempotency.expires_at < excluded.created_at THEN excluded.created_at ELSE idempotency.created_at END,
				expires_at = CASE WHEN idempotency.expires_at < excluded.created_at THEN excluded.expires_at ELSE idempotency.expires_at END
			WHERE idempotency.expires_at < excluded.created_at OR (NOT idempotency.done AND idempotency.locked_until < excluded.created_at
				AND (idempotency.fingerprint IS NULL OR excluded.fingerprint IS NULL OR idempotency.fingerprint = excluded.fingerprint))
			RETURNING created_at, fingerprint`,
			rec.Workspace, rec.Principal, rec.Key, rec.Fingerprint, rec.LockedUntil, rec.CreatedAt, rec.ExpiresAt).Scan(&created, &fp)
		if err == nil {
			out, claimed = rec, true
			out.CreatedAt, out.Fingerprint = created.UTC(), fp
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		r, err := readIdempotency(ctx, tx, rec.Workspace, rec.Principal, rec.Key)
		if errors.Is(err, pgx.ErrNoRows) {
			return errors.New("idempotency record vanished during its claim")
		}
		out = r
		return err
	})
	return out, claimed, err
}

func readIdempotency(ctx context.Context, tx pgx.Tx, workspace, principal, key string) (ledger.Idempotency, error) {
	var r ledger.Idempotency
	err := tx.QueryRow(ctx, `SELECT `+idempotencyColumns+` FROM idempotency WHERE workspace = $1 AND key = $2 AND principal = $3`,
		workspace, key, principal).
		Scan(&r.Workspace, &r.Principal, &r.Key, &r.Fingerprint, &r.Done, &r.LockedUntil, &r.Status, &r.Header, &r.Body, &r.ContactID, &r.ErasedBy,
			&r.CreatedAt, &r.ExpiresAt)
	r.LockedUntil, r.CreatedAt, r.ExpiresAt = r.LockedUntil.UTC(), r.CreatedAt.UTC(), r.ExpiresAt.UTC()
	return r, err
}

// SetIdempotencyFingerprint records a claimed key's fingerprint unless one is.
func (s *Store) SetIdempotencyFingerprint(ctx context.Context, workspace, principal, key string, fp []byte) (bool, error) {
	var cur []byte
	err := s.pool.QueryRow(ctx, `UPDATE idempotency SET fingerprint = COALESCE(fingerprint, $4)
		WHERE workspace = $1 AND key = $2 AND principal = $3 RETURNING fingerprint`, workspace, key, principal, fp).Scan(&cur)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, nil
	}
	return bytes.Equal(cur, fp), err
}

// CompleteIdempotency stores the outcome of a claimed key.
func (s *Store) CompleteIdempotency(ctx context.Context, rec ledger.Idempotency) error {
	header := rec.Header
	if header == nil {
		header = map[string]string{}
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		// An answer about a contact whose key is gone (erased while the
		// answer was on its way) keeps ids only; FOR SHARE orders this
		// with the key's destruction (see DestroyKey).
		status, body := rec.Status, rec.Body
		if rec.ContactID != "" {
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM data_keys WHERE workspace = $1 AND owner = $2 FOR SHARE`, rec.Workspace, rec.ContactID).Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				status, body, header = 0, nil, map[string]string{}
			} else if err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `UPDATE idempotency SET fingerprint = $1, done = true, status = $2, header = $3, body = $4, contact_id = $5
			WHERE workspace = $6 AND key = $7 AND principal = $8`, rec.Fingerprint, status, header, body, rec.ContactID,
			rec.Workspace, rec.Key, rec.Principal)
		return err
	})
}

// ReleaseIdempotency forgets a pending key.
func (s *Store) ReleaseIdempotency(ctx context.Context, workspace, principal, key string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM idempotency WHERE workspace = $1 AND key = $2 AND principal = $3 AND NOT done`, workspace, key, principal)
	return err
}

// ExpireIdempotency deletes the records that expired before now.
func (s *Store) ExpireIdempotency(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency WHERE expires_at < $1`, now)
	return int(tag.RowsAffected()), err
}

// eraseAnswersSQL strips the stored answers about a contact to ids ($1
// workspace, $2 contact id, $3 tombstone event id); the old row versions
// go with the vacuum that follows every erasure.
// An empty tombstone (the key's destruction, before the projection names
// it) keeps a tombstone named before.
const eraseAnswersSQL = `UPDATE idempotency SET status = 0, header = '{}', body = NULL,
		erased_by = CASE WHEN $3 = '' THEN erased_by ELSE $3 END
	WHERE workspace = $1 AND contact_id = $2 AND (body IS NOT NULL OR ($3 <> '' AND erased_by <> $3))`

// EraseIdempotency strips the stored answers about an erased contact to ids.
func (s *Store) EraseIdempotency(ctx context.Context, workspace string, id contact.ID, tombstone string) (int, error) {
	tag, err := s.pool.Exec(ctx, eraseAnswersSQL, workspace, id.String(), tombstone)
	return int(tag.RowsAffected()), err
}
