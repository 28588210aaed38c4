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

// Lease lets one process at a time run a named background task when
// several share a store: a projection (Acquire, held while it runs), the
// retention sweep or a workspace's restore jobs (TryAcquire, per round).
// It is the one port for the store's advisory locks. The embedded store has
// one process and needs none (nil); PostgreSQL implements it with session
// advisory locks. Correctness never rests on it alone: appends are
// optimistic, checkpoints move by compare-and-set, and a job checks each
// contact's stream before restoring it.
type Lease interface {
	// Acquire blocks until this process holds the lease called name. The
	// returned context ends when the lease is lost; release gives it up.
	Acquire(ctx context.Context, name string) (leaseCtx context.Context, release func(), err error)
	// TryAcquire takes the named lease if it is free; release gives it back.
	TryAcquire(ctx context.Context, name string) (release func(), ok bool, err error)
}

// IdentityClaims is the synchronous half of identity uniqueness, in the
// state store: one claim per (workspace, kind, index), written before the
// append of the event that gives a contact the value, under a unique key,
// so that of two commands racing for one value exactly one gets it, on any
// replica. The identity index (a projection) is the other half: it knows
// every contact, claims or not, but only eventually. A claim whose contact
// does not hold the value any more (it changed, was erased, or its create
// died before appending) is taken over by the next claimant.
type IdentityClaims interface {
	// ClaimIdentity records c unless (workspace, kind, index) is claimed:
	// then it returns the claim there, and inserted is false (the claim may
	// be c.Contact's own already).
	ClaimIdentity(ctx context.Context, c IdentityClaim) (cur IdentityClaim, inserted bool, err error)
	// IdentityClaimOf returns the claim of (workspace, kind, index), if any.
	IdentityClaimOf(ctx context.Context, workspace, kind, index string) (IdentityClaim, bool, error)
	// TakeOverIdentity gives the claim of (c.Workspace, c.Kind, c.Index) to
	// c.Contact if it is still from's; it reports whether it did.
	TakeOverIdentity(ctx context.Context, c IdentityClaim, from contact.ID) (bool, error)
	// ReleaseIdentity deletes the claim of (workspace, kind, index) if it is id's.
	ReleaseIdentity(ctx context.Context, workspace, kind, index string, id contact.ID) error
	// ClaimIdentities is ClaimIdentity for many values at once, in one
	// statement: cur[i] and inserted[i] answer cs[i]. No value may be in
	// cs twice.
	ClaimIdentities(ctx context.Context, cs []IdentityClaim) (cur []IdentityClaim, inserted []bool, err error)
	// ReleaseIdentities deletes each claim of cs that is still its
	// Contact's, in one statement.
	ReleaseIdentities(ctx context.Context, cs []IdentityClaim) error
}

// LogCounter is implemented by event stores that count a workspace's events.
type LogCounter interface {
	// CountLog counts the events matching q after q.After, up to q.Limit
	// (when set): counting stops there.
	CountLog(ctx context.Context, q LogQuery) (int64, error)
}

// WebhookStore keeps subscriptions, their delivery checkpoints, pending
// retries, attempts and erasure acknowledgments.
type WebhookStore interface {
	// CreateWebhook stores a new subscription whose delivery starts after start.
	CreateWebhook(ctx context.Context, w Webhook, start kernel.Position) error
	// Webhook returns one subscription of workspace. Errors: kernel.ErrNotFound.
	Webhook(ctx context.Context, workspace, id string) (Webhook, error)
	// Webhooks lists workspace's subscriptions by id, or every
	// workspace's when workspace is empty.
	Webhooks(ctx context.Context, workspace string) ([]Webhook, error)
	// UpdateWebhook replaces a subscription's settings and secrets and
	// bumps its revision. Errors: kernel.ErrNotFound.
	UpdateWebhook(ctx context.Context, w Webhook) error
	// DeleteWebhook deletes a subscription with its progress, pending
	// events and attempts; its erasure acknowledgments stay (receipts show
	// them). Errors: kernel.ErrNotFound.
	DeleteWebhook(ctx context.Context, workspace, id string) error
	// WebhookProgress returns a subscription's progress. Errors: kernel.ErrNotFound.
	WebhookProgress(ctx context.Context, id string) (WebhookProgress, error)
	// PendingDeliveries returns up to limit pending events of a
	// subscription after position after, in log order.
	PendingDeliveries(ctx context.Context, id string, after kernel.Position, limit int) ([]PendingDelivery, error)
	// CommitDeliveries writes a batch. Errors: kernel.ErrConcurrency when
	// the subscription's checkpoint is no longer b.From or its generation
	// no longer b.Generation (a replay, another deliverer),
	// kernel.ErrNotFound when it was deleted.
	CommitDeliveries(ctx context.Context, b DeliveryBatch) error
	// ReplayWebhook moves a subscription's checkpoint back to after, never
	// forward (when since is set, events older than since are skipped),
	// forgets its pending events after that position (they come again),
	// moves its generation (so a deliverer's commit in flight fails and it
	// sends again from the checkpoint) and bumps its revision. Errors:
	// kernel.ErrNotFound.
	ReplayWebhook(ctx context.Context, workspace, id string, after kernel.Position, since time.Time) error
	// AddAttempts records attempts made outside delivery (test messages).
	AddAttempts(ctx context.Context, attempts []DeliveryAttempt) error
	// DeliveryAttempts returns one page of a subscription's attempts, newest first.
	DeliveryAttempts(ctx context.Context, workspace, id string, q AttemptQuery) ([]DeliveryAttempt, error)
	// ErasureAcks returns the erasure acknowledgments of a contact, by subscription.
	ErasureAcks(ctx context.Context, workspace, contactID string) ([]ErasureAck, error)
	// PruneAttempts deletes attempts made before before, and reports how many.
	PruneAttempts(ctx context.Context, before time.Time) (int, error)
}

// WebhookSender sends webhooks over HTTP without reaching the deployment's
// own network: addresses that are not public are refused unless allowed.
type WebhookSender interface {
	// CheckURL refuses a URL that is malformed or whose host is, or
	// resolves to, an address that may not be delivered to. Errors: a
	// kernel.CodeInvalid error naming the field "url".
	CheckURL(ctx context.Context, raw string) error
	// Send makes one attempt to deliver m.
	Send(ctx context.Context, m WebhookMessage) WebhookResponse
}

// RowReader yields the rows of an import file, one at a time, without
// holding the file in memory. Next returns io.EOF after the last row, and a
// *FileError when the file itself is malformed.
type RowReader interface {
	Next() (ImportRow, error)
}

// Observer is told what the service does, for metrics. Implementations
// must not keep or label anything personal: they get names and errors only.
type Observer interface {
	// Command records a command (create, update, archive, ...) and its result.
	Command(name string, err error, d time.Duration)
	// Append records an append to the log.
	Append(d time.Duration, err error)
	// RetentionSkipped records n contacts a retention sweep left in trash
	// past the window, and why (SkipContactHold, SkipWorkspaceHold).
	RetentionSkipped(reason string, n int)
}
