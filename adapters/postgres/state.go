package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/jackc/pgx/v5"
)

var (
	_ ledger.KeyStore  = (*Store)(nil)
	_ ledger.Directory = (*Store)(nil)
)

// PutKey stores a new wrapped key.
func (s *Store) PutKey(ctx context.Context, k ledger.KeyRow) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO data_keys (owner, workspace, key_id, kek_id, wrapped, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		k.Owner, k.Workspace, k.KeyID, k.KEKID, k.Wrapped, k.CreatedAt)
	if isUnique(err) {
		return kernel.Errorf(kernel.ErrAlreadyExists, "a key for this owner exists")
	}
	return err
}

// GetKeys returns the keys of owners in workspace; destroyed ones are absent.
func (s *Store) GetKeys(ctx context.Context, workspace string, owners []string) (map[string]ledger.KeyRow, error) {
	out := make(map[string]ledger.KeyRow, len(owners))
	if len(owners) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT owner, key_id, kek_id, wrapped, created_at FROM data_keys WHERE workspace = $1 AND owner = ANY($2)`, workspace, owners)
	if err != nil {
		return nil, fmt.Errorf("get keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		k := ledger.KeyRow{Workspace: workspace}
		if err := rows.Scan(&k.Owner, &k.KeyID, &k.KEKID, &k.Wrapped, &k.CreatedAt); err != nil {
			return nil, err
		}
		k.CreatedAt = k.CreatedAt.UTC()
		out[k.Owner] = k
	}
	return out, rows.Err()
}

// DestroyKey deletes a key.
func (s *Store) DestroyKey(ctx context.Context, workspace, owner string) (bool, error) {
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM data_keys WHERE workspace = $1 AND owner = $2`, workspace, owner)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		// With the key go the stored answers about its contact (the
		// erasure projection names the tombstone in them later). An answer
		// being stored meanwhile holds the key row FOR SHARE: it either
		// commits first and is stripped here, or sees no key and keeps ids.
		_, err = tx.Exec(ctx, eraseAnswersSQL, workspace, owner, "")
		return err
	})
	return n > 0, err
}

var _ ledger.KeyBatchStore = (*Store)(nil)

// DestroyKeys deletes the keys of owners in workspace in one statement.
func (s *Store) DestroyKeys(ctx context.Context, workspace string, owners []string) (int, error) {
	if len(owners) == 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM data_keys WHERE workspace = $1 AND owner = ANY($2)`, workspace, owners)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// CreateWorkspace stores a new workspace.
func (s *Store) CreateWorkspace(ctx context.Context, w ledger.Workspace) error {
	policy, err := json.Marshal(w.Policy.Settings())
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO workspaces (name, created_at, policy) VALUES ($1, $2, $3)`, w.Name, w.CreatedAt, policy)
	if isUnique(err) {
		return ledger.ErrWorkspaceExists
	}
	return err
}

func scanWorkspace(row pgx.Row) (ledger.Workspace, error) {
	var (
		w      ledger.Workspace
		policy []byte
	)
	if err := row.Scan(&w.Name, &w.CreatedAt, &policy); err != nil {
		return ledger.Workspace{}, err
	}
	var ps contact.PolicySettings
	if err := json.Unmarshal(policy, &ps); err != nil {
		return ledger.Workspace{}, fmt.Errorf("policy of %s: %w", w.Name, err)
	}
	p, err := ps.Policy()
	if err != nil {
		return ledger.Workspace{}, fmt.Errorf("policy of %s: %w", w.Name, err)
	}
	w.CreatedAt, w.Policy = w.CreatedAt.UTC(), p
	return w, nil
}

// Workspace returns one workspace.
func (s *Store) Workspace(ctx context.Context, name string) (ledger.Workspace, error) {
	w, err := scanWorkspace(s.pool.QueryRow(ctx, `SELECT name, created_at, policy FROM workspaces WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.Workspace{}, kernel.ErrWorkspaceNotFound
	}
	return w, err
}

// Workspaces lists every workspace by name.
func (s *Store) Workspaces(ctx context.Context) ([]ledger.Workspace, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, created_at, policy FROM workspaces ORDER BY name`)
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
	tag, err := s.pool.Exec(ctx, `UPDATE workspaces SET policy = $1 WHERE name = $2`, policy, name)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return kernel.ErrWorkspaceNotFound
	}
	return nil
}

// CreateToken stores a token (its hash only).
func (s *Store) CreateToken(ctx context.Context, t ledger.Token) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO tokens (id, workspace, role, hash, label, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		t.ID, t.Workspace, string(t.Role), t.Hash, t.Label, t.CreatedAt)
	return err
}

func scanToken(row pgx.Row) (ledger.Token, error) {
	var (
		t       ledger.Token
		role    string
		revoked *time.Time
	)
	if err := row.Scan(&t.ID, &t.Workspace, &role, &t.Hash, &t.Label, &t.CreatedAt, &revoked); err != nil {
		return ledger.Token{}, err
	}
	t.Role, t.CreatedAt = kernel.Role(role), t.CreatedAt.UTC()
	if revoked != nil {
		t.RevokedAt = revoked.UTC()
	}
	return t, nil
}

// Token returns a token by id.
func (s *Store) Token(ctx context.Context, id string) (ledger.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, `SELECT id, workspace, role, hash, label, created_at, revoked_at FROM tokens WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.Token{}, kernel.Errorf(kernel.ErrNotFound, "token not found")
	}
	return t, err
}

// Tokens lists a workspace's tokens, oldest first.
func (s *Store) Tokens(ctx context.Context, workspace string) ([]ledger.Token, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, workspace, role, hash, label, created_at, revoked_at FROM tokens WHERE workspace = $1 ORDER BY id`, workspace)
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
	tag, err := s.pool.Exec(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2`, at, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return kernel.Errorf(kernel.ErrNotFound, "token not found")
	}
	return nil
}

var _ ledger.KeyRewrapper = (*Store)(nil)

// KeysNotWrappedBy returns up to limit keys wrapped under another KEK than kek.
func (s *Store) KeysNotWrappedBy(ctx context.Context, kek string, limit int) ([]ledger.KeyRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT owner, workspace, key_id, kek_id, wrapped, created_at FROM data_keys WHERE kek_id <> $1 ORDER BY owner LIMIT $2`, kek, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ledger.KeyRow
	for rows.Next() {
		var k ledger.KeyRow
		if err := rows.Scan(&k.Owner, &k.Workspace, &k.KeyID, &k.KEKID, &k.Wrapped, &k.CreatedAt); err != nil {
			return nil, err
		}
		k.CreatedAt = k.CreatedAt.UTC()
		out = append(out, k)
	}
	return out, rows.Err()
}

// Rewrap replaces a key's wrapping if it is still wrapped under oldKEK.
func (s *Store) Rewrap(ctx context.Context, owner, oldKEK, newKEK string, wrapped []byte) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE data_keys SET kek_id = $1, wrapped = $2 WHERE owner = $3 AND kek_id = $4`, newKEK, wrapped, owner, oldKEK)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() > 0, nil
}
