package keyring

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/nacl/secretbox"
)

// localKeeper wraps with a local 32-byte key: NaCl secretbox
// (XSalsa20-Poly1305) with a random nonce, stored as nonce || box. It is
// the format of gocloud.dev/secrets/localsecrets, which wrapped the local
// keys of earlier versions, so every key they wrapped still unwraps
// (testdata/localsecrets.golden), without the gocloud.dev modules in a
// build that uses no key service.
type localKeeper struct{ key [32]byte }

const nonceSize = 24

func (k *localKeeper) Encrypt(_ context.Context, plaintext []byte) ([]byte, error) {
	var nonce [nonceSize]byte
	if _, err := io.ReadFull(rand.Reader, nonce[:]); err != nil {
		return nil, err
	}
	return secretbox.Seal(nonce[:], plaintext, &nonce, &k.key), nil
}

func (k *localKeeper) Decrypt(_ context.Context, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < nonceSize+secretbox.Overhead {
		return nil, errors.New("local key: the wrapped key is too short")
	}
	var nonce [nonceSize]byte
	copy(nonce[:], ciphertext[:nonceSize])
	plaintext, ok := secretbox.Open(nil, ciphertext[nonceSize:], &nonce, &k.key)
	if !ok {
		return nil, errors.New("local key: the wrapped key does not open under this key")
	}
	return plaintext, nil
}

func (k *localKeeper) Close() error { clear(k.key[:]); return nil }

// parseLocalKey reads a local key: 32 bytes in URL-safe base64, as key
// files and base64key:// URLs hold them.
func parseLocalKey(s string) ([32]byte, error) {
	var key [32]byte
	b, err := base64.URLEncoding.DecodeString(s)
	if err != nil {
		return key, errors.New("the key is not URL-safe base64")
	}
	if len(b) != len(key) {
		return key, fmt.Errorf("the key is %d bytes, want %d", len(b), len(key))
	}
	copy(key[:], b)
	return key, nil
}

// openLocalURL opens a base64key://KEY URL (no KEY: a random key, for
// tests). The error never quotes the URL: it holds the key.
func openLocalURL(u string) (keeper, bool, error) {
	rest, ok := cutScheme(u, "base64key")
	if !ok {
		return nil, false, nil
	}
	if rest == "" {
		k := &localKeeper{}
		if _, err := rand.Read(k.key[:]); err != nil {
			return nil, true, err
		}
		return k, true, nil
	}
	key, err := parseLocalKey(rest)
	if err != nil {
		return nil, true, fmt.Errorf("base64key: %w", err)
	}
	return &localKeeper{key: key}, true, nil
}
