package main_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/keyring"
	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/ledger"
)

// TestKeysRotate shows why rotation matters and that it works: a copy of a
// contact's wrapped data key taken before its purge (from a backup, a dead
// tuple, a WAL segment) can be unwrapped with the KEK of the time; after
// `ledger keys rotate` it cannot, while live contacts stay readable by the
// running server.
func TestKeysRotate(t *testing.T) { eachStore(t, testKeysRotate) }

func testKeysRotate(t *testing.T, store string) {
	main.RotationGrace = 10 * time.Millisecond
	ctx := context.Background()
	l := start(t, store)
	gone := l.create(map[string]any{"name": "Soon Erased", "email": "soon.erased@example.com"})
	kept := l.create(map[string]any{"name": "Still Here", "email": "still.here@example.com"})
	rows, err := l.State().(ledger.KeyStore).GetKeys(ctx, "default", []string{gone})
	if err != nil || len(rows) != 1 {
		t.Fatal(err)
	}
	stolen := rows[gone]
	want(t, l.as("POST", "/v1/contacts/"+gone+"/trash", nil), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+gone+"/purge", nil), 200, "")

	dir := filepath.Join(l.Config.DataDir, "keys")
	before, err := keyring.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := before.Unwrap(ctx, stolen.KEKID, stolen.Wrapped); err != nil {
		t.Fatalf("before rotation the stolen copy should still unwrap (that is the risk): %v", err)
	}

	// Keys left by creates that died between storing the key and appending
	// the first event: rotation destroys those old enough to be sure.
	orphan, young := contact.NewID(), contact.NewID()
	if _, _, err := l.Svc.Vault().NewContactKey(ctx, "default", orphan, time.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Svc.Vault().NewContactKey(ctx, "default", young, time.Now()); err != nil {
		t.Fatal(err)
	}

	out, _, err := l.run("keys", "rotate")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Retired and destroyed 1 old") || !strings.Contains(out, "Destroyed 1 orphan key(s) left by creates that died") {
		t.Fatalf("rotate said:\n%s", out)
	}
	left, err := l.State().(ledger.KeyStore).GetKeys(ctx, "default", []string{orphan.String(), young.String(), kept})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := left[orphan.String()]; ok {
		t.Fatal("the orphan key survived rotation")
	}
	if _, ok := left[young.String()]; !ok {
		t.Fatal("rotation destroyed the key of a create that may still be running")
	}
	if _, ok := left[kept]; !ok {
		t.Fatal("rotation destroyed a live contact's key")
	}
	after, err := keyring.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := after.Unwrap(ctx, stolen.KEKID, stolen.Wrapped); !errors.Is(err, keyring.ErrUnknownKEK) {
		t.Fatalf("after rotation the stolen copy unwraps: %v", err)
	}
	if _, err := before.Unwrap(ctx, stolen.KEKID, stolen.Wrapped); !errors.Is(err, keyring.ErrUnknownKEK) {
		t.Fatalf("a keyring opened before the rotation still unwraps the stolen copy: %v", err)
	}

	// The running server follows: old contacts read, new ones are created
	// under the new KEK.
	r := l.as("GET", "/v1/contacts/"+kept, nil)
	want(t, r, 200, "")
	if r.str("email") != "still.here@example.com" {
		t.Fatalf("a live contact is unreadable after rotation: %s", r.Raw)
	}
	fresh := l.create(map[string]any{"name": "After Rotation", "email": "after.rotation@example.com"})
	keys, _ := l.State().(ledger.KeyStore).GetKeys(ctx, "default", []string{fresh, kept})
	if keys[fresh].KEKID != after.Active() || keys[kept].KEKID != after.Active() {
		t.Fatalf("keys under %s and %s, want both under the new %s", keys[fresh].KEKID, keys[kept].KEKID, after.Active())
	}
	if r := l.as("GET", "/v1/contacts/"+fresh, nil); r.str("email") != "after.rotation@example.com" {
		t.Fatalf("a contact created after rotation is unreadable: %s", r.Raw)
	}
}
