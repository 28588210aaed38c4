package main_test

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
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
	if _, _, err := l.Vault().NewContactKey(ctx, "default", orphan, time.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Vault().NewContactKey(ctx, "default", young, time.Now()); err != nil {
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

// TestProgressLines runs keys rotate and audit verify with standard error
// not a terminal: they print plain progress lines (here after every step),
// and a rate only once it has been measured over a second, so no line
// claims more per second than have been done since the start.
func TestProgressLines(t *testing.T) {
	main.RotationGrace = 10 * time.Millisecond
	every := main.ProgressEvery
	main.ProgressEvery = 0
	t.Cleanup(func() { main.ProgressEvery = every })
	l := start(t, "sqlite")
	for i := range 3 {
		l.create(map[string]any{"name": "Progress " + strconv.Itoa(i)})
	}
	for _, tc := range []struct {
		args []string
		line *regexp.Regexp
	}{
		{[]string{"keys", "rotate"}, regexp.MustCompile(`^re-wrapping data keys: (\d+) keys( \((\d+) keys/s\))?$`)},
		{[]string{"audit", "verify"}, regexp.MustCompile(`^verifying: (\d+) events( \((\d+) events/s\))?$`)},
	} {
		_, stderr, err := l.run(tc.args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, stderr)
		}
		n := 0
		for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
			m := tc.line.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			n++
			done, _ := strconv.Atoi(m[1])
			if rate, _ := strconv.Atoi(m[3]); m[3] != "" && rate > done {
				t.Errorf("%v: %q claims more per second than were done", tc.args, line)
			}
		}
		if n == 0 {
			t.Errorf("%v printed no progress line:\n%s", tc.args, stderr)
		}
	}
}
