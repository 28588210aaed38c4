package keyring_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/keyring"
)

func TestLocalKeyring(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "keys")
	k, err := keyring.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("key directory has mode %v, want 0700", st.Mode().Perm())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "kek-*.key"))
	if len(files) != 1 {
		t.Fatalf("got %d key files, want 1", len(files))
	}
	if st, _ := os.Stat(files[0]); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file has mode %v, want 0600", st.Mode().Perm())
	}
	dk := bytes.Repeat([]byte{42}, 32)
	kek, wrapped, err := k.Wrap(ctx, dk)
	if err != nil || !strings.HasPrefix(kek, "local:") || bytes.Contains(wrapped, dk) {
		t.Fatalf("wrap: %s %x %v", kek, wrapped, err)
	}
	// A restart finds the same key.
	k2, err := keyring.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.Unwrap(ctx, kek, wrapped); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("unwrap after reopen: %x %v", got, err)
	}
	// Rotation: a new active key; the old one unwraps until it is retired.
	newID, err := k2.AddLocal()
	if err != nil || newID == kek || k2.Active() != newID {
		t.Fatalf("add: %s %v", newID, err)
	}
	if _, err := k2.Unwrap(ctx, kek, wrapped); err != nil {
		t.Fatalf("old key before retirement: %v", err)
	}
	retired, err := k2.Retire()
	if err != nil || len(retired) != 1 || retired[0] != kek {
		t.Fatalf("retire: %v %v", retired, err)
	}
	if _, err := k2.Unwrap(ctx, kek, wrapped); !errors.Is(err, keyring.ErrUnknownKEK) {
		t.Fatalf("old key after retirement: got %v, want ErrUnknownKEK", err)
	}
	k3, err := keyring.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k3.Unwrap(ctx, kek, wrapped); !errors.Is(err, keyring.ErrUnknownKEK) {
		t.Fatalf("a retired key came back after a restart: %v", err)
	}
}

func TestLocalKeyringRefusesReadableKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := keyring.OpenLocal(dir); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "kek-*.key"))
	if err := os.Chmod(files[0], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.OpenLocal(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("got %v, want a refusal that says how to fix it", err)
	}
	os.Chmod(files[0], 0o600)
	os.Chmod(dir, 0o755)
	if _, err := keyring.OpenLocal(dir); err == nil {
		t.Fatal("a world-readable key directory was accepted")
	}
}

func TestURLKeyring(t *testing.T) {
	ctx := context.Background()
	url := "base64key://smGbjm71Nxd1Ig5FS0wj9SlbzAIrnolCz9bQQ6uAhl4="
	k, err := keyring.OpenURL(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	kek, wrapped, err := k.Wrap(ctx, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil || kek != keyring.URLKEKID(url) || strings.Contains(kek, "smGb") {
		t.Fatalf("wrap: %s %v (the KEK id must not reveal the URL)", kek, err)
	}
	if got, err := k.Unwrap(ctx, kek, wrapped); err != nil || string(got) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("unwrap: %q %v", got, err)
	}
	if _, err := keyring.OpenURL(ctx, "nokms://x"); err == nil {
		t.Fatal("an unknown key service was accepted")
	}
}

// TestCloudKeyServicesNeedTheBuildTag checks that a binary built without the
// kms tag refuses a cloud key service's URL with the way to get one that has
// it, instead of gocloud's bare "no driver registered".
func TestCloudKeyServicesNeedTheBuildTag(t *testing.T) {
	_, err := keyring.OpenURL(context.Background(), "awskms://alias/ledger?region=eu-west-1")
	hinted := err != nil && strings.Contains(err.Error(), "-tags kms")
	if keyring.CloudKeyServices() == hinted {
		t.Fatalf("built with the cloud key services: %v; got error %v", keyring.CloudKeyServices(), err)
	}
}

// TestLocalKeyringFollowsAnotherProcess checks that a running server's
// keyring follows a rotation done by another process: new keys are wrapped
// under the new KEK, keys re-wrapped under it can be unwrapped, and a
// retired KEK is gone.
func TestLocalKeyringFollowsAnotherProcess(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "keys")
	server, err := keyring.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := server.Active()
	_, oldWrapped, _ := server.Wrap(ctx, []byte("0123456789abcdef0123456789abcdef"))
	cli, err := keyring.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // directory times have a granularity
	fresh, err := cli.AddLocal()
	if err != nil {
		t.Fatal(err)
	}
	kek, wrapped, err := server.Wrap(ctx, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil || kek != fresh {
		t.Fatalf("server wrapped under %s (%v), want the new %s", kek, err, fresh)
	}
	if _, err := cli.Unwrap(ctx, kek, wrapped); err != nil {
		t.Fatalf("the rotating process cannot unwrap the server's new key: %v", err)
	}
	if _, err := cli.Retire(); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Unwrap(ctx, old, oldWrapped); !errors.Is(err, keyring.ErrUnknownKEK) {
		t.Fatalf("server still unwraps under the retired KEK: %v", err)
	}
}

// TestLocalKeysOfEarlierVersions unwraps a data key that
// gocloud.dev/secrets/localsecrets wrapped (testdata/localsecrets.golden),
// as every local key of earlier versions was: from a key file and from a
// base64key:// URL.
func TestLocalKeysOfEarlierVersions(t *testing.T) {
	b, err := os.ReadFile("testdata/localsecrets.golden")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct{ Key, Plaintext, Wrapped string }
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	wrapped, err := base64.StdEncoding.DecodeString(golden.Wrapped)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	id := "01J0000000000000000000KEK1"
	if err := os.WriteFile(filepath.Join(dir, "kek-"+id+".key"), []byte(golden.Key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	local, err := keyring.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	url := "base64key://" + golden.Key
	byURL, err := keyring.OpenURL(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	for name, unwrap := range map[string]func() ([]byte, error){
		"key file": func() ([]byte, error) { return local.Unwrap(ctx, "local:"+id, wrapped) },
		"URL":      func() ([]byte, error) { return byURL.Unwrap(ctx, keyring.URLKEKID(url), wrapped) },
	} {
		if got, err := unwrap(); err != nil || string(got) != golden.Plaintext {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, golden.Plaintext)
		}
	}
	tampered := slices.Clone(wrapped)
	tampered[len(tampered)-1] ^= 1
	if _, err := local.Unwrap(ctx, "local:"+id, tampered); err == nil {
		t.Error("a tampered wrapped key unwrapped")
	}
}
