package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
)

// ErrIdentityTaken is the reason of an IdentityTakenError.
var ErrIdentityTaken = &kernel.Error{Code: kernel.CodeConflict, Reason: "identity-taken",
	Message: "this email or phone belongs to another contact of the workspace"}

// IdentityTakenError refuses to give a contact an email or phone that
// another contact holds under the workspace's identity_uniqueness. It names
// the holder by id and state, never the value.
type IdentityTakenError struct {
	// Field is "email" or "phone".
	Field  string
	Holder contact.ID
	// State is the holder's state; empty while the holder's own create is
	// still running (it claimed the value a moment ago).
	State contact.State
	// Restoring is set when the refused command is a restore, which may
	// go ahead with on_conflict keep_both.
	Restoring bool
}

func (e *IdentityTakenError) Error() string {
	h := e.Holder.String()
	switch {
	case e.Restoring:
		return fmt.Sprintf("this contact's %s now belongs to contact %s (%s); restore with on_conflict keep_both to keep both, or change one of them first", e.Field, h, e.State)
	case e.State == contact.StateTrashed:
		return fmt.Sprintf("this %s belongs to contact %s, which is in trash: restore it instead of creating another (POST /v1/contacts/%s/restore)", e.Field, h, h)
	case e.State == "":
		return fmt.Sprintf("this %s is being given to contact %s by a request still running; retry shortly", e.Field, h)
	}
	return fmt.Sprintf("this %s belongs to contact %s (%s); the workspace keeps each email and phone to one contact (identity_uniqueness)", e.Field, h, e.State)
}

// Unwrap makes the error an ErrIdentityTaken for errors.Is and the HTTP adapter.
func (e *IdentityTakenError) Unwrap() error { return kernel.Errorf(ErrIdentityTaken, "%s", e.Error()) }

// IdentityClaim says that a contact holds an email or phone in a
// workspace, by the value's blind index (never the value).
type IdentityClaim struct {
	Workspace string
	Kind      string // "email" or "phone"
	Index     string
	Contact   contact.ID
	At        time.Time
}

// ErrClaimTaken fails a stream of a ClaimedAppender's batch one of whose
// claims another contact holds: nothing of the stream was stored. The
// command runs again alone, where a claim whose contact no longer holds
// the value is taken over and a holder is named.
var ErrClaimTaken = kernel.Errorf(kernel.ErrConcurrency, "an email or phone the append claims is claimed by another contact")

// ClaimedAppender is implemented by stores that keep the log, the key
// vault and the identity claims in one database: a batch's claims commit
// with its appends (and new keys), so that a batch claims its values in
// the statement that appends it, and a stream that is not appended leaves
// no claim behind.
type ClaimedAppender interface {
	// AppendClaimed is KeyedAppender's AppendWithKeys (keys may be nil:
	// no new keys) that also records claims[i], the values batch[i]'s
	// contact now holds, with the append of batch[i], per stream. A stream
	// one of whose claims another contact holds (or an earlier stream of
	// the batch claims) fails with ErrClaimTaken, and nothing of it is
	// stored; a claim its contact holds already stays as it is.
	AppendClaimed(ctx context.Context, keys []KeyRow, claims [][]IdentityClaim, batch []kernel.StreamAppend) ([]kernel.AppendResult, error)
}

// identityKey is one value a contact may hold: its email or its phone, by blind index.
type identityKey struct{ kind, index string }

// identityChange is what a decided command does to its contact's claims.
type identityChange struct {
	// claimed are claims made for the command: given back if its append fails.
	claimed []identityKey
	// pending are values to claim that a batch claims for all its
	// commands at once (see appendClaiming): nothing is claimed yet.
	pending []identityKey
	// released are values the contact stops holding: released after the append.
	released []identityKey
	// waived is set when a keep_both restore left a value's claim to the
	// contact that holds it: the restored contact holds it too, unclaimed,
	// and only the identity index will tell (see apply).
	waived bool
}

// claimStale is how old a claim of a contact whose stream does not exist
// must be before another contact takes it over: its create died between
// claiming and appending (a create that runs takes milliseconds).
const claimStale = 2 * time.Minute

// pendingWait is how long a command waits for the create that claimed a
// value a moment ago to append, so that it can name that contact's state.
const pendingWait = 2 * time.Second

// heldIdentities returns the values c keeps to itself under p.
func heldIdentities(b shred.BlindIndex, c *contact.Contact, p contact.Policy) []identityKey {
	if !p.HoldsIdentity(c.State()) || c.Shredded() {
		return nil
	}
	per := c.Personal()
	var out []identityKey
	if v := b.Of("email", contact.NormalizeEmail(per.Email)); v != "" {
		out = append(out, identityKey{"email", v})
	}
	if v := b.Of("phone", contact.NormalizePhone(per.Phone)); v != "" {
		out = append(out, identityKey{"phone", v})
	}
	return out
}

// identitiesBefore returns a loaded contact's snapshot and the values it
// holds before a command runs.
func (s *core) identitiesBefore(ctx context.Context, workspace string, c *contact.Contact, p contact.Policy) (contact.Snapshot, []identityKey, error) {
	snap := c.Snapshot()
	if p.Uniqueness() == contact.UniquenessOff {
		return snap, nil, nil
	}
	b, err := s.vault.BlindIndex(ctx, workspace)
	if err != nil {
		return snap, nil, err
	}
	return snap, heldIdentities(b, c, p), nil
}

// identityNeeds is what a command does to the values its contact holds.
type identityNeeds struct {
	check               bool // unset: nothing to check (uniqueness off, nothing held before)
	b                   shred.BlindIndex
	need                []identityKey // values to check against other contacts, and claim
	released            []identityKey // values the contact stops holding
	restoring, keepBoth bool
}

// identityNeed works out which values a command gives its contact c (those
// it did not hold before, or, for a restore, all it holds after) and which
// it releases.
func (s *core) identityNeed(ctx context.Context, workspace string, p contact.Policy, before []identityKey, c *contact.Contact, changes []contact.Change) (identityNeeds, error) {
	var n identityNeeds
	if p.Uniqueness() == contact.UniquenessOff && len(before) == 0 {
		return n, nil
	}
	b, err := s.vault.BlindIndex(ctx, workspace)
	if err != nil {
		return n, err
	}
	n.check, n.b = true, b
	after := heldIdentities(b, c, p)
	for _, chg := range changes {
		if r, ok := chg.Event.(contact.Restored); ok {
			n.restoring, n.keepBoth = true, r.KeepBoth
		}
	}
	for _, k := range after {
		if n.restoring || !slices.Contains(before, k) {
			n.need = append(n.need, k)
		}
	}
	for _, k := range before {
		if !slices.Contains(after, k) {
			n.released = append(n.released, k)
		}
	}
	return n, nil
}

// query is the identity index's query for the values needed.
func (n identityNeeds) query() IdentityQuery {
	q := IdentityQuery{}
	for _, k := range n.need {
		if k.kind == "email" {
			q.EmailIndex = k.index
		} else {
			q.PhoneIndex = k.index
		}
	}
	return q
}

// guardIdentities checks the values a command gives its contact c (those
// it did not hold before, or, for a restore, all it holds after) against
// every other contact of the workspace, and claims them. A value another
// contact holds refuses the command with an *IdentityTakenError, unless the
// command is a restore recorded with keep_both: then the other contact
// keeps its claim. In a dry run nothing is claimed; the same checks run
// on the claims as they are. known, when set, are the identity index's
// matches of every value c needs, read already (a create reads them for
// the spam check, a batch for all its contacts at once). batched leaves the claims to the caller's batch: they are
// returned pending, claimed by appendClaiming for every command at once.
func (s *core) guardIdentities(ctx context.Context, workspace string, id contact.ID, p contact.Policy, before []identityKey, c *contact.Contact, changes []contact.Change, dry, batched bool, known *[]IdentityMatch) (identityChange, error) {
	var ch identityChange
	n, err := s.identityNeed(ctx, workspace, p, before, c, changes)
	if err != nil || !n.check {
		return ch, err
	}
	b, need, restoring, keepBoth := n.b, n.need, n.restoring, n.keepBoth
	ch.released = n.released
	if len(need) == 0 {
		return ch, nil
	}
	taken := func(k identityKey, holder contact.ID, st contact.State) error {
		return &IdentityTakenError{Field: k.kind, Holder: holder, State: st, Restoring: restoring}
	}
	// Every contact the identity index knows with one of the values, claims
	// or not (those made before uniqueness, or kept by keep_both).
	q := n.query()
	var ms []IdentityMatch
	if known != nil {
		ms = *known
	} else if ms, err = s.identities.FindIdentities(ctx, workspace, q); err != nil {
		return ch, err
	}
	waived, err := s.waiveIndexed(ctx, workspace, id, p, b, need, ms, keepBoth, taken)
	if err != nil {
		return ch, err
	}
	ch.waived = len(waived) > 0
	if s.claims == nil {
		return ch, nil
	}
	if batched && !dry {
		for _, k := range need {
			if !slices.Contains(waived, k) {
				ch.pending = append(ch.pending, k)
			}
		}
		return ch, nil
	}
	for _, k := range need {
		if slices.Contains(waived, k) {
			continue
		}
		fresh, held, err := s.claim(ctx, workspace, id, p, b, k, keepBoth, dry, taken)
		if fresh {
			ch.claimed = append(ch.claimed, k)
		}
		ch.waived = ch.waived || held
		if err != nil {
			s.giveBack(ctx, workspace, id, ch)
			return identityChange{}, err
		}
	}
	return ch, nil
}

// waiveIndexed checks the values needed against the other live contacts
// the identity index knows with them: a value one of them still holds (the
// index may be behind; the log says) is taken, unless the restore keeps
// both, when it is waived. It returns the waived values.
func (s *core) waiveIndexed(ctx context.Context, workspace string, id contact.ID, p contact.Policy, b shred.BlindIndex, need []identityKey, ms []IdentityMatch, keepBoth bool, taken func(identityKey, contact.ID, contact.State) error) ([]identityKey, error) {
	var waived []identityKey
	for _, m := range ms {
		if m.ID == id || !p.HoldsIdentity(m.State) {
			continue
		}
		for _, k := range need {
			if (k.kind == "email" && !m.ByEmail) || (k.kind == "phone" && !m.ByPhone) || slices.Contains(waived, k) {
				continue
			}
			st, holds, err := s.holdsIdentity(ctx, workspace, m.ID, p, b, k)
			if err != nil {
				return nil, err
			}
			if !holds {
				continue
			}
			if !keepBoth {
				return nil, taken(k, m.ID, st)
			}
			waived = append(waived, k)
		}
	}
	return waived, nil
}

// claim claims one value for contact id, taking over a claim whose
// contact no longer holds it. It reports whether it made a claim (which a
// failed append gives back), and whether keep_both left it to another
// contact that holds it. In a dry run it only reads the claim.
func (s *core) claim(ctx context.Context, workspace string, id contact.ID, p contact.Policy, b shred.BlindIndex, k identityKey, keepBoth, dry bool, taken func(identityKey, contact.ID, contact.State) error) (fresh, waived bool, err error) {
	deadline := time.Now().Add(pendingWait)
	for {
		now := s.now()
		want := IdentityClaim{Workspace: workspace, Kind: k.kind, Index: k.index, Contact: id, At: now}
		var (
			cur      IdentityClaim
			inserted bool
		)
		if dry {
			var found bool
			cur, found, err = s.claims.IdentityClaimOf(ctx, workspace, k.kind, k.index)
			if !found {
				return false, false, err
			}
		} else {
			cur, inserted, err = s.claims.ClaimIdentity(ctx, want)
		}
		if err != nil || inserted || cur.Contact == id {
			return inserted, false, err
		}
		st, holds, err := s.holdsIdentity(ctx, workspace, cur.Contact, p, b, k)
		switch {
		case err == nil && st == "" && now.Sub(cur.At) < claimStale:
			// Claimed by a create that has not appended yet.
			if time.Now().Before(deadline) {
				select {
				case <-ctx.Done():
					return false, false, ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
				continue
			}
			return false, false, taken(k, cur.Contact, "")
		case err != nil:
			return false, false, err
		case holds && keepBoth:
			return false, true, nil // the other contact keeps it; the restore goes ahead
		case holds:
			return false, false, taken(k, cur.Contact, st)
		case dry:
			return false, false, nil // a real run would take the stale claim over
		}
		ok, err := s.claims.TakeOverIdentity(ctx, want, cur.Contact)
		if err != nil || ok {
			return ok, false, err
		}
		// Someone else took it over first: look again.
	}
}

// holdsIdentity reads contact id from the log and reports its state and
// whether it holds value k under p. A contact without a stream has state "".
func (s *core) holdsIdentity(ctx context.Context, workspace string, id contact.ID, p contact.Policy, b shred.BlindIndex, k identityKey) (contact.State, bool, error) {
	l, err := s.load(ctx, workspace, id)
	if errors.Is(err, kernel.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return l.c.State(), slices.Contains(heldIdentities(b, l.c, p), k), nil
}

// giveBack releases the claims a command made, when it is not appended.
func (s *core) giveBack(ctx context.Context, workspace string, id contact.ID, ch identityChange) {
	s.release(ctx, workspace, id, ch.claimed)
}

// settle releases the values a command's contact stopped holding, once it is appended.
func (s *core) settle(ctx context.Context, workspace string, id contact.ID, ch identityChange) {
	s.release(ctx, workspace, id, ch.released)
}

// release deletes contact id's claims of ks. A claim left behind is
// harmless (the next claimant finds its contact no longer holds the value
// and takes it over), and an erasure deletes them all with the key.
func (s *core) release(ctx context.Context, workspace string, id contact.ID, ks []identityKey) {
	if s.claims == nil {
		return
	}
	for _, k := range ks {
		if err := s.claims.ReleaseIdentity(context.WithoutCancel(ctx), workspace, k.kind, k.index, id); err != nil {
			s.log.Warn("releasing an identity claim failed; the next claimant takes it over", "contact", id.String(), "err", err)
		}
	}
}
