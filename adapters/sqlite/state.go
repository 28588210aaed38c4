package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

var (
	_ ledger.KeyStore  = (*Store)(nil)
	_ ledger.Directory = (*Store)(nil)
)

// PutKey stores a new wrapped key.
func (s *Store) PutKey(ctx context.Context, k ledger.KeyRow) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO data_keys (owner, workspace, key_id, kek_id, wrapped, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			k.Owner, k.Workspace, k.KeyID, k.KEKID, k.Wrapped, micros(k.CreatedAt))
		if isConstraint(err) {
			return kernel.Errorf(kernel.ErrAlreadyExists, "a key for this owner exists")
		}
		return err
	}, nil)
}

// GetKeys returns the keys of owners in workspace; destroyed ones are absent.
func (s *Store) GetKeys(ctx context.Context, workspace string, owners []string) (map[string]ledger.KeyRow, error) {
	out := make(map[string]ledger.KeyRow, len(owners))
	if len(owners) == 0 {
		return out, nil
	}
	list, _ := json.Marshal(owners)
	rows, err := s.r.QueryContext(ctx, `SELECT owner, key_id, kek_id, wrapped, created_at FROM data_keys
		WHERE workspace = ? AND owner IN (SELECT value FROM json_each(?))`, workspace, string(list))
	if err != nil {
		return nil, fmt.Errorf("get keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		k := ledger.KeyRow{Workspace: workspace}
		var created int64
		if err := rows.Scan(&k.Owner, &k.KeyID, &k.KEKID, &k.Wrapped, &created); err != nil {
			return nil, err
		}
		k.CreatedAt = fromMicros(created)
		out[k.Owner] = k
	}
	return out, rows.Err()
}

// DestroyKey deletes a key; secure_delete zeroes its bytes in the page.
func (s *Store) DestroyKey(ctx context.Context, workspace, owner string) (bool, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM data_keys WHERE workspace = ? AND owner = ?`, workspace, owner)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		// With the key go the stored answers about its contact (the
		// erasure projection names the tombstone in them later).
		_, err = eraseAnswers(ctx, tx, workspace, owner, "")
		return err
	}, nil)
	return n > 0, err
}

var _ ledger.KeyBatchStore = (*Store)(nil)

// DestroyKeys deletes the keys of owners in workspace in one write.
func (s *Store) DestroyKeys(ctx context.Context, workspace string, owners []string) (int, error) {
	if len(owners) == 0 {
		return 0, nil
	}
	list, _ := json.Marshal(owners)
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM data_keys WHERE workspace = ? AND owner IN (SELECT value FROM json_each(?))`, workspace, string(list))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	}, nil)
	return int(n), err
}

// CreateWorkspace stores a new workspace.
func (s *Store) CreateWorkspace(ctx context.Context, w ledger.Workspace) error {
	policy, err := json.Marshal(w.Policy.Settings())
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO workspaces (name, created_at, policy) VALUES (?, ?, ?)`, w.Name, micros(w.CreatedAt), string(policy))
		if isConstraint(err) {
			return ledger.ErrWorkspaceExists
		}
		return err
	}, nil)
}

func scanWorkspace(row scanner) (ledger.Workspace, error) {
	var (
		w       ledger.Workspace
		created int64
		policy  string
	)
	if err := row.Scan(&w.Name, &created, &policy); err != nil {
		return ledger.Workspace{}, err
	}
	var ps contact.PolicySettings
	if err := json.Unmarshal([]byte(policy), &ps); err != nil {
		return ledger.Workspace{}, fmt.Errorf("policy of %s: %w", w.Name, err)
	}
	p, err := ps.Policy()
	if err != nil {
		return ledger.Workspace{}, fmt.Errorf("policy of %s: %w", w.Name, err)
	}
	w.CreatedAt, w.Policy = fromMicros(created), p
	return w, nil
}

// Workspace returns one workspace.
func (s *Store) Workspace(ctx context.Context, name string) (ledger.Workspace, error) {
	w, err := scanWorkspace(s.r.QueryRowContext(ctx, `SELECT name, created_at, policy FROM workspaces WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Workspace{}, kernel.ErrWorkspaceNotFound
	}
	return w, err
}

// Workspaces lists every workspace by name.
func (s *Store) Workspaces(ctx context.Context) ([]ledger.Workspace, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, created_at, policy FROM workspaces ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ledger.Workspace
	for rows.Next() {
		w, err := scanWorkspace(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// SavePolicy replaces a workspace's policy.
func (s *Store) SavePolicy(ctx context.Context, name string, p contact.Policy) error {
	policy, err := json.Marshal(p.Settings())
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE workspaces SET policy = ? WHERE name = ?`, string(policy), name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return kernel.ErrWorkspaceNotFound
		}
		return nil
	}, nil)
}

// CreateToken stores a token (its hash only).
func (s *Store) CreateToken(ctx context.Context, t ledger.Token) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tokens (id, workspace, role, hash, label, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			t.ID, t.Workspace, string(t.Role), t.Hash, t.Label, micros(t.CreatedAt))
		return err
	}, nil)
}

func scanToken(row scanner) (ledger.Token, error) {
	var (
		t       ledger.Token
		role    string
		created int64
		revoked sql.NullInt64
	)
	if err := row.Scan(&t.ID, &t.Workspace, &role, &t.Hash, &t.Label, &created, &revoked); err != nil {
		return ledger.Token{}, err
	}
	t.Role, t.CreatedAt = kernel.Role(role), fromMicros(created)
	if revoked.Valid {
		t.RevokedAt = fromMicros(revoked.Int64)
	}
	return t, nil
}

// Token returns a token by id.
func (s *Store) Token(ctx context.Context, id string) (ledger.Token, error) {
	t, err := scanToken(s.r.QueryRowContext(ctx, `SELECT id, workspace, role, hash, label, created_at, revoked_at FROM tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Token{}, kernel.Errorf(kernel.ErrNotFound, "token not found")
	}
	return t, err
}

// Tokens lists a workspace's tokens, oldest first.
func (s *Store) Tokens(ctx context.Context, workspace string) ([]ledger.Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, workspace, role, hash, label, created_at, revoked_at FROM tokens WHERE workspace = ? ORDER BY id`, workspace)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ledger.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken marks a token revoked.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, micros(at), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return kernel.Errorf(kernel.ErrNotFound, "token not found")
		}
		return nil
	}, nil)
}

var _ ledger.KeyRewrapper = (*Store)(nil)

// KeysNotWrappedBy returns up to limit keys wrapped under another KEK than kek.
func (s *Store) KeysNotWrappedBy(ctx context.Context, kek string, limit int) ([]ledger.KeyRow, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT owner, workspace, key_id, kek_id, wrapped, created_at FROM data_keys WHERE kek_id <> ? ORDER BY owner LIMIT ?`, kek, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ledger.KeyRow
	for rows.Next() {
		var k ledger.KeyRow
		var created int64
		if err := rows.Scan(&k.Owner, &k.Workspace, &k.KeyID, &k.KEKID, &k.Wrapped, &created); err != nil {
			return nil, err
		}
		k.CreatedAt = fromMicros(created)
		out = append(out, k)
	}
	return out, rows.Err()
}

// Rewrap replaces a key's wrapping if it is still wrapped under oldKEK.
func (s *Store) Rewrap(ctx context.Context, owner, oldKEK, newKEK string, wrapped []byte) (bool, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE data_keys SET kek_id = ?, wrapped = ? WHERE owner = ? AND kek_id = ?`, newKEK, wrapped, owner, oldKEK)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	}, nil)
	return n > 0, err
}
