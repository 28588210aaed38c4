// Package ledger is the application layer: it loads contacts from the log,
// runs their commands, seals their personal data, appends the events and
// answers queries. It talks to storage only through the ports below and
// kernel.EventStore.
package ledger

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
)

// KeyRow is a data key as the key vault stores it: wrapped by a key-encryption key.
type KeyRow struct {
	Owner     string // a contact id, or "bidx:" + workspace for a blind-index key
	Workspace string
	KeyID     string
	KEKID     string
	Wrapped   []byte
	CreatedAt time.Time
}

// KeyStore is the key-vault part of the state store.
type KeyStore interface {
	// PutKey stores a new key. Errors: kernel.ErrAlreadyExists when the owner has one.
	PutKey(ctx context.Context, k KeyRow) error
	// GetKeys returns the keys of the given owners in workspace; destroyed or
	// unknown ones are absent from the map.
	GetKeys(ctx context.Context, workspace string, owners []string) (map[string]KeyRow, error)
	// DestroyKey deletes the owner's key; it reports whether there was one.
	DestroyKey(ctx context.Context, workspace, owner string) (bool, error)
}

// KeyedAppender is implemented by stores that keep the log and the key
// vault in one database: they store new contacts' keys and append their
// first events in one transaction, so that a create costs one commit, and
// a key never outlives a create that failed.
type KeyedAppender interface {
	// AppendWithKeys stores keys[i] (none when its Owner is "") with the
	// append of batch[i], for every i, as kernel.BatchAppender's
	// AppendMany appends: per stream, in one commit. A stream whose key's
	// owner already has a key fails with kernel.ErrAlreadyExists, and
	// nothing of it is stored. Errors: as AppendMany's.
	AppendWithKeys(ctx context.Context, keys []KeyRow, batch []kernel.StreamAppend) ([]kernel.AppendResult, error)
}

// KeyBatchStore is implemented by key stores that destroy many keys at once.
type KeyBatchStore interface {
	// DestroyKeys deletes the keys of the given owners in workspace, in one
	// transaction; it returns how many there were.
	DestroyKeys(ctx context.Context, workspace string, owners []string) (int, error)
}

// KeyRewrapper is implemented by key stores that can re-wrap their keys
// under a new key-encryption key.
type KeyRewrapper interface {
	// KeysNotWrappedBy returns up to limit keys wrapped under another KEK than kek.
	KeysNotWrappedBy(ctx context.Context, kek string, limit int) ([]KeyRow, error)
	// Rewrap replaces a key's wrapping if it is still wrapped under oldKEK;
	// it reports whether it was (a key destroyed meanwhile is not).
	Rewrap(ctx context.Context, owner, oldKEK, newKEK string, wrapped []byte) (bool, error)
}

// KeyWrapper wraps data keys with the key-encryption key of a key service.
type KeyWrapper interface {
	// Active names the key-encryption key that wraps new keys.
	Active() string
	// Wrap encrypts a data key under the current key-encryption key and names it.
	Wrap(ctx context.Context, plaintext []byte) (kekID string, wrapped []byte, err error)
	// Unwrap decrypts a data key wrapped under the named key-encryption key.
	Unwrap(ctx context.Context, kekID string, wrapped []byte) ([]byte, error)
}

// Workspace is a tenant: it owns contacts, tokens and a policy.
type Workspace struct {
	Name      string
	CreatedAt time.Time
	Policy    contact.Policy
}

// Token is an API credential. Only the hash of its secret is stored.
type Token struct {
	ID        string
	Workspace string
	Role      kernel.Role
	Hash      []byte
	Label     string
	CreatedAt time.Time
	RevokedAt time.Time
}

// Directory keeps workspaces, their policies and tokens.
type Directory interface {
	// CreateWorkspace stores a new workspace. Errors: ErrWorkspaceExists.
	CreateWorkspace(ctx context.Context, w Workspace) error
	// Workspace returns one workspace. Errors: kernel.ErrWorkspaceNotFound.
	Workspace(ctx context.Context, name string) (Workspace, error)
	// Workspaces lists every workspace by name.
	Workspaces(ctx context.Context) ([]Workspace, error)
	// SavePolicy replaces a workspace's policy. Errors: kernel.ErrWorkspaceNotFound.
	SavePolicy(ctx context.Context, name string, p contact.Policy) error
	// CreateToken stores a new token.
	CreateToken(ctx context.Context, t Token) error
	// Token returns a token by id, revoked or not. Errors: kernel.ErrNotFound.
	Token(ctx context.Context, id string) (Token, error)
	// RevokeToken marks a token revoked. Errors: kernel.ErrNotFound.
	RevokeToken(ctx context.Context, id string, at time.Time) error
	// Tokens lists a workspace's tokens, oldest first.
	Tokens(ctx context.Context, workspace string) ([]Token, error)
}

// ErrWorkspaceExists is returned when creating a workspace whose name is taken.
var ErrWorkspaceExists = &kernel.Error{Code: kernel.CodeConflict, Reason: "workspace-exists", Message: "a workspace with this name already exists"}

// Cursor is a place in a view's order (newest first), for keyset pagination.
type Cursor struct {
	SortAt time.Time
	ID     string
}

// ListQuery selects one page of a view. Empty fields don't filter.
type ListQuery struct {
	Workspace  string
	View       string
	Q          string // name, email or phone contains; or the exact id
	EmailIndex string // blind index of an exact email
	PhoneIndex string // blind index of an exact phone
	// Tag is the tag asked for; the service turns it into TagIndex, its
	// blind index, which is all the views hold and filter on.
	Tag           string
	TagIndex      string
	DeletedBy     string
	DeletedAfter  time.Time
	DeletedBefore time.Time
	// Operations, when set, keeps the contacts of the trash view that any
	// of these operations moved there (their trashed_operation).
	Operations []string
	After      *Cursor
	Limit      int
}

// ListItem is one contact of a view, with its place in the view's order.
type ListItem struct {
	Contact contact.Snapshot
	SortAt  time.Time
}

// ReadModels answers queries from the projections' views.
type ReadModels interface {
	// List returns up to q.Limit items after q.After, newest first.
	List(ctx context.Context, q ListQuery) ([]ListItem, error)
}

// Progress tells how far projections are, so that queries can wait to read their own writes.
type Progress interface {
	// WaitFor returns when projection has applied every event up to pos, or
	// fails with a kernel.CodeUnavailable error when that takes too long.
	WaitFor(ctx context.Context, projection string, pos kernel.Position) error
}

// LogQuery selects events of one workspace for the audit log. Zero fields don't filter.
type LogQuery struct {
	Workspace string
	// After is the position to resume after (the zero Position: from the start).
	After kernel.Position
	// Since is inclusive, Until exclusive.
	Since, Until time.Time
	Types        []string
	Actor        string // a principal, such as a token id
	Stream       string
	Limit        int
}

// LogReader is implemented by event stores that can read one workspace's
// events in global order with the filters applied in the store (an index on
// workspace and position), so the audit log never reads other workspaces' events.
type LogReader interface {
	// ReadLog returns up to q.Limit events of q.Workspace after q.After that
	// match the filters, in global order. Like ReadAll, it never returns an
	// event before one that may still commit, so resuming after the last
	// position read skips nothing.
	ReadLog(ctx context.Context, q LogQuery) ([]kernel.Record, error)
}

// Matches reports whether r passes the query's filters (the workspace included).
func (q LogQuery) Matches(r kernel.Record) bool {
	if r.Workspace != q.Workspace || (q.Stream != "" && r.Stream != q.Stream) || (q.Actor != "" && r.Actor.Principal != q.Actor) {
		return false
	}
	if (!q.Since.IsZero() && r.Time.Before(q.Since)) || (!q.Until.IsZero() && !r.Time.Before(q.Until)) {
		return false
	}
	if len(q.Types) > 0 {
		for _, t := range q.Types {
			if t == r.Type {
				return true
			}
		}
		return false
	}
	return true
}

// Idempotency is the stored outcome of a request sent with an
// Idempotency-Key: while Done is false the request is still running. A key
// belongs to the principal (token) that sent it: another token's request
// with the same key is another request.
type Idempotency struct {
	Workspace string
	// Principal is the token id the key belongs to; "" on records stored
	// before keys were scoped to tokens (they are never replayed).
	Principal   string
	Key         string
	Fingerprint []byte // of the request: method, path, query and body; nil until known
	Done        bool
	LockedUntil time.Time // a pending claim older than this may be taken over
	Status      int
	Header      map[string]string
	Body        []byte
	// ContactID names the contact the answer is about, if any.
	ContactID string
	// ErasedBy is the tombstone event of that contact once it is erased:
	// the record then keeps only ids (key, principal, fingerprint, contact,
	// tombstone), and a repeat is answered 410 instead of the answer.
	ErasedBy  string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// IdempotencyStore keeps the outcomes of requests sent with an Idempotency-Key.
type IdempotencyStore interface {
	// ClaimIdempotency returns the record of (workspace, principal, key)
	// (or one stored before keys were scoped to tokens), first creating a
	// pending one (claimed) when there is none, or when a pending one's lock
	// expired (its request died with its process) and its fingerprint, when
	// both are known, equals rec's: a lapsed claim is never taken over by
	// another request.
	ClaimIdempotency(ctx context.Context, rec Idempotency) (existing Idempotency, claimed bool, err error)
	// SetIdempotencyFingerprint records the fingerprint of a claimed key's
	// request once its body has been read, unless one is recorded already;
	// it reports whether the recorded one equals fp.
	SetIdempotencyFingerprint(ctx context.Context, workspace, principal, key string, fp []byte) (bool, error)
	// CompleteIdempotency stores the outcome of a claimed key.
	CompleteIdempotency(ctx context.Context, rec Idempotency) error
	// ReleaseIdempotency forgets a claimed key whose request failed, so a retry runs again.
	ReleaseIdempotency(ctx context.Context, workspace, principal, key string) error
	// ExpireIdempotency deletes the records that expired before now.
	ExpireIdempotency(ctx context.Context, now time.Time) (int, error)
	// EraseIdempotency strips every stored answer about an erased contact
	// down to ids, naming its tombstone; it returns how many it stripped.
	EraseIdempotency(ctx context.Context, workspace string, contactID contact.ID, tombstone string) (int, error)
}

// IdentityQuery asks for the contacts with any of the given blind indexes;
// empty ones are ignored.
type IdentityQuery struct {
	ExtIndex   string // blind index of (source system, external id)
	EmailIndex string
	PhoneIndex string
}

// IdentityMatch is a live contact (active, archived or in trash) found by one of its blind indexes.
type IdentityMatch struct {
	ID    contact.ID
	State contact.State
	Spam  bool
	// ByExt, ByEmail and ByPhone say which of the query's indexes it matched.
	ByExt, ByEmail, ByPhone bool
}

// Identities finds live contacts by blind index. It is kept by the
// identities projection; callers wait for it (Progress.WaitFor) to read
// their own writes.
type Identities interface {
	// FindIdentities returns the contacts of workspace matching any non-empty
	// index of q, ordered by id; none when every index is empty.
	FindIdentities(ctx context.Context, workspace string, q IdentityQuery) ([]IdentityMatch, error)
	// HeldContacts returns up to limit contacts of workspace under legal
	// hold, ordered by id, after the contact id after ("": from the first).
	HeldContacts(ctx context.Context, workspace, after string, limit int) ([]contact.Snapshot, error)
}

// IdentityBatchFinder is implemented by identity stores that look up many
// queries at once (an import looks up each chunk of rows in one go).
type IdentityBatchFinder interface {
	// FindIdentitiesMany returns, for each of qs, what FindIdentities
	// returns for it.
	FindIdentitiesMany(ctx context.Context, workspace string, qs []IdentityQuery) ([][]IdentityMatch, error)
}

// IdentityRow is a contact of the identity index as a batched lookup finds it.
type IdentityRow struct {
	ID    contact.ID
	State contact.State
	Spam  bool
}

// IdentityIndexes returns the distinct non-empty indexes of each kind that qs name.
func IdentityIndexes(qs []IdentityQuery) (ext, email, phone []string) {
	seen := map[string]bool{}
	add := func(list *[]string, kind, v string) {
		if v != "" && !seen[kind+v] {
			seen[kind+v] = true
			*list = append(*list, v)
		}
	}
	for _, q := range qs {
		add(&ext, "x", q.ExtIndex)
		add(&email, "e", q.EmailIndex)
		add(&phone, "p", q.PhoneIndex)
	}
	return ext, email, phone
}

// MatchIdentities answers FindIdentitiesMany from the rows that each index
// value found (the store looks each kind of index up once for the batch).
func MatchIdentities(qs []IdentityQuery, byExt, byEmail, byPhone map[string][]IdentityRow) [][]IdentityMatch {
	out := make([][]IdentityMatch, len(qs))
	for i, q := range qs {
		found := map[contact.ID]*IdentityMatch{}
		var order []contact.ID
		mark := func(rows []IdentityRow, set func(*IdentityMatch)) {
			for _, r := range rows {
				m := found[r.ID]
				if m == nil {
					m = &IdentityMatch{ID: r.ID, State: r.State, Spam: r.Spam}
					found[r.ID] = m
					order = append(order, r.ID)
				}
				set(m)
			}
		}
		if q.ExtIndex != "" {
			mark(byExt[q.ExtIndex], func(m *IdentityMatch) { m.ByExt = true })
		}
		if q.EmailIndex != "" {
			mark(byEmail[q.EmailIndex], func(m *IdentityMatch) { m.ByEmail = true })
		}
		if q.PhoneIndex != "" {
			mark(byPhone[q.PhoneIndex], func(m *IdentityMatch) { m.ByPhone = true })
		}
		slices.SortFunc(order, func(a, b contact.ID) int { return strings.Compare(a.String(), b.String()) })
		for _, id := range order {
			out[i] = append(out[i], *found[id])
		}
	}
	return out
}

// FindIdentitiesMany looks up many queries: in one go when the store can,
// else one by one.
func FindIdentitiesMany(ctx context.Context, ids Identities, workspace string, qs []IdentityQuery) ([][]IdentityMatch, error) {
	if bf, ok := ids.(IdentityBatchFinder); ok {
		return bf.FindIdentitiesMany(ctx, workspace, qs)
	}
	out := make([][]IdentityMatch, len(qs))
	for i, q := range qs {
		ms, err := ids.FindIdentities(ctx, workspace, q)
		if err != nil {
			return nil, err
		}
		out[i] = ms
	}
	return out, nil
}
