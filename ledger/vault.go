package ledger

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/oklog/ulid/v2"
)

// Vault hands out contacts' data keys and workspaces' blind-index keys,
// wrapping them with the key service before they reach the key store.
// Data keys are never cached beyond one call: destroying the key row is the
// erasure, and no copy may outlive it in memory.
type Vault struct {
	store KeyStore
	wrap  KeyWrapper
	// Observe, when set, is told of each key-vault operation (for metrics):
	// create, unwrap, destroy, rewrap.
	Observe func(op string, err error)

	mu      sync.Mutex
	bidx    map[string]shred.BlindIndex
	signing ed25519.PrivateKey
}

// NewVault returns a vault over a key store and a key service.
func NewVault(store KeyStore, wrap KeyWrapper) *Vault {
	return &Vault{store: store, wrap: wrap, bidx: map[string]shred.BlindIndex{}}
}

func bidxOwner(workspace string) string { return "bidx:" + workspace }

// NewContactKey creates and stores the data key of a new contact.
func (v *Vault) NewContactKey(ctx context.Context, workspace string, id contact.ID, now time.Time) (shred.DataKey, string, error) {
	k, err := shred.NewDataKey()
	if err != nil {
		return shred.DataKey{}, "", err
	}
	keyID := "dk_" + ulid.Make().String()
	if err := v.put(ctx, workspace, id.String(), keyID, k[:], now); err != nil {
		return shred.DataKey{}, "", err
	}
	return k, keyID, nil
}

// WrapNewKey makes a new contact's data key and wraps it, without storing
// it: the caller stores the row with the contact's first events
// (KeyedAppender), so that the key and the events commit together.
func (v *Vault) WrapNewKey(ctx context.Context, workspace string, id contact.ID, now time.Time) (ContactKey, KeyRow, error) {
	k, err := shred.NewDataKey()
	if err != nil {
		return ContactKey{}, KeyRow{}, err
	}
	keyID := "dk_" + ulid.Make().String()
	kek, wrapped, err := v.wrap.Wrap(ctx, k[:])
	v.observe("create", err)
	if err != nil {
		return ContactKey{}, KeyRow{}, fmt.Errorf("wrap key of %s: %w", id, err)
	}
	ck, err := ContactKey{Key: k, KeyID: keyID}.withSealer()
	if err != nil {
		return ContactKey{}, KeyRow{}, err
	}
	return ck, KeyRow{Owner: id.String(), Workspace: workspace, KeyID: keyID, KEKID: kek, Wrapped: wrapped, CreatedAt: now}, nil
}

func (v *Vault) observe(op string, err error) {
	if v.Observe != nil {
		v.Observe(op, err)
	}
}

func (v *Vault) put(ctx context.Context, workspace, owner, keyID string, key []byte, now time.Time) (err error) {
	defer func() { v.observe("create", err) }()
	kek, wrapped, err := v.wrap.Wrap(ctx, key)
	if err != nil {
		return fmt.Errorf("wrap key of %s: %w", owner, err)
	}
	return v.store.PutKey(ctx, KeyRow{Owner: owner, Workspace: workspace, KeyID: keyID, KEKID: kek, Wrapped: wrapped, CreatedAt: now})
}

// ContactKey is a contact's data key, or the news that it was destroyed.
type ContactKey struct {
	Key       shred.DataKey
	KeyID     string
	Destroyed bool
	// sealer is the key's cipher, made once for the many events of a stream.
	sealer *shred.Sealer
}

// withSealer returns the key with its cipher made, once.
func (k ContactKey) withSealer() (ContactKey, error) {
	if k.Destroyed || k.sealer != nil {
		return k, nil
	}
	s, err := shred.NewSealer(k.Key)
	if err != nil {
		return k, err
	}
	k.sealer = &s
	return k, nil
}

// ContactKeys returns the data keys of the given contacts. A contact whose
// key was destroyed (or never existed) gets Destroyed: its data reads as shredded.
func (v *Vault) ContactKeys(ctx context.Context, workspace string, ids []contact.ID) (map[contact.ID]ContactKey, error) {
	owners := make([]string, len(ids))
	for i, id := range ids {
		owners[i] = id.String()
	}
	rows, err := v.store.GetKeys(ctx, workspace, owners)
	if err != nil {
		return nil, fmt.Errorf("get keys: %w", err)
	}
	out := make(map[contact.ID]ContactKey, len(ids))
	for _, id := range ids {
		row, ok := rows[id.String()]
		if !ok {
			out[id] = ContactKey{Destroyed: true}
			continue
		}
		raw, err := v.wrap.Unwrap(ctx, row.KEKID, row.Wrapped)
		v.observe("unwrap", err)
		if err != nil {
			return nil, fmt.Errorf("unwrap key of %s: %w", id, err)
		}
		if len(raw) != shred.KeySize {
			return nil, fmt.Errorf("unwrap key of %s: %d bytes", id, len(raw))
		}
		var k shred.DataKey
		copy(k[:], raw)
		clear(raw)
		ck, err := ContactKey{Key: k, KeyID: row.KeyID}.withSealer()
		if err != nil {
			return nil, err
		}
		out[id] = ck
	}
	return out, nil
}

// ContactKey returns one contact's data key.
func (v *Vault) ContactKey(ctx context.Context, workspace string, id contact.ID) (ContactKey, error) {
	m, err := v.ContactKeys(ctx, workspace, []contact.ID{id})
	if err != nil {
		return ContactKey{}, err
	}
	return m[id], nil
}

// Destroy destroys a contact's data key: from then on its personal data is
// unreadable everywhere. Destroying a destroyed key does nothing.
func (v *Vault) Destroy(ctx context.Context, workspace string, id contact.ID) error {
	_, err := v.store.DestroyKey(ctx, workspace, id.String())
	v.observe("destroy", err)
	if err != nil {
		return fmt.Errorf("destroy key of %s: %w", id, err)
	}
	return nil
}

// DestroyMany destroys the data keys of many contacts of a workspace: in
// one transaction when the key store can, else one by one.
func (v *Vault) DestroyMany(ctx context.Context, workspace string, ids []contact.ID) error {
	if len(ids) == 0 {
		return nil
	}
	bs, ok := v.store.(KeyBatchStore)
	if !ok {
		for _, id := range ids {
			if err := v.Destroy(ctx, workspace, id); err != nil {
				return err
			}
		}
		return nil
	}
	owners := make([]string, len(ids))
	for i, id := range ids {
		owners[i] = id.String()
	}
	_, err := bs.DestroyKeys(ctx, workspace, owners)
	for range ids {
		v.observe("destroy", err)
	}
	if err != nil {
		return fmt.Errorf("destroy %d keys: %w", len(ids), err)
	}
	return nil
}

// BlindIndex returns the workspace's blind indexer, creating its key on first use.
func (v *Vault) BlindIndex(ctx context.Context, workspace string) (shred.BlindIndex, error) {
	v.mu.Lock()
	b, ok := v.bidx[workspace]
	v.mu.Unlock()
	if ok {
		return b, nil
	}
	owner := bidxOwner(workspace)
	for attempt := 0; ; attempt++ {
		rows, err := v.store.GetKeys(ctx, workspace, []string{owner})
		if err != nil {
			return shred.BlindIndex{}, fmt.Errorf("blind index key: %w", err)
		}
		if row, ok := rows[owner]; ok {
			raw, err := v.wrap.Unwrap(ctx, row.KEKID, row.Wrapped)
			if err != nil {
				return shred.BlindIndex{}, fmt.Errorf("unwrap blind index key: %w", err)
			}
			if b, err = shred.NewBlindIndex(raw); err != nil {
				return shred.BlindIndex{}, err
			}
			v.mu.Lock()
			v.bidx[workspace] = b
			v.mu.Unlock()
			return b, nil
		}
		if attempt > 0 {
			return shred.BlindIndex{}, fmt.Errorf("blind index key of %s vanished", workspace)
		}
		k, err := shred.NewDataKey()
		if err != nil {
			return shred.BlindIndex{}, err
		}
		err = v.put(ctx, workspace, owner, "bk_"+ulid.Make().String(), k[:], time.Now().UTC())
		if err != nil && !errors.Is(err, kernel.ErrAlreadyExists) {
			return shred.BlindIndex{}, err
		}
	}
}

// Rotate re-wraps every key that is not wrapped under the active
// key-encryption key, so that older KEKs can be retired. Keys destroyed
// meanwhile stay destroyed; keys that orphans names are destroyed instead
// of re-wrapped. It returns how many keys it re-wrapped and destroyed;
// progress, when set, is told the keys handled so far after each page.
func (v *Vault) Rotate(ctx context.Context, store KeyRewrapper, orphans func(context.Context, []KeyRow) (map[string]bool, error), progress func(done int)) (int, int, error) {
	active := v.wrap.Active()
	n, removed := 0, 0
	for {
		rows, err := store.KeysNotWrappedBy(ctx, active, 500)
		if err != nil {
			return n, removed, fmt.Errorf("rotate: %w", err)
		}
		if len(rows) == 0 {
			return n, removed, nil
		}
		orphan := map[string]bool{}
		if orphans != nil {
			if orphan, err = orphans(ctx, rows); err != nil {
				return n, removed, fmt.Errorf("rotate: %w", err)
			}
		}
		for _, row := range rows {
			if orphan[row.Owner] {
				ok, err := v.store.DestroyKey(ctx, row.Workspace, row.Owner)
				v.observe("destroy", err)
				if err != nil {
					return n, removed, fmt.Errorf("rotate %s: %w", row.Owner, err)
				}
				if ok {
					removed++
				}
				continue
			}
			raw, err := v.wrap.Unwrap(ctx, row.KEKID, row.Wrapped)
			if err != nil {
				return n, removed, fmt.Errorf("rotate %s: %w", row.Owner, err)
			}
			kek, wrapped, err := v.wrap.Wrap(ctx, raw)
			clear(raw)
			if err != nil {
				return n, removed, fmt.Errorf("rotate %s: %w", row.Owner, err)
			}
			if kek != active {
				return n, removed, fmt.Errorf("rotate: the active key-encryption key changed during rotation")
			}
			ok, err := store.Rewrap(ctx, row.Owner, row.KEKID, kek, wrapped)
			v.observe("rewrap", err)
			if err != nil {
				return n, removed, fmt.Errorf("rotate %s: %w", row.Owner, err)
			}
			if ok {
				n++
			}
		}
		if progress != nil {
			progress(n + removed)
		}
	}
}

// signingOwner is the key-vault owner of the deployment's receipt-signing key.
const signingOwner = "sig:receipts"

// SigningKey returns the deployment's ed25519 key that signs erasure
// receipts, creating it on first use. Its seed lives in the key vault
// wrapped by the KEK like every other key, so replicas that share the
// store and the KEK sign with the same key.
func (v *Vault) SigningKey(ctx context.Context) (ed25519.PrivateKey, error) {
	return v.signingKey(ctx, true)
}

// ErrNoSigningKey is returned when the deployment has no receipt-signing key yet.
var ErrNoSigningKey = errors.New("this deployment has no receipt-signing key (it never issued a receipt)")

// ExistingSigningKey returns the deployment's receipt-signing key without
// ever creating one. Errors: ErrNoSigningKey.
func (v *Vault) ExistingSigningKey(ctx context.Context) (ed25519.PrivateKey, error) {
	return v.signingKey(ctx, false)
}

func (v *Vault) signingKey(ctx context.Context, create bool) (ed25519.PrivateKey, error) {
	v.mu.Lock()
	k := v.signing
	v.mu.Unlock()
	if k != nil {
		return k, nil
	}
	for attempt := 0; ; attempt++ {
		rows, err := v.store.GetKeys(ctx, "", []string{signingOwner})
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		if row, ok := rows[signingOwner]; ok {
			seed, err := v.wrap.Unwrap(ctx, row.KEKID, row.Wrapped)
			if err != nil {
				return nil, fmt.Errorf("unwrap signing key: %w", err)
			}
			if len(seed) != ed25519.SeedSize {
				return nil, fmt.Errorf("signing key: %d bytes", len(seed))
			}
			k = ed25519.NewKeyFromSeed(seed)
			clear(seed)
			v.mu.Lock()
			v.signing = k
			v.mu.Unlock()
			return k, nil
		}
		if !create {
			return nil, ErrNoSigningKey
		}
		if attempt > 0 {
			return nil, fmt.Errorf("the signing key vanished")
		}
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		err = v.put(ctx, "", signingOwner, "sk_"+ulid.Make().String(), seed, time.Now().UTC())
		clear(seed)
		if err != nil && !errors.Is(err, kernel.ErrAlreadyExists) {
			return nil, err
		}
	}
}

// secretOwner is the key-vault owner of a webhook signing secret.
func secretOwner(id string) string { return "whsec:" + id }

// PutSecret stores a webhook signing secret, wrapped by the key-encryption
// key like every key, so `ledger keys rotate` re-wraps it too.
func (v *Vault) PutSecret(ctx context.Context, workspace, id string, secret []byte, now time.Time) error {
	return v.put(ctx, workspace, secretOwner(id), id, secret, now)
}

// Secrets returns the webhook signing secrets with the given ids; missing
// ones are absent from the map.
func (v *Vault) Secrets(ctx context.Context, workspace string, ids []string) (map[string][]byte, error) {
	owners := make([]string, len(ids))
	for i, id := range ids {
		owners[i] = secretOwner(id)
	}
	rows, err := v.store.GetKeys(ctx, workspace, owners)
	if err != nil {
		return nil, fmt.Errorf("get webhook secrets: %w", err)
	}
	out := make(map[string][]byte, len(rows))
	for _, id := range ids {
		row, ok := rows[secretOwner(id)]
		if !ok {
			continue
		}
		raw, err := v.wrap.Unwrap(ctx, row.KEKID, row.Wrapped)
		v.observe("unwrap", err)
		if err != nil {
			return nil, fmt.Errorf("unwrap webhook secret %s: %w", id, err)
		}
		out[id] = raw
	}
	return out, nil
}

// DestroySecret deletes a webhook signing secret.
func (v *Vault) DestroySecret(ctx context.Context, workspace, id string) error {
	_, err := v.store.DestroyKey(ctx, workspace, secretOwner(id))
	v.observe("destroy", err)
	return err
}
