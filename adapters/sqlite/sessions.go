package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

var _ ledger.SessionStore = (*Store)(nil)

// CreateSession stores a new console session.
func (s *Store) CreateSession(ctx context.Context, ss ledger.Session) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO console_sessions (hash, token_id, workspace, created_at, seen_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			ss.Hash, ss.TokenID, ss.Workspace, micros(ss.CreatedAt), micros(ss.SeenAt), micros(ss.ExpiresAt))
		return err
	}, nil)
}

// Session returns the session with this hash.
func (s *Store) Session(ctx context.Context, hash []byte) (ledger.Session, error) {
	var (
		ss                     ledger.Session
		created, seen, expires int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT hash, token_id, workspace, created_at, seen_at, expires_at FROM console_sessions WHERE hash = ?`, hash).
		Scan(&ss.Hash, &ss.TokenID, &ss.Workspace, &created, &seen, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Session{}, kernel.Errorf(kernel.ErrNotFound, "session not found")
	}
	if err != nil {
		return ledger.Session{}, err
	}
	ss.CreatedAt, ss.SeenAt, ss.ExpiresAt = fromMicros(created), fromMicros(seen), fromMicros(expires)
	return ss, nil
}

// TouchSession records that a session was used at.
func (s *Store) TouchSession(ctx context.Context, hash []byte, at time.Time) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE console_sessions SET seen_at = ? WHERE hash = ? AND seen_at < ?`, micros(at), hash, micros(at))
		return err
	}, nil)
}

// DeleteSession deletes a session.
func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE hash = ?`, hash)
		return err
	}, nil)
}

// ExpireSessions deletes the sessions past their end or idle since idleSince.
func (s *Store) ExpireSessions(ctx context.Context, now, idleSince time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE expires_at <= ? OR seen_at <= ?`, micros(now), micros(idleSince))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	}, nil)
	return int(n), err
}
