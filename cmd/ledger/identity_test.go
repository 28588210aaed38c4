package main_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	main "github.com/contactledger/ledger/cmd/ledger"
)

// TestIdentityUniqueness walks the workspace policy identity_uniqueness:
// under until_purged (the default) create, edit and import onto another
// contact's email or phone are refused naming the holder and its state
// (in trash: restore it instead), never the value; under live, trash frees
// the email, and restoring its old holder is refused until keep_both,
// which its event records; a purge, an email change and the policy off
// free it.
func TestIdentityUniqueness(t *testing.T) { eachStore(t, testIdentityUniqueness) }

func testIdentityUniqueness(t *testing.T, store string) {
	l := start(t, store)
	setPolicy := func(u string) {
		p := policy(30)
		if u != "" {
			p["identity_uniqueness"] = u
		}
		r := l.as("PUT", "/v1/workspace/policy", p)
		want(t, r, 200, "")
		if w := map[string]string{"": "until_purged"}[u]; r.str("identity_uniqueness") != u && r.str("identity_uniqueness") != w {
			t.Fatalf("policy: %s", r.Raw)
		}
	}
	if got := l.as("GET", "/v1/workspace/policy", nil).str("identity_uniqueness"); got != "until_purged" {
		t.Fatalf("the default policy's identity_uniqueness is %q", got)
	}
	taken := func(r reply, holder, state, identity string) {
		t.Helper()
		want(t, r, 409, "identity-taken")
		if r.str("holder_id") != holder || r.str("holder_state") != state || r.str("identity") != identity ||
			strings.Contains(string(r.Raw), "ada@") || strings.Contains(string(r.Raw), "7946") {
			t.Fatalf("identity problem: got %s, want holder %s (%s) for %s", r.Raw, holder, state, identity)
		}
	}

	ada := l.create(map[string]any{"name": "Ada", "email": "ada@example.com", "phone": "+44 20 7946 0001"})
	taken(l.as("POST", "/v1/contacts", map[string]any{"name": "Ada Again", "email": "ADA@Example.com"}), ada, "active", "email")
	taken(l.as("POST", "/v1/contacts", map[string]any{"name": "Phone Twin", "phone": "+44 20 7946 0001"}), ada, "active", "phone")
	bob := l.create(map[string]any{"name": "Bob", "email": "bob@example.com"})
	taken(l.as("PATCH", "/v1/contacts/"+bob, map[string]any{"email": "ada@example.com"}), ada, "active", "email")
	want(t, l.as("PATCH", "/v1/contacts/"+bob, map[string]any{"phone": "+44 20 7946 0002"}), 200, "")

	// In trash, the email is still Ada's: restore her instead.
	want(t, l.as("POST", "/v1/contacts/"+ada+"/trash", nil), 200, "")
	r := l.as("POST", "/v1/contacts", map[string]any{"name": "Ada New", "email": "ada@example.com"})
	taken(r, ada, "trashed", "email")
	if !strings.Contains(r.str("detail"), "restore it instead") {
		t.Fatalf("the problem does not say to restore: %s", r.Raw)
	}
	// An import skips the row that would take her phone, saying why.
	_, res, _ := l.importFile("web", "text/csv", "name,email,phone\nPhone Thief,thief@example.com,+44 20 7946 0001\nFine Row,fine@example.com,\n")
	if res[0].Result != "skipped" || !strings.Contains(res[0].Reason, "identity taken") || !strings.Contains(res[0].Reason, ada) || strings.Contains(res[0].Reason, "7946") ||
		res[1].Result != "created" {
		t.Fatalf("import: %+v", res)
	}
	// Two rows of one chunk giving one phone to two new contacts: the first
	// is created, the second is refused as a single create would be (the
	// holder is named, and active: not a create still running).
	_, res, _ = l.importFile("web", "text/csv", "name,email,phone\nFirst,first@example.com,+44 20 7946 0099\nSecond,second@example.com,+44 20 7946 0099\n")
	if res[0].Result != "created" || res[1].Result != "skipped" || !strings.Contains(res[1].Reason, "identity taken") ||
		!strings.Contains(res[1].Reason, res[0].ID+" (active)") {
		t.Fatalf("import of one phone twice: %+v", res)
	}

	// Under live, trash frees the email; the restore meets the new holder.
	setPolicy("live")
	ada2 := l.create(map[string]any{"name": "Ada Two", "email": "ada@example.com"})
	r = l.as("POST", "/v1/contacts/"+ada+"/restore", nil)
	taken(r, ada2, "active", "email")
	if !strings.Contains(r.str("detail"), "keep_both") {
		t.Fatalf("the restore's problem does not offer keep_both: %s", r.Raw)
	}
	want(t, l.as("POST", "/v1/contacts/"+ada+"/restore", map[string]any{"on_conflict": "merge"}), 422, "validation-failed")
	want(t, l.as("POST", "/v1/contacts/"+ada+"/archive", map[string]any{"on_conflict": "keep_both"}), 400, "unknown-field")
	want(t, l.as("POST", "/v1/contacts/"+ada+"/restore", map[string]any{"on_conflict": "keep_both"}), 200, "")
	evs := l.as("GET", "/v1/contacts/"+ada+"/history", nil).Body["events"].([]any)
	if ev := evs[len(evs)-1].(map[string]any); ev["type"] != "ContactRestored" || ev["data"].(map[string]any)["keep_both"] != true {
		t.Fatalf("the restore's event: %v", ev)
	}

	// Back to until_purged: both hold the email now; a third is refused.
	setPolicy("")
	r = l.as("POST", "/v1/contacts", map[string]any{"name": "Ada Three", "email": "ada@example.com"})
	want(t, r, 409, "identity-taken")
	// An erasure frees it: purge both holders, then it is free.
	for _, id := range []string{ada, ada2} {
		want(t, l.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+id+"/purge", nil), 200, "")
	}
	l.create(map[string]any{"name": "Ada Reborn", "email": "ada@example.com"})

	// An email change frees the old one.
	carl := l.create(map[string]any{"name": "Carl", "email": "carl@example.com"})
	want(t, l.as("PATCH", "/v1/contacts/"+carl, map[string]any{"email": "carl.new@example.com"}), 200, "")
	l.create(map[string]any{"name": "Carl Two", "email": "carl@example.com"})

	// Off: any number of contacts share an email.
	setPolicy("off")
	l.create(map[string]any{"name": "Dup One", "email": "dup@example.com"})
	l.create(map[string]any{"name": "Dup Two", "email": "dup@example.com"})
	want(t, l.as("PUT", "/v1/workspace/policy", map[string]any{"retention_days": 30, "require_archive_before_trash": false, "restore_role": "member",
		"purge_allowed": true, "protected_sources": []string{}, "identity_uniqueness": "sometimes"}), 422, "validation-failed")
}

// TestIdentityUnderConcurrency sends 32 creates of one email at once:
// exactly one is created, every other is told who holds it.
func TestIdentityUnderConcurrency(t *testing.T) { eachStore(t, testIdentityUnderConcurrency) }

func testIdentityUnderConcurrency(t *testing.T, store string) {
	l := start(t, store)
	racers := []*remote{{t: t, base: l.URL(), token: l.admin}}
	raceOneEmail(t, l, racers)
}

// TestIdentityAcrossReplicas sends 32 creates of one email at once to two
// servers sharing one PostgreSQL database: exactly one is created.
func TestIdentityAcrossReplicas(t *testing.T) {
	var kek [32]byte
	rand.Read(kek[:])
	url := "base64key://" + base64.URLEncoding.EncodeToString(kek[:])
	l := start(t, "postgres", func(m *main.Main) { m.Config.KEKURL = url })
	m := main.NewMain()
	m.Config = l.Config
	m.Config.DataDir, m.Config.Addr = t.TempDir(), "127.0.0.1:0"
	m.Stdout, m.Stderr = io.Discard, io.Discard
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	raceOneEmail(t, l, []*remote{{t: t, base: l.URL(), token: l.admin}, {t: t, base: m.URL(), token: l.admin}})
}

// raceOneEmail creates one email 32 times at once through the servers
// given, and checks exactly one contact has it.
func raceOneEmail(t *testing.T, l *ledgerUnderTest, servers []*remote) {
	t.Helper()
	const n = 32
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created []string
		other   []string
	)
	for i := range n {
		wg.Go(func() {
			s := servers[i%len(servers)]
			r, err := try(http.DefaultClient, s.base, s.token, "POST", "/v1/contacts", map[string]any{"name": fmt.Sprintf("Racer %d", i), "email": "race@example.com"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				other = append(other, err.Error())
			case r.Status == 201:
				created = append(created, r.str("id"))
			case r.Status == 409 && r.str("code") == "identity-taken":
			default:
				other = append(other, fmt.Sprintf("%d %s", r.Status, r.Raw))
			}
		})
	}
	wg.Wait()
	if len(created) != 1 || len(other) > 0 {
		t.Fatalf("%d creates of one email: %d created %v, other answers %v", n, len(created), created, other)
	}
	if got := l.ids("view=active&email=race@example.com"); len(got) != 1 || got[0] != created[0] {
		t.Fatalf("contacts with the email: %v, want only %s", got, created[0])
	}
}
