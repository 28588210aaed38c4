package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/ledgertest"
	"github.com/contactledger/ledger/ledger"
)

// TestErasureReceipt issues a receipt for a purged contact: it verifies
// under the service's signing key (and no other), names the tombstone and
// the trail, checks against the log it came from, and fails against a
// trail that lost an event; a contact that was not erased has none.
func TestErasureReceipt(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{NoRunner: true})
	ctx := t.Context()
	ws := ledgertest.Workspace
	live := e.Create(t, "Live", "")
	id := e.Create(t, "Ann", "ann@example.com", "vip")
	if _, _, err := e.Svc.AddNote(ctx, ws, id, ledgertest.Meta("req-n"), "a note"); err != nil {
		t.Fatal(err)
	}
	e.Move(t, id, ledger.Trash)
	tomb, err := e.Svc.Transition(ctx, ws, id, ledgertest.Meta("req-p"), ledger.Purge, ledger.TransitionInput{Reason: "asked", Request: "DSR-7"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.ErasureReceipt(ctx, ws, live); !errors.Is(err, ledger.ErrNotErased) {
		t.Fatalf("a receipt for a live contact: %v; want ErrNotErased", err)
	}
	doc, err := e.Svc.ErasureReceipt(ctx, ws, id)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := e.Svc.SigningPublicKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ledger.VerifyReceipt(doc, pub)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Contact != id.String() || rc.Outcome != contact.StatePurged || rc.Erasure.EventID != tomb.EventID || rc.Erasure.Request != "DSR-7" ||
		rc.Signer.KeyID != ledger.KeyID(pub) || !strings.HasPrefix(rc.Signer.KeyID, "ed25519:") {
		t.Fatalf("receipt: %+v", rc)
	}
	if bytes.Contains(doc, []byte("ann@example.com")) || bytes.Contains(doc, []byte("a note")) {
		t.Fatal("the receipt holds personal data")
	}
	recs, err := e.Events.ReadStream(ctx, ws, id.Stream())
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.CheckTrail(rc, recs); err != nil {
		t.Fatalf("the receipt against its own trail: %v", err)
	}
	if err := ledger.CheckTrail(rc, recs[1:]); err == nil {
		t.Fatal("a trail missing its first event passes the receipt's check")
	}
	if _, err := ledger.VerifyReceipt(bytes.Replace(doc, []byte("DSR-7"), []byte("DSR-8"), 1), pub); err == nil {
		t.Fatal("a tampered receipt verifies")
	}
	other := ledgertest.New(t, ledgertest.Options{NoRunner: true})
	otherPub, err := other.Svc.SigningPublicKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.VerifyReceipt(doc, otherPub); err == nil {
		t.Fatal("a receipt verifies under another ledger's key")
	}
	if _, err := ledger.ReceiptPropagationOf(doc); err != nil {
		t.Fatalf("propagation of a receipt: %v", err)
	}
}

// TestAuditLogAndChains reads a workspace's audit log with its filters
// and checks the hash chains of the workspace and of one contact.
func TestAuditLogAndChains(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	ws := ledgertest.Workspace
	a := e.Create(t, "Ann", "")
	start := e.Clock.Now()
	e.Clock.Advance(time.Minute)
	b := e.Create(t, "Bob", "")
	e.Move(t, b, ledger.Archive)
	member := ledger.Meta{Actor: kernel.Actor{Principal: "tok_member", Role: kernel.RoleMember}, CorrelationID: "req-m"}
	if _, err := e.Svc.Transition(ctx, ws, a, member, ledger.Archive, ledger.TransitionInput{}); err != nil {
		t.Fatal(err)
	}
	read := func(q ledger.LogQuery) []kernel.Record {
		t.Helper()
		var out []kernel.Record
		q.Workspace = ws
		if err := e.Svc.AuditLog(ctx, q, func(recs []kernel.Record) error { out = append(out, recs...); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    ledger.LogQuery
		want int
	}{
		{"everything", ledger.LogQuery{}, 4},
		{"one type", ledger.LogQuery{Types: []string{contact.TypeArchived}}, 2},
		{"one actor", ledger.LogQuery{Actor: "tok_member"}, 1},
		{"one stream", ledger.LogQuery{Stream: b.Stream()}, 2},
		{"since", ledger.LogQuery{Since: start.Add(time.Second)}, 3},
		{"until", ledger.LogQuery{Until: start.Add(time.Second)}, 1},
		{"a limit", ledger.LogQuery{Limit: 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := read(tc.q)
			if len(got) != tc.want {
				t.Fatalf("%d events; want %d", len(got), tc.want)
			}
			q := tc.q
			q.Workspace = ws
			for _, r := range got {
				if !q.Matches(r) {
					t.Fatalf("%s does not match the query", r.Type)
				}
			}
		})
	}
	var progress int
	rep, err := e.Svc.VerifyChains(ctx, ledger.VerifyScope{Workspace: ws}, func(n int) { progress = n })
	if err != nil || rep.Events != 4 || rep.Streams != 2 || len(rep.Breaks) != 0 || progress != 4 {
		t.Fatalf("chains of the workspace: %+v, progress %d, %v", rep, progress, err)
	}
	rep, err = e.Svc.VerifyChains(ctx, ledger.VerifyScope{Workspace: ws, Contact: &b}, nil)
	if err != nil || rep.Events != 2 || rep.Streams != 1 || len(rep.Breaks) != 0 {
		t.Fatalf("chain of one contact: %+v, %v", rep, err)
	}
}

// TestTokens creates, authenticates, finds and revokes tokens: a revoked
// or malformed secret is refused, and a token of another workspace cannot
// be revoked through this one.
func TestTokens(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{NoRunner: true})
	ctx := t.Context()
	ws := ledgertest.Workspace
	if _, err := e.Svc.CreateWorkspace(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.CreateWorkspace(ctx, ws); !errors.Is(err, ledger.ErrWorkspaceExists) {
		t.Fatalf("a second workspace of one name: %v", err)
	}
	if _, err := e.Svc.CreateWorkspace(ctx, "Bad Name!"); !errors.Is(err, kernel.ErrInvalid) {
		t.Fatalf("a malformed workspace name: %v", err)
	}
	secret, tok, err := e.Svc.CreateToken(ctx, ws, kernel.RoleMember, "ci")
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.Svc.Authenticate(ctx, secret)
	if err != nil || p.TokenID != tok.ID || p.Workspace != ws || p.Role != kernel.RoleMember || p.Actor().Principal != tok.ID {
		t.Fatalf("authenticate: %+v, %v", p, err)
	}
	for _, tc := range []struct{ name, bearer string }{
		{"empty", ""},
		{"not a secret", "hello"},
		{"another secret of the same token", secret[:len(secret)-2] + "AA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.Svc.Authenticate(ctx, tc.bearer); !errors.Is(err, ledger.ErrUnauthorized) {
				t.Fatalf("got %v; want ErrUnauthorized", err)
			}
		})
	}
	for _, key := range []string{tok.ID, strings.TrimPrefix(tok.ID, "tok_"), secret} {
		if got, err := e.Svc.FindToken(ctx, key); err != nil || got.ID != tok.ID {
			t.Fatalf("find by %q: %+v, %v", key, got, err)
		}
	}
	_, otherTok, err := e.Svc.CreateToken(ctx, "other", kernel.RoleAdmin, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.RevokeWorkspaceToken(ctx, ws, otherTok.ID); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("revoking another workspace's token: %v; want not found", err)
	}
	if err := e.Svc.Recheck(ctx, p); err != nil {
		t.Fatalf("recheck of a live token: %v", err)
	}
	if got, err := e.Svc.RevokeWorkspaceToken(ctx, ws, tok.ID); err != nil || got.RevokedAt.IsZero() {
		t.Fatalf("revoke: %+v, %v", got, err)
	}
	if err := e.Svc.Recheck(ctx, p); !errors.Is(err, ledger.ErrUnauthorized) {
		t.Fatalf("recheck of a revoked token: %v", err)
	}
	if err := e.Svc.RevokeToken(ctx, otherTok.ID); err != nil {
		t.Fatal(err)
	}
	toks, err := e.Svc.Tokens(ctx, ws)
	if err != nil || len(toks) != 1 || toks[0].ID != tok.ID || toks[0].RevokedAt.IsZero() {
		t.Fatalf("tokens: %+v, %v", toks, err)
	}
}

// TestRotateKeys re-wraps every key under a new key-encryption key and
// removes the key of a contact that never came to be: the contacts stay
// readable under the new key.
func TestRotateKeys(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{NoRunner: true})
	ctx := t.Context()
	ws := ledgertest.Workspace
	id := e.Create(t, "Ann", "ann@example.com")
	orphan := contact.NewID()
	if _, _, err := e.Vault.NewContactKey(ctx, ws, orphan, e.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(2 * time.Hour)
	if _, err := e.Keys.AddLocal(); err != nil {
		t.Fatal(err)
	}
	rewrapper, ok := e.Store.(ledger.KeyRewrapper)
	if !ok {
		t.Fatal("the store cannot re-wrap keys")
	}
	rewrapped, removed, err := e.Svc.RotateKeys(ctx, rewrapper, nil)
	if err != nil || rewrapped < 1 || removed != 1 {
		t.Fatalf("rotate: %d re-wrapped, %d removed, %v; want at least 1 and 1", rewrapped, removed, err)
	}
	if left, err := rewrapper.KeysNotWrappedBy(ctx, e.Keys.Active(), 10); err != nil || len(left) != 0 {
		t.Fatalf("keys left under an old KEK: %d, %v", len(left), err)
	}
	if k, _ := e.Vault.ContactKey(ctx, ws, orphan); !k.Destroyed {
		t.Fatal("the orphan key survived")
	}
	if v, err := e.Svc.Get(ctx, ws, id); err != nil || v.Personal.Email != "ann@example.com" {
		t.Fatalf("the contact after the rotation: %+v, %v", v.Personal, err)
	}
}

// TestFeed reads a workspace's change feed in pages, by type, with and
// without personal values, and renders records into their public form.
func TestFeed(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	ws := ledgertest.Workspace
	watch, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Svc.WatchLog(watch) }()
	changed := e.Svc.LogChanged()
	a := e.Create(t, "Ann", "ann@example.com")
	e.Move(t, a, ledger.Archive)
	e.Move(t, e.Create(t, "Bob", ""), ledger.Trash)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("LogChanged never fired")
	}
	stop()
	<-done

	var all []ledger.Rendered
	q := ledger.FeedQuery{Workspace: ws, Limit: 2}
	for {
		page, err := e.Svc.Feed(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Events...)
		if !page.More {
			break
		}
		q.After = page.Last
	}
	if len(all) != 4 {
		t.Fatalf("%d events in the feed; want 4", len(all))
	}
	for _, r := range all {
		if bytes.Contains(r.Body, []byte("ann@example.com")) {
			t.Fatal("the feed without personal values holds an email")
		}
	}
	page, err := e.Svc.FeedNow(ctx, ledger.FeedQuery{Workspace: ws, Types: []string{contact.TypeCreated}, Personal: true, Limit: 10})
	if err != nil || len(page.Events) != 2 || !bytes.Contains(page.Events[0].Body, []byte("ann@example.com")) {
		t.Fatalf("created events with personal values: %d, %v", len(page.Events), err)
	}
	recs, _, _, err := e.Svc.ReadFeed(ctx, ledger.FeedQuery{Workspace: ws, Limit: 10})
	if err != nil || len(recs) != 4 {
		t.Fatalf("read feed: %d, %v", len(recs), err)
	}
	rendered, err := e.Svc.Render(ctx, ws, recs, false)
	if err != nil || len(rendered) != 4 || !slices.ContainsFunc(rendered, func(r ledger.Rendered) bool { return r.Record.Type == contact.TypeTrashed }) {
		t.Fatalf("render: %d, %v", len(rendered), err)
	}
	head, err := e.Svc.FeedHead(ctx)
	if err != nil || head != recs[len(recs)-1].Position {
		t.Fatalf("feed head %v, %v; want %v", head, err, recs[len(recs)-1].Position)
	}
}

// TestHolds places and releases a contact's hold: a held contact cannot
// be purged, shows in the holds listing, and can be purged once released.
func TestHolds(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	ws := ledgertest.Workspace
	id := e.Create(t, "Ann", "")
	e.Move(t, id, ledger.Trash)
	if _, holdID, err := e.Svc.PlaceHold(ctx, ws, id, ledgertest.Meta("req-h"), "CASE-1", "litigation"); err != nil || holdID == "" {
		t.Fatalf("hold: %q, %v", holdID, err)
	}
	if _, _, err := e.Svc.PlaceHold(ctx, ws, id, ledgertest.Meta("req-h2"), "CASE-2", "again"); !errors.Is(err, contact.ErrAlreadyHeld) {
		t.Fatalf("a second hold: %v", err)
	}
	if _, err := e.Svc.Transition(ctx, ws, id, ledgertest.Meta("req-p"), ledger.Purge, ledger.TransitionInput{}); !errors.Is(err, contact.ErrHeld) {
		t.Fatalf("purge of a held contact: %v; want ErrHeld", err)
	}
	wh, held, err := e.Svc.Holds(ctx, ws, "", 10)
	if err != nil || wh != nil || len(held) != 1 || held[0].ID != id || held[0].Hold == nil {
		t.Fatalf("holds: %v, %+v, %v", wh, held, err)
	}
	if _, err := e.Svc.ReleaseHold(ctx, ws, id, ledgertest.Meta("req-r"), "case closed"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.ReleaseHold(ctx, ws, id, ledgertest.Meta("req-r2"), "again"); !errors.Is(err, contact.ErrNotHeld) {
		t.Fatalf("a second release: %v", err)
	}
	e.Move(t, id, ledger.Purge)
	if _, held, err := e.Svc.Holds(ctx, ws, "", 10); err != nil || len(held) != 0 {
		t.Fatalf("holds after the purge: %+v, %v", held, err)
	}
}
