package main_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	main "github.com/contactledger/ledger/cmd/ledger"
)

// TestSecureDefaults checks the modes of what the ledger writes, that it
// refuses to start with a key file others can read, and the headers every
// answer carries.
func TestSecureDefaults(t *testing.T) {
	l := start(t, "sqlite")
	dir := l.Config.DataDir
	keyFiles, _ := filepath.Glob(filepath.Join(dir, "keys", "kek-*.key"))
	if len(keyFiles) != 1 {
		t.Fatalf("got %d key files, want 1", len(keyFiles))
	}
	for path, want := range map[string]os.FileMode{
		dir: 0o700, filepath.Join(dir, "keys"): 0o700, keyFiles[0]: 0o600,
		filepath.Join(dir, "ledger.db"): 0o600, filepath.Join(dir, "admin.token"): 0o600,
	} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, st.Mode().Perm(), want)
		}
	}

	r := l.as("GET", "/v1/contacts", nil)
	for h, want := range map[string]string{
		"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s: got %q, want %q", h, got, want)
		}
	}
	if !strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("Content-Security-Policy: %q", r.Header.Get("Content-Security-Policy"))
	}
	ready := l.do("", "GET", "/readyz", nil)
	want(t, ready, 200, "")
	if len(ready.Body) != 1 || ready.Body["status"] != "ready" {
		t.Fatalf("readyz says more than its status: %s", ready.Raw)
	}

	// A key file others can read: the ledger refuses to start, and says how to fix it.
	l.Main.Close()
	if err := os.Chmod(keyFiles[0], 0o644); err != nil {
		t.Fatal(err)
	}
	m := main.NewMain()
	m.Config = l.Config
	m.Stdout, m.Stderr = io.Discard, io.Discard
	err := m.Run(context.Background())
	m.Close()
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("start with a world-readable key file: got %v, want a refusal", err)
	}
	os.Chmod(keyFiles[0], 0o600)
	l.restart()
}
