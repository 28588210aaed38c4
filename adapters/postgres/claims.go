package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/ledger"
	"github.com/jackc/pgx/v5"
)

var _ ledger.IdentityClaims = (*Store)(nil)

// ClaimIdentity records a claim unless the value is claimed already. The
// primary key decides between racing claimants, on every replica: the
// loser's insert does nothing and it reads the winner's claim.
func (s *Store) ClaimIdentity(ctx context.Context, c ledger.IdentityClaim) (ledger.IdentityClaim, bool, error) {
	for {
		tag, err := s.pool.Exec(ctx, `INSERT INTO identity_claims (workspace, kind, bidx, contact_id, claimed_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (workspace, kind, bidx) DO NOTHING`, c.Workspace, c.Kind, c.Index, c.Contact.String(), c.At)
		if err != nil {
			return ledger.IdentityClaim{}, false, fmt.Errorf("claim identity: %w", err)
		}
		if tag.RowsAffected() == 1 {
			return c, true, nil
		}
		cur, ok, err := s.IdentityClaimOf(ctx, c.Workspace, c.Kind, c.Index)
		if err != nil || ok {
			return cur, false, err
		}
		// Released between the insert and the read: try again.
	}
}

// IdentityClaimOf returns the claim of a value, if any.
func (s *Store) IdentityClaimOf(ctx context.Context, workspace, kind, index string) (ledger.IdentityClaim, bool, error) {
	var (
		c  = ledger.IdentityClaim{Workspace: workspace, Kind: kind, Index: index}
		id string
		at time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT contact_id, claimed_at FROM identity_claims WHERE workspace = $1 AND kind = $2 AND bidx = $3`,
		workspace, kind, index).Scan(&id, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.IdentityClaim{}, false, nil
	}
	if err != nil {
		return ledger.IdentityClaim{}, false, err
	}
	if c.Contact, err = contact.ParseID(id); err != nil {
		return ledger.IdentityClaim{}, false, fmt.Errorf("identity claim of %q: %w", id, err)
	}
	c.At = at.UTC()
	return c, true, nil
}

// TakeOverIdentity moves a claim to c.Contact if it is still from's.
func (s *Store) TakeOverIdentity(ctx context.Context, c ledger.IdentityClaim, from contact.ID) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE identity_claims SET contact_id = $1, claimed_at = $2 WHERE workspace = $3 AND kind = $4 AND bidx = $5 AND contact_id = $6`,
		c.Contact.String(), c.At, c.Workspace, c.Kind, c.Index, from.String())
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseIdentity deletes a claim if it is id's.
func (s *Store) ReleaseIdentity(ctx context.Context, workspace, kind, index string, id contact.ID) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM identity_claims WHERE workspace = $1 AND kind = $2 AND bidx = $3 AND contact_id = $4`, workspace, kind, index, id.String())
	return err
}

// ClaimIdentities claims many values in one statement: the values no one
// holds are inserted, and the claims of the others read. A value claimed
// by a transaction that commits meanwhile is not in the statement's
// snapshot, nor one released meanwhile: those are asked again.
func (s *Store) ClaimIdentities(ctx context.Context, cs []ledger.IdentityClaim) ([]ledger.IdentityClaim, []bool, error) {
	cur, inserted := make([]ledger.IdentityClaim, len(cs)), make([]bool, len(cs))
	todo := make([]int, len(cs))
	for i := range todo {
		todo[i] = i
	}
	for len(todo) > 0 {
		ws, kinds, bidxs, ids, ats := make([]string, len(todo)), make([]string, len(todo)), make([]string, len(todo)), make([]string, len(todo)), make([]time.Time, len(todo))
		for j, i := range todo {
			c := cs[i]
			ws[j], kinds[j], bidxs[j], ids[j], ats[j] = c.Workspace, c.Kind, c.Index, c.Contact.String(), c.At
		}
		rows, err := s.pool.Query(ctx, `WITH d AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) WITH ORDINALITY AS d(workspace, kind, bidx, contact_id, at, n)
		), ins AS (
			INSERT INTO identity_claims (workspace, kind, bidx, contact_id, claimed_at)
			SELECT workspace, kind, bidx, contact_id, at FROM d ORDER BY workspace, kind, bidx
			ON CONFLICT (workspace, kind, bidx) DO NOTHING
			RETURNING workspace, kind, bidx
		)
		SELECT ins.bidx IS NOT NULL, COALESCE(ic.contact_id, ''), COALESCE(ic.claimed_at, 'epoch')
		FROM d LEFT JOIN ins ON (ins.workspace, ins.kind, ins.bidx) = (d.workspace, d.kind, d.bidx)
			LEFT JOIN identity_claims ic ON (ic.workspace, ic.kind, ic.bidx) = (d.workspace, d.kind, d.bidx) AND ins.bidx IS NULL
		ORDER BY d.n`, ws, kinds, bidxs, ids, ats)
		if err != nil {
			return nil, nil, fmt.Errorf("claim identities: %w", err)
		}
		var (
			again []int
			j     int
			ins   bool
			id    string
			at    time.Time
		)
		_, err = pgx.ForEachRow(rows, []any{&ins, &id, &at}, func() error {
			i := todo[j]
			j++
			switch {
			case ins:
				cur[i], inserted[i] = cs[i], true
			case id == "":
				again = append(again, i) // committed or released meanwhile
			default:
				c := cs[i]
				cid, err := contact.ParseID(id)
				if err != nil {
					return fmt.Errorf("identity claim of %q: %w", id, err)
				}
				c.Contact, c.At = cid, at.UTC()
				cur[i] = c
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("claim identities: %w", err)
		}
		todo = again
	}
	return cur, inserted, nil
}

// ReleaseIdentities deletes the claims of cs still their contacts', in one statement.
func (s *Store) ReleaseIdentities(ctx context.Context, cs []ledger.IdentityClaim) error {
	ws, kinds, bidxs, ids := make([]string, len(cs)), make([]string, len(cs)), make([]string, len(cs)), make([]string, len(cs))
	for i, c := range cs {
		ws[i], kinds[i], bidxs[i], ids[i] = c.Workspace, c.Kind, c.Index, c.Contact.String()
	}
	_, err := s.pool.Exec(ctx, `DELETE FROM identity_claims ic USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS d(workspace, kind, bidx, contact_id)
		WHERE (ic.workspace, ic.kind, ic.bidx, ic.contact_id) = (d.workspace, d.kind, d.bidx, d.contact_id)`, ws, kinds, bidxs, ids)
	return err
}

// HeldContacts returns contacts under legal hold from the identity index.
func (s *Store) HeldContacts(ctx context.Context, workspace, after string, limit int) ([]contact.Snapshot, error) {
	rows, err := s.pool.Query(ctx, `SELECT doc FROM `+identityTable+` WHERE workspace = $1 AND hold_id <> '' AND id > $2 ORDER BY id LIMIT $3`,
		workspace, after, limit)
	if err != nil {
		return nil, fmt.Errorf("held contacts: %w", err)
	}
	docs, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("held contacts: %w", err)
	}
	out := make([]contact.Snapshot, len(docs))
	for i, d := range docs {
		if err := json.Unmarshal(d, &out[i]); err != nil {
			return nil, fmt.Errorf("held contact: %w", err)
		}
	}
	return out, nil
}
