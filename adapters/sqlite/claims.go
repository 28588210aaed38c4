package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/ledger"
)

var _ ledger.IdentityClaims = (*Store)(nil)

// ClaimIdentity records a claim unless the value is claimed already; the
// single writer makes the check and the insert one step.
func (s *Store) ClaimIdentity(ctx context.Context, c ledger.IdentityClaim) (ledger.IdentityClaim, bool, error) {
	var (
		cur      ledger.IdentityClaim
		inserted bool
	)
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO identity_claims (workspace, kind, bidx, contact_id, claimed_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (workspace, kind, bidx) DO NOTHING`, c.Workspace, c.Kind, c.Index, c.Contact.String(), micros(c.At))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			cur, inserted = c, true
			return nil
		}
		cur, err = scanClaim(tx.QueryRowContext(ctx, claimQuery, c.Workspace, c.Kind, c.Index))
		return err
	}, nil)
	return cur, inserted, err
}

const claimQuery = `SELECT workspace, kind, bidx, contact_id, claimed_at FROM identity_claims WHERE workspace = ? AND kind = ? AND bidx = ?`

// IdentityClaimOf returns the claim of a value, if any.
func (s *Store) IdentityClaimOf(ctx context.Context, workspace, kind, index string) (ledger.IdentityClaim, bool, error) {
	c, err := scanClaim(s.r.QueryRowContext(ctx, claimQuery, workspace, kind, index))
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.IdentityClaim{}, false, nil
	}
	return c, err == nil, err
}

// TakeOverIdentity moves a claim to c.Contact if it is still from's.
func (s *Store) TakeOverIdentity(ctx context.Context, c ledger.IdentityClaim, from contact.ID) (bool, error) {
	var ok bool
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE identity_claims SET contact_id = ?, claimed_at = ? WHERE workspace = ? AND kind = ? AND bidx = ? AND contact_id = ?`,
			c.Contact.String(), micros(c.At), c.Workspace, c.Kind, c.Index, from.String())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		ok = n == 1
		return err
	}, nil)
	return ok, err
}

// ReleaseIdentity deletes a claim if it is id's.
func (s *Store) ReleaseIdentity(ctx context.Context, workspace, kind, index string, id contact.ID) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM identity_claims WHERE workspace = ? AND kind = ? AND bidx = ? AND contact_id = ?`, workspace, kind, index, id.String())
		return err
	}, nil)
}

// ClaimIdentities claims many values in one write of the single writer.
func (s *Store) ClaimIdentities(ctx context.Context, cs []ledger.IdentityClaim) ([]ledger.IdentityClaim, []bool, error) {
	cur, inserted := make([]ledger.IdentityClaim, len(cs)), make([]bool, len(cs))
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for i, c := range cs {
			res, err := tx.ExecContext(ctx, `INSERT INTO identity_claims (workspace, kind, bidx, contact_id, claimed_at) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (workspace, kind, bidx) DO NOTHING`, c.Workspace, c.Kind, c.Index, c.Contact.String(), micros(c.At))
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				cur[i], inserted[i] = c, true
				continue
			}
			if cur[i], err = scanClaim(tx.QueryRowContext(ctx, claimQuery, c.Workspace, c.Kind, c.Index)); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	return cur, inserted, err
}

// ReleaseIdentities deletes the claims of cs still their contacts', in one write.
func (s *Store) ReleaseIdentities(ctx context.Context, cs []ledger.IdentityClaim) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, c := range cs {
			if _, err := tx.ExecContext(ctx, `DELETE FROM identity_claims WHERE workspace = ? AND kind = ? AND bidx = ? AND contact_id = ?`,
				c.Workspace, c.Kind, c.Index, c.Contact.String()); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}

func scanClaim(row scanner) (ledger.IdentityClaim, error) {
	var (
		c  ledger.IdentityClaim
		id string
		at int64
	)
	if err := row.Scan(&c.Workspace, &c.Kind, &c.Index, &id, &at); err != nil {
		return ledger.IdentityClaim{}, err
	}
	cid, err := contact.ParseID(id)
	if err != nil {
		return ledger.IdentityClaim{}, fmt.Errorf("identity claim of %q: %w", id, err)
	}
	c.Contact, c.At = cid, fromMicros(at)
	return c, nil
}

// HeldContacts returns contacts under legal hold from the identity index.
func (s *Store) HeldContacts(ctx context.Context, workspace, after string, limit int) ([]contact.Snapshot, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT doc FROM `+identityTable+` INDEXED BY `+heldIndex+`
		WHERE workspace = ? AND hold_id <> '' AND id > ? ORDER BY id LIMIT ?`, workspace, after, limit)
	if err != nil {
		return nil, fmt.Errorf("held contacts: %w", err)
	}
	defer rows.Close()
	var out []contact.Snapshot
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		var snap contact.Snapshot
		if err := json.Unmarshal([]byte(doc), &snap); err != nil {
			return nil, fmt.Errorf("held contact: %w", err)
		}
		out = append(out, snap)
	}
	return out, rows.Err()
}

// heldIndex finds the identity index's rows under legal hold; its DDL is
// migration 00050's, which a rebuild of the index runs again.
const (
	heldIndex    = "contact_identities_held"
	heldIndexDDL = `CREATE INDEX ` + heldIndex + ` ON ` + identityTable + ` (workspace, id) WHERE hold_id <> ''`
)
