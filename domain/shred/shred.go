// Package shred holds the cryptography of crypto-shredding: per-contact data
// keys, sealing of personal data bound to the event that carries it, and
// blind indexes for exact-match lookups without plaintext.
package shred

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// KeySize is the size of a data key: 256 bits.
const KeySize = 32

// DataKey is a contact's AES-256 key. Destroying every copy of it is the erasure.
type DataKey [KeySize]byte

// NewDataKey returns a fresh random key.
func NewDataKey() (DataKey, error) {
	var k DataKey
	if _, err := rand.Read(k[:]); err != nil {
		return DataKey{}, fmt.Errorf("new data key: %w", err)
	}
	return k, nil
}

// blobVersion is the first byte of a sealed blob, so the format can change.
const blobVersion = 1

// ErrOpen means a blob cannot be opened: wrong key, another event's blob, or tampering.
var ErrOpen = errors.New("sealed data cannot be opened with this key for this event")

func aead(k DataKey) (cipher.AEAD, error) {
	b, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// additionalData binds a blob to its stream and event.
func additionalData(stream string, eventID []byte) []byte {
	ad := make([]byte, 0, len(stream)+1+len(eventID))
	ad = append(ad, stream...)
	ad = append(ad, 0)
	return append(ad, eventID...)
}

// Sealer seals and opens blobs under one key. Making it once per key spares
// the cipher's setup on every event of a long stream.
type Sealer struct{ g cipher.AEAD }

// NewSealer returns a sealer for k.
func NewSealer(k DataKey) (Sealer, error) {
	g, err := aead(k)
	if err != nil {
		return Sealer{}, fmt.Errorf("sealer: %w", err)
	}
	return Sealer{g}, nil
}

// Seal encrypts plaintext with AES-256-GCM under k, with the stream id and
// event id as additional data so the blob cannot be moved to another event.
func Seal(k DataKey, stream string, eventID, plaintext []byte) ([]byte, error) {
	s, err := NewSealer(k)
	if err != nil {
		return nil, err
	}
	return s.Seal(stream, eventID, plaintext)
}

// Seal is Seal with the sealer's key.
func (s Sealer) Seal(stream string, eventID, plaintext []byte) ([]byte, error) {
	g := s.g
	out := make([]byte, 1+g.NonceSize(), 1+g.NonceSize()+len(plaintext)+g.Overhead())
	out[0] = blobVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return g.Seal(out, out[1:], plaintext, additionalData(stream, eventID)), nil
}

// Open decrypts a blob made by Seal for the same stream and event.
func Open(k DataKey, stream string, eventID, blob []byte) ([]byte, error) {
	s, err := NewSealer(k)
	if err != nil {
		return nil, err
	}
	return s.Open(stream, eventID, blob)
}

// Open is Open with the sealer's key.
func (s Sealer) Open(stream string, eventID, blob []byte) ([]byte, error) {
	g := s.g
	if len(blob) < 1+g.NonceSize()+g.Overhead() || blob[0] != blobVersion {
		return nil, ErrOpen
	}
	n := 1 + g.NonceSize()
	pt, err := g.Open(nil, blob[1:n], blob[n:], additionalData(stream, eventID))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// BlindIndex computes blind indexes: a keyed HMAC of a normalised value, so
// exact matches can be found without storing the value in an index.
type BlindIndex struct{ key []byte }

// NewBlindIndex returns a blind indexer for key, which must be 32 bytes.
func NewBlindIndex(key []byte) (BlindIndex, error) {
	if len(key) != KeySize {
		return BlindIndex{}, fmt.Errorf("blind index key: %d bytes, want %d", len(key), KeySize)
	}
	return BlindIndex{key: append([]byte(nil), key...)}, nil
}

// Of returns the blind index of a normalised value of the given kind ("email",
// "phone", ...), or "" for an empty value. Different kinds never collide.
func (b BlindIndex) Of(kind, normalized string) string {
	if normalized == "" {
		return ""
	}
	m := hmac.New(sha256.New, b.key)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(normalized))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:20])
}
