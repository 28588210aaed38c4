// Package keyring is the key service: it wraps contacts' data keys with a
// key-encryption key (KEK). The embedded default keeps local KEKs in the
// data directory (files readable by the owner only); production points
// --kek-url at a KMS or Vault (awskms://, gcpkms://, azurekeyvault://,
// hashivault://, through gocloud.dev/secrets in builds with the kms tag),
// so the KEK never leaves it.
//
// A keyring knows several KEKs: the active one wraps new keys, older ones
// still unwrap, until `ledger keys rotate` re-wraps every live key under the
// active KEK and retires the rest. A retired KEK is destroyed, which makes
// any copy of a data key wrapped under it useless, including copies of keys
// that were shredded since.
package keyring

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Keyring wraps and unwraps data keys with its key-encryption keys.
type Keyring struct {
	dir string // the local keyring's directory, or "" for a URL keyring

	mu      sync.RWMutex
	active  string
	keepers map[string]keeper
	stamp   time.Time // the directory's modification time when last loaded
}

// keeper wraps and unwraps with one key-encryption key: a local key
// (local.go) or a key service's (drivers_kms.go; gocloud.dev/secrets'
// *Keeper).
type keeper interface {
	Encrypt(ctx context.Context, plaintext []byte) ([]byte, error)
	Decrypt(ctx context.Context, ciphertext []byte) ([]byte, error)
	Close() error
}

// ErrUnknownKEK means a wrapped key names a KEK this keyring doesn't hold (it was retired).
var ErrUnknownKEK = errors.New("the key-encryption key that wrapped this key is not in the keyring (retired?)")

const localPrefix = "local:"

// OpenLocal opens the local keyring in dir, creating the directory (mode
// 0700) and a first KEK (mode 0600) when there is none. It refuses key files
// that others can read.
func OpenLocal(dir string) (*Keyring, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if err := checkPrivate(dir, true); err != nil {
		return nil, err
	}
	k := &Keyring{dir: dir, keepers: map[string]keeper{}}
	if err := k.loadLocal(); err != nil {
		return nil, err
	}
	if k.active == "" {
		if _, err := k.AddLocal(); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// checkPrivate refuses a file or directory that group or others can access.
func checkPrivate(path string, dir bool) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		what := "key file"
		if dir {
			what = "key directory"
		}
		return fmt.Errorf("keyring: %s %s has mode %v; it must not be readable by group or others (chmod %s %s)",
			what, path, st.Mode().Perm(), map[bool]string{true: "700", false: "600"}[dir], path)
	}
	return nil
}

// refresh reloads a local keyring when its directory changed: another
// process (`ledger keys rotate`) may have added a KEK, which must wrap new
// keys from now on, or retired one.
func (k *Keyring) refresh() error {
	if k.dir == "" {
		return nil
	}
	st, err := os.Stat(k.dir)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	k.mu.RLock()
	same := st.ModTime().Equal(k.stamp)
	k.mu.RUnlock()
	if same {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.loadLocalLocked()
}

func (k *Keyring) loadLocal() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.loadLocalLocked()
}

func (k *Keyring) loadLocalLocked() error {
	st, err := os.Stat(k.dir)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	present := map[string]bool{}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		id, ok := strings.CutPrefix(name, "kek-")
		if !ok || !strings.HasSuffix(id, ".key") || e.Type()&fs.ModeType != 0 {
			continue
		}
		id = strings.TrimSuffix(id, ".key")
		if _, err := ulid.ParseStrict(id); err != nil {
			continue
		}
		path := filepath.Join(k.dir, name)
		if err := checkPrivate(path, false); err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("keyring: %w", err)
		}
		sk, err := parseLocalKey(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("keyring: %s: %w", path, err)
		}
		present[localPrefix+id] = true
		if _, ok := k.keepers[localPrefix+id]; !ok {
			k.keepers[localPrefix+id] = &localKeeper{key: sk}
		}
		ids = append(ids, id)
	}
	for id, kp := range k.keepers {
		if !present[id] {
			kp.Close()
			delete(k.keepers, id)
		}
	}
	k.active = ""
	if len(ids) > 0 {
		slices.Sort(ids)
		k.active = localPrefix + ids[len(ids)-1]
	}
	k.stamp = st.ModTime()
	return nil
}

// AddLocal creates a new local KEK and makes it the active one. It returns its id.
func (k *Keyring) AddLocal() (string, error) {
	if k.dir == "" {
		return "", errors.New("keyring: only a local keyring can create keys; rotate the key in the KMS instead")
	}
	var sk [32]byte
	if _, err := rand.Read(sk[:]); err != nil {
		return "", fmt.Errorf("keyring: %w", err)
	}
	id := ulid.Make().String()
	path := filepath.Join(k.dir, "kek-"+id+".key")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("keyring: %w", err)
	}
	_, werr := f.WriteString(base64.URLEncoding.EncodeToString(sk[:]) + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return "", fmt.Errorf("keyring: write %s: %w", path, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.loadLocalLocked(); err != nil {
		return "", err
	}
	return k.active, nil
}

// OpenURL opens a keyring whose active KEK is the keeper at url; previous
// names keepers of earlier KEKs that may still have wrapped keys.
func OpenURL(ctx context.Context, url string, previous ...string) (*Keyring, error) {
	k := &Keyring{keepers: map[string]keeper{}}
	for _, u := range append(previous, url) {
		kp, err := openURL(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("keyring: open key service: %w", err)
		}
		k.keepers[URLKEKID(u)] = kp
	}
	k.active = URLKEKID(url)
	return k, nil
}

// URLKEKID names the KEK behind a keeper URL without revealing the URL.
func URLKEKID(url string) string {
	sum := sha256.Sum256([]byte(url))
	return "url:" + hex.EncodeToString(sum[:8])
}

// Active returns the id of the KEK that wraps new keys.
func (k *Keyring) Active() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.active
}

// IDs returns the ids of every KEK the keyring holds.
func (k *Keyring) IDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]string, 0, len(k.keepers))
	for id := range k.keepers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Wrap encrypts a data key under the active KEK: for a local keyring, the
// newest in its directory.
func (k *Keyring) Wrap(ctx context.Context, plaintext []byte) (string, []byte, error) {
	if err := k.refresh(); err != nil {
		return "", nil, err
	}
	k.mu.RLock()
	id, kp := k.active, k.keepers[k.active]
	k.mu.RUnlock()
	if kp == nil {
		return "", nil, errors.New("keyring: no key-encryption key")
	}
	ct, err := kp.Encrypt(ctx, plaintext)
	if err != nil {
		return "", nil, fmt.Errorf("wrap with %s: %w", id, err)
	}
	return id, ct, nil
}

// Unwrap decrypts a data key wrapped under the KEK named kekID.
func (k *Keyring) Unwrap(ctx context.Context, kekID string, wrapped []byte) ([]byte, error) {
	if err := k.refresh(); err != nil {
		return nil, err
	}
	k.mu.RLock()
	kp, ok := k.keepers[kekID]
	k.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unwrap with %s: %w", kekID, ErrUnknownKEK)
	}
	pt, err := kp.Decrypt(ctx, wrapped)
	if err != nil {
		return nil, fmt.Errorf("unwrap with %s: %w", kekID, err)
	}
	return pt, nil
}

// Retire destroys every local KEK but the active one. Call it only once no
// live key is wrapped under them (after re-wrapping).
func (k *Keyring) Retire() ([]string, error) {
	if k.dir == "" {
		return nil, errors.New("keyring: only a local keyring retires its keys; disable old key versions in the KMS")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var retired []string
	for id, kp := range k.keepers {
		if id == k.active {
			continue
		}
		path := filepath.Join(k.dir, "kek-"+strings.TrimPrefix(id, localPrefix)+".key")
		if err := shredFile(path); err != nil {
			return retired, err
		}
		kp.Close()
		delete(k.keepers, id)
		retired = append(retired, id)
	}
	slices.Sort(retired)
	if st, err := os.Stat(k.dir); err == nil {
		k.stamp = st.ModTime()
	}
	return retired, nil
}

// shredFile overwrites a key file with zeros, syncs it, and removes it.
func shredFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	st, err := f.Stat()
	if err == nil {
		_, err = f.Write(make([]byte, st.Size()))
	}
	err = errors.Join(err, f.Sync(), f.Close())
	if err != nil {
		return fmt.Errorf("keyring: shred %s: %w", path, err)
	}
	return os.Remove(path)
}

// Close closes the keepers.
func (k *Keyring) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var errs []error
	for id, kp := range k.keepers {
		errs = append(errs, kp.Close())
		delete(k.keepers, id)
	}
	return errors.Join(errs...)
}
