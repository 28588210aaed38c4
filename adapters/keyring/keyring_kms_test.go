//go:build kms

package keyring_test

import (
	"context"
	"testing"

	"github.com/contactledger/ledger/adapters/keyring"
	"gocloud.dev/secrets/localsecrets"
)

// TestLocalKeysMatchGocloud wraps with the keyring and unwraps with
// gocloud.dev/secrets/localsecrets, and the other way round: a release
// build and a development build read each other's local keys.
func TestLocalKeysMatchGocloud(t *testing.T) {
	ctx := context.Background()
	const key = "smGbjm71Nxd1Ig5FS0wj9SlbzAIrnolCz9bQQ6uAhl4="
	url := "base64key://" + key
	k, err := keyring.OpenURL(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := localsecrets.Base64Key(key)
	if err != nil {
		t.Fatal(err)
	}
	theirs := localsecrets.NewKeeper(sk)
	plain := []byte("0123456789abcdef0123456789abcdef")
	_, ours, err := k.Wrap(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := theirs.Decrypt(ctx, ours); err != nil || string(got) != string(plain) {
		t.Fatalf("gocloud unwrapping the keyring's: %q %v", got, err)
	}
	wrapped, err := theirs.Encrypt(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Unwrap(ctx, keyring.URLKEKID(url), wrapped); err != nil || string(got) != string(plain) {
		t.Fatalf("the keyring unwrapping gocloud's: %q %v", got, err)
	}
	if !keyring.CloudKeyServices() {
		t.Fatal("a kms build without the cloud key services")
	}
}
