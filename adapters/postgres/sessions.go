package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/jackc/pgx/v5"
)

var _ ledger.SessionStore = (*Store)(nil)

// CreateSession stores a new console session.
func (s *Store) CreateSession(ctx context.Context, ss ledger.Session) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO console_sessions (hash, token_id, workspace, created_at, seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		ss.Hash, ss.TokenID, ss.Workspace, ss.CreatedAt, ss.SeenAt, ss.ExpiresAt)
	return err
}

// Session returns the session with this hash.
func (s *Store) Session(ctx context.Context, hash []byte) (ledger.Session, error) {
	var ss ledger.Session
	err := s.pool.QueryRow(ctx, `SELECT hash, token_id, workspace, created_at, seen_at, expires_at FROM console_sessions WHERE hash = $1`, hash).
		Scan(&ss.Hash, &ss.TokenID, &ss.Workspace, &ss.CreatedAt, &ss.SeenAt, &ss.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.Session{}, kernel.Errorf(kernel.ErrNotFound, "session not found")
	}
	ss.CreatedAt, ss.SeenAt, ss.ExpiresAt = ss.CreatedAt.UTC(), ss.SeenAt.UTC(), ss.ExpiresAt.UTC()
	return ss, err
}

// TouchSession records that a session was used at.
func (s *Store) TouchSession(ctx context.Context, hash []byte, at time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE console_sessions SET seen_at = $2 WHERE hash = $1 AND seen_at < $2`, hash, at)
	return err
}

// DeleteSession deletes a session.
func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE hash = $1`, hash)
	return err
}

// ExpireSessions deletes the sessions past their end or idle since idleSince.
func (s *Store) ExpireSessions(ctx context.Context, now, idleSince time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE expires_at <= $1 OR seen_at <= $2`, now, idleSince)
	return int(tag.RowsAffected()), err
}
