package shred_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/contactledger/ledger/domain/shred"
)

func TestSealOpen(t *testing.T) {
	k, err := shred.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := shred.NewDataKey()
	msg := []byte(`{"name":"Ada Lovelace"}`)
	blob, err := shred.Seal(k, "contact-A", []byte("event-1"), msg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, []byte("Ada")) {
		t.Fatal("the sealed blob contains the plaintext")
	}
	if got, err := shred.Open(k, "contact-A", []byte("event-1"), blob); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("open: got %q, %v", got, err)
	}
	again, _ := shred.Seal(k, "contact-A", []byte("event-1"), msg)
	if bytes.Equal(again, blob) {
		t.Fatal("two seals of the same message are equal: the nonce is not random")
	}
	tampered := bytes.Clone(blob)
	tampered[len(tampered)-1] ^= 1
	for name, tc := range map[string]struct {
		key    shred.DataKey
		stream string
		event  string
		blob   []byte
	}{
		"another key":    {other, "contact-A", "event-1", blob},
		"another stream": {k, "contact-B", "event-1", blob},
		"another event":  {k, "contact-A", "event-2", blob},
		"tampered":       {k, "contact-A", "event-1", tampered},
		"truncated":      {k, "contact-A", "event-1", blob[:10]},
		"empty":          {k, "contact-A", "event-1", nil},
	} {
		if _, err := shred.Open(tc.key, tc.stream, []byte(tc.event), tc.blob); !errors.Is(err, shred.ErrOpen) {
			t.Errorf("%s: got %v, want ErrOpen", name, err)
		}
	}
}

func TestBlindIndex(t *testing.T) {
	b1, err := shred.NewBlindIndex(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := shred.NewBlindIndex(bytes.Repeat([]byte{2}, 32))
	if first, again := b1.Of("email", "a@example.com"), b1.Of("email", "a@example.com"); first != again {
		t.Fatal("blind index is not deterministic")
	}
	if b1.Of("email", "a@example.com") == b2.Of("email", "a@example.com") {
		t.Fatal("two keys give the same index")
	}
	if b1.Of("email", "x") == b1.Of("phone", "x") {
		t.Fatal("kinds collide")
	}
	if b1.Of("email", "") != "" {
		t.Fatal("the empty value has an index")
	}
	if _, err := shred.NewBlindIndex([]byte("short")); err == nil {
		t.Fatal("a short key was accepted")
	}
}
