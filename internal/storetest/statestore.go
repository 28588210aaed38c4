package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
)

// StateStoreHarness makes stores for the state-store suite.
type StateStoreHarness struct {
	// New returns an empty store; the harness closes it when the test ends.
	New      func(t *testing.T) projections.StateStore
	Features Features
}

func snapshot(ws, name, email string, state contact.State, at time.Time, tags ...string) contact.Snapshot {
	s := contact.Snapshot{
		ID: contact.NewID(), Workspace: ws, State: state, Version: 1, CreatedAt: at, UpdatedAt: at,
		Personal: contact.Personal{Name: name, Email: email}, Tags: tags,
	}
	if s.Tags == nil {
		s.Tags = []string{}
	}
	if state == contact.StateTrashed {
		by := kernel.Actor{Principal: "tok_" + name, Role: kernel.RoleMember}
		s.TrashedAt, s.TrashedBy, s.TrashedFrom = &at, &by, contact.StateActive
	}
	return s
}

var suiteIndex, _ = shred.NewBlindIndex(bytes.Repeat([]byte{7}, 32))

// RunStateStore runs the state-store contract suite.
func RunStateStore(t *testing.T, h StateStoreHarness) {
	t.Run("identity claims and holds", func(t *testing.T) {
		t.Parallel()
		runCases(t, h, claimCases)
	})
	runCases(t, h, stateStoreCases)
}

// stateStoreCases are the state-store contract, each case on a store of its own.
var stateStoreCases = []suiteCase[StateStoreHarness]{
	{name: "a shadow is built beside the live view and switched in", run: shadowBuiltAndSwitched},
	{name: "a failed switch or a dropped shadow leaves the live view", run: failedSwitchKeepsLive},
	{name: "a projection's failure is kept until it commits", run: failureKeptUntilCommit},
	{name: "rebuild lock and records", run: rebuildLockAndRecords},
	{name: "console sessions", run: sessionsCase},
	{name: "key vault", run: keyVault},
	{name: "key rotation", run: keyRotation},
	{name: "idempotency", run: idempotency},
	{name: "directory", run: directory},
	{name: "checkpoints move with their rows", run: checkpointsMoveWithRows},
	{name: "views list, filter and paginate", run: viewsListFilterPaginate},
	{name: "identity index finds live contacts by blind index", run: identityIndex},
}

// claimCases are the identity claims and the holds listing of the state store.
var claimCases = []suiteCase[StateStoreHarness]{
	{name: "a value has one claim, its contact's", run: oneClaimPerValue},
	{name: "a claim moves only from its holder and goes only with it", run: claimMovesFromHolder},
	{name: "of racing claimants exactly one gets the value", run: racingClaimants},
	{name: "an erasure deletes its contact's claims", run: erasureDeletesClaims},
	{name: "the identity index lists held contacts", run: heldContacts},
}

// shadowFixture is what the rebuild cases share: stores that may lack
// the shadow port, and rows at one time.
type shadowFixture struct {
	h   StateStoreHarness
	now time.Time
}

func newShadowFixture(h StateStoreHarness) shadowFixture {
	return shadowFixture{h: h, now: time.Now().UTC().Truncate(time.Microsecond)}
}

// stores returns a new store and its shadow port, nil when the harness
// declares it has none.
func (f shadowFixture) stores(t *testing.T) (projections.StateStore, projections.ShadowStore) {
	t.Helper()
	s := f.h.New(t)
	ss, ok := s.(projections.ShadowStore)
	if !ok && !f.h.Features.NoShadowStore {
		t.Fatal("the store does not implement projections.ShadowStore; declare Features.NoShadowStore")
	}
	return s, ss
}

func (f shadowFixture) row(name string, p uint64) projections.Row {
	return projections.BuildRow(snapshot("ws", name, name+"@example.com", contact.StateActive, f.now, "t"), suiteIndex, densePos(p))
}

// names lists the names of a view's contacts, sorted.
func (f shadowFixture) names(t *testing.T, s projections.StateStore, view string) []string {
	t.Helper()
	items, err := s.List(context.Background(), ledger.ListQuery{Workspace: "ws", View: view, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range items {
		out = append(out, it.Contact.Personal.Name)
	}
	slices.Sort(out)
	return out
}

// densePos is a position of a store with dense positions.
func densePos(n uint64) kernel.Position { return kernel.Position{Commit: n, Prepare: n} }

// claimAt returns a maker of claims made at now.
func claimAt(now time.Time) func(ws, kind, index string, id contact.ID) ledger.IdentityClaim {
	return func(ws, kind, index string, id contact.ID) ledger.IdentityClaim {
		return ledger.IdentityClaim{Workspace: ws, Kind: kind, Index: index, Contact: id, At: now}
	}
}

func keyVault(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	k := ledger.KeyRow{Owner: "c1", Workspace: "ws", KeyID: "dk_1", KEKID: "local:1", Wrapped: []byte("wrapped-bytes"), CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	if err := s.PutKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKey(ctx, k); !errors.Is(err, kernel.ErrAlreadyExists) {
		t.Fatalf("second key for an owner: got %v, want ErrAlreadyExists", err)
	}
	got, err := s.GetKeys(ctx, "ws", []string{"c1", "c2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !bytes.Equal(got["c1"].Wrapped, k.Wrapped) || got["c1"].KEKID != k.KEKID || got["c1"].KeyID != k.KeyID || !got["c1"].CreatedAt.Equal(k.CreatedAt) {
		t.Fatalf("got %+v, want the key of c1 only", got)
	}
	if other, _ := s.GetKeys(ctx, "other", []string{"c1"}); len(other) != 0 {
		t.Fatalf("another workspace read the key: %+v", other)
	}
	if ok, err := s.DestroyKey(ctx, "other", "c1"); err != nil || ok {
		t.Fatalf("another workspace destroyed the key: %v %v", ok, err)
	}
	if ok, err := s.DestroyKey(ctx, "ws", "c1"); err != nil || !ok {
		t.Fatalf("destroy: got %v %v, want true", ok, err)
	}
	if ok, err := s.DestroyKey(ctx, "ws", "c1"); err != nil || ok {
		t.Fatalf("destroy twice: got %v %v, want false, nil", ok, err)
	}
	if got, _ := s.GetKeys(ctx, "ws", []string{"c1"}); len(got) != 0 {
		t.Fatalf("a destroyed key is still readable: %+v", got)
	}
	if err := s.PutKey(ctx, ledger.KeyRow{Owner: "c3", Workspace: "ws", KeyID: "dk_3", KEKID: "k", Wrapped: []byte{1}, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

func keyRotation(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, kek := range []string{"old", "old", "new", "old"} {
		if err := s.PutKey(ctx, ledger.KeyRow{Owner: fmt.Sprint("o", i), Workspace: "ws", KeyID: "k", KEKID: kek, Wrapped: []byte{byte(i)}, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	old, err := s.KeysNotWrappedBy(ctx, "new", 2)
	if err != nil || len(old) != 2 || old[0].KEKID != "old" || old[0].Workspace != "ws" {
		t.Fatalf("got %+v, %v; want 2 keys under old (the limit)", old, err)
	}
	if ok, err := s.Rewrap(ctx, "o0", "old", "new", []byte("rewrapped")); err != nil || !ok {
		t.Fatalf("rewrap: %v %v", ok, err)
	}
	if ok, err := s.Rewrap(ctx, "o0", "old", "new", []byte("again")); err != nil || ok {
		t.Fatalf("rewrap of a key no longer under old: got %v %v, want false", ok, err)
	}
	if _, err := s.DestroyKey(ctx, "ws", "o1"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Rewrap(ctx, "o1", "old", "new", []byte("x")); err != nil || ok {
		t.Fatalf("rewrap of a destroyed key: got %v %v, want false", ok, err)
	}
	if keys, _ := s.GetKeys(ctx, "ws", []string{"o1"}); len(keys) != 0 {
		t.Fatal("a rewrap brought a destroyed key back")
	}
	got, _ := s.GetKeys(ctx, "ws", []string{"o0"})
	if string(got["o0"].Wrapped) != "rewrapped" || got["o0"].KEKID != "new" {
		t.Fatalf("got %+v", got["o0"])
	}
	if rest, _ := s.KeysNotWrappedBy(ctx, "new", 10); len(rest) != 1 || rest[0].Owner != "o3" {
		t.Fatalf("left under old: %+v, want o3 only", rest)
	}
}

func idempotency(t *testing.T, h StateStoreHarness) {
	f := idempotencyFixture{s: h.New(t), now: time.Now().UTC().Truncate(time.Microsecond), id: contact.NewID().String()}
	// One store through every step: later steps build on the keys the
	// earlier ones left (k2 released, k3 answered, the contact erased).
	for _, step := range []func(*testing.T, idempotencyFixture){
		idempotentAnswers,
		idempotencyTakeover,
		idempotencyLateFingerprint,
		idempotencyRelease,
		idempotencyErasure,
		idempotencyExpiry,
	} {
		step(t, f)
	}
}

// idempotencyFixture is the store and the contact the idempotency steps share.
type idempotencyFixture struct {
	s   projections.StateStore
	now time.Time
	id  string // a contact with a key, whose answers the erasure step strips
}

func (f idempotencyFixture) claimAs(t *testing.T, principal, key string, at time.Time, fp []byte) (ledger.Idempotency, bool) {
	t.Helper()
	rec, claimed, err := f.s.ClaimIdempotency(context.Background(), ledger.Idempotency{Workspace: "ws", Principal: principal, Key: key, Fingerprint: fp,
		LockedUntil: at.Add(time.Minute), CreatedAt: at, ExpiresAt: at.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return rec, claimed
}

func (f idempotencyFixture) claim(t *testing.T, key string, at time.Time) (ledger.Idempotency, bool) {
	t.Helper()
	return f.claimAs(t, "tok_a", key, at, nil)
}

// idempotentAnswers checks that a key is claimed once, per token and workspace, and its answer kept.
func idempotentAnswers(t *testing.T, f idempotencyFixture) {
	ctx := context.Background()
	s, now, id := f.s, f.now, f.id
	if _, claimed := f.claim(t, "k1", now); !claimed {
		t.Fatal("a new key was not claimed")
	}
	if rec, claimed := f.claim(t, "k1", now); claimed || rec.Done {
		t.Fatalf("a running key was claimed again: %+v", rec)
	}
	// Keys belong to the token that sent them: another token's same key is its own.
	if rec, claimed := f.claimAs(t, "tok_b", "k1", now, nil); !claimed || rec.Principal != "tok_b" {
		t.Fatalf("another token's key: got %+v, claimed %v; want its own claim", rec, claimed)
	}
	if err := s.PutKey(ctx, ledger.KeyRow{Owner: id, Workspace: "ws", KeyID: "dk_i", KEKID: "k", Wrapped: []byte("w"), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	done := ledger.Idempotency{Workspace: "ws", Principal: "tok_a", Key: "k1", Fingerprint: []byte("fp"), Status: 201, Header: map[string]string{"Location": "/x"}, Body: []byte(`{"a":1}`), ContactID: id}
	if err := s.CompleteIdempotency(ctx, done); err != nil {
		t.Fatal(err)
	}
	rec, claimed := f.claim(t, "k1", now.Add(time.Second))
	if claimed || !rec.Done || rec.Status != 201 || string(rec.Body) != `{"a":1}` || string(rec.Fingerprint) != "fp" || rec.Header["Location"] != "/x" || rec.ContactID != id {
		t.Fatalf("got %+v, claimed %v; want the stored answer", rec, claimed)
	}
	if rec, _ := f.claimAs(t, "tok_b", "k1", now.Add(time.Second), nil); rec.Done || rec.Body != nil {
		t.Fatalf("another token got the first token's answer: %+v", rec)
	}
	if _, claimed := f.claim(t, "k1", now.Add(2*time.Hour)); !claimed {
		t.Fatal("an expired answer was not replaced")
	}
	// Another workspace has its own keys.
	if _, claimed, _ := s.ClaimIdempotency(ctx, ledger.Idempotency{Workspace: "other", Principal: "tok_a", Key: "k1", LockedUntil: now.Add(time.Minute), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); !claimed {
		t.Fatal("a key of another workspace collided")
	}
}

// idempotencyTakeover checks that a dead claim is taken over once its lock runs out, by the same request only.
func idempotencyTakeover(t *testing.T, f idempotencyFixture) {
	now := f.now
	// A claim whose process died is taken over once its lock runs out.
	f.claim(t, "k2", now)
	if _, claimed := f.claim(t, "k2", now.Add(30*time.Second)); claimed {
		t.Fatal("a running claim was taken over before its lock ran out")
	}
	// The takeover keeps when the key was first claimed: an idempotent
	// create derives its contact's id from it.
	if rec, claimed := f.claim(t, "k2", now.Add(2*time.Minute)); !claimed || !rec.CreatedAt.Equal(now) {
		t.Fatalf("dead claim: claimed %v, created %v; want taken over, created %v", claimed, rec.CreatedAt, now)
	}
	if rec, claimed := f.claim(t, "k2", now.Add(2*time.Minute+30*time.Second)); claimed || rec.Done {
		t.Fatalf("a taken-over claim was claimed again while its new lock holds: %+v", rec)
	}
	// A dead claim is taken over only by the same request.
	f.claimAs(t, "tok_a", "k4", now, []byte("body-1"))
	if rec, claimed := f.claimAs(t, "tok_a", "k4", now.Add(5*time.Minute), []byte("body-2")); claimed || string(rec.Fingerprint) != "body-1" {
		t.Fatalf("a dead claim was taken over by another request: %+v, claimed %v", rec, claimed)
	}
	if _, claimed := f.claimAs(t, "tok_a", "k4", now.Add(5*time.Minute), []byte("body-1")); !claimed {
		t.Fatal("a dead claim was not taken over by the same request")
	}
}

// idempotencyLateFingerprint checks that a fingerprint learnt late is recorded once.
func idempotencyLateFingerprint(t *testing.T, f idempotencyFixture) {
	ctx := context.Background()
	s, now := f.s, f.now
	// A fingerprint learnt late is recorded once.
	f.claim(t, "k5", now)
	if same, err := s.SetIdempotencyFingerprint(ctx, "ws", "tok_a", "k5", []byte("late")); err != nil || !same {
		t.Fatalf("first fingerprint: %v, %v", same, err)
	}
	if same, err := s.SetIdempotencyFingerprint(ctx, "ws", "tok_a", "k5", []byte("other")); err != nil || same {
		t.Fatalf("another fingerprint: same %v, %v; want false", same, err)
	}
}

// idempotencyRelease checks that release forgets a pending key only.
func idempotencyRelease(t *testing.T, f idempotencyFixture) {
	ctx := context.Background()
	s, now, id := f.s, f.now, f.id
	// Release forgets a pending key only.
	if err := s.ReleaseIdempotency(ctx, "ws", "tok_a", "k2"); err != nil {
		t.Fatal(err)
	}
	if _, claimed := f.claim(t, "k2", now); !claimed {
		t.Fatal("a released key could not be claimed")
	}
	f.claim(t, "k3", now)
	if err := s.CompleteIdempotency(ctx, ledger.Idempotency{Workspace: "ws", Principal: "tok_a", Key: "k3", Fingerprint: []byte("f"), Status: 200,
		Header: map[string]string{"ETag": `"3"`}, Body: []byte(`{"name":"Ada"}`), ContactID: id}); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseIdempotency(ctx, "ws", "tok_a", "k3"); err != nil {
		t.Fatal(err)
	}
	if rec, _ := f.claim(t, "k3", now); !rec.Done {
		t.Fatal("release forgot a finished answer")
	}
}

// idempotencyErasure checks that erasing a contact or destroying its key strips the answers about it.
func idempotencyErasure(t *testing.T, f idempotencyFixture) {
	ctx := context.Background()
	s, now, id := f.s, f.now, f.id
	// Erasing the contact strips the answers about it to ids: no
	// answer, but the key stays taken and names the tombstone.
	cid, _ := contact.ParseID(id)
	tomb := contact.NewID().String()
	if err := s.Commit(ctx, projections.Batch{Projection: projections.Erasure, To: kernel.Position{Commit: 1, Prepare: 1},
		DestroyKeys: []projections.Ref{{Workspace: "ws", ID: cid}}, Tombstones: map[contact.ID]string{cid: tomb}}); err != nil {
		t.Fatal(err)
	}
	if rec, claimed := f.claim(t, "k3", now); claimed || !rec.Done || rec.Body != nil || len(rec.Header) != 0 || rec.Status != 0 ||
		rec.ErasedBy != tomb || rec.ContactID != id || string(rec.Fingerprint) != "f" {
		t.Fatalf("answer about an erased contact: %+v, claimed %v; want ids only, naming the tombstone", rec, claimed)
	}
	if n, err := s.EraseIdempotency(ctx, "ws", cid, tomb); err != nil || n != 0 {
		t.Fatalf("erasing again stripped %d, %v; want nothing left to strip", n, err)
	}
	// Destroying a contact's key strips the answers about it at once,
	// keeping a tombstone named before; an answer about a contact whose
	// key is gone is stored with ids only.
	other := contact.NewID().String()
	if err := s.PutKey(ctx, ledger.KeyRow{Owner: other, Workspace: "ws", KeyID: "dk_j", KEKID: "k", Wrapped: []byte("w"), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	f.claim(t, "k6", now)
	if err := s.CompleteIdempotency(ctx, ledger.Idempotency{Workspace: "ws", Principal: "tok_a", Key: "k6", Fingerprint: []byte("f"), Status: 200,
		Header: map[string]string{}, Body: []byte(`{"name":"Grace"}`), ContactID: other}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DestroyKey(ctx, "ws", other); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DestroyKey(ctx, "ws", id); err != nil {
		t.Fatal(err)
	}
	if rec, _ := f.claim(t, "k6", now); rec.Body != nil || rec.Status != 0 {
		t.Fatalf("answer about a contact whose key was destroyed: %+v, want ids only", rec)
	}
	if rec, _ := f.claim(t, "k3", now); rec.ErasedBy != tomb {
		t.Fatalf("destroying the key forgot the tombstone: %+v", rec)
	}
	f.claim(t, "k7", now)
	if err := s.CompleteIdempotency(ctx, ledger.Idempotency{Workspace: "ws", Principal: "tok_a", Key: "k7", Fingerprint: []byte("f"), Status: 200,
		Header: map[string]string{"ETag": `"1"`}, Body: []byte(`{"name":"Grace"}`), ContactID: other}); err != nil {
		t.Fatal(err)
	}
	if rec, _ := f.claim(t, "k7", now); !rec.Done || rec.Body != nil || rec.Status != 0 {
		t.Fatalf("an answer stored after its contact's erasure: %+v, want ids only", rec)
	}
}

// idempotencyExpiry checks that expired records go.
func idempotencyExpiry(t *testing.T, f idempotencyFixture) {
	ctx := context.Background()
	s, now := f.s, f.now
	n, err := s.ExpireIdempotency(ctx, now.Add(3*time.Hour))
	if err != nil || n < 3 {
		t.Fatalf("expired %d, %v; want every record", n, err)
	}
	if _, claimed := f.claim(t, "k2", now); !claimed {
		t.Fatal("an expired record is still there")
	}
}

func directory(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	w := ledger.Workspace{Name: "acme", CreatedAt: time.Now().UTC().Truncate(time.Microsecond), Policy: contact.DefaultPolicy()}
	if err := s.CreateWorkspace(ctx, w); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWorkspace(ctx, w); !errors.Is(err, ledger.ErrWorkspaceExists) {
		t.Fatalf("duplicate workspace: got %v, want ErrWorkspaceExists", err)
	}
	if _, err := s.Workspace(ctx, "nope"); !errors.Is(err, kernel.ErrWorkspaceNotFound) {
		t.Fatalf("unknown workspace: got %v", err)
	}
	ps := contact.DefaultPolicy().Settings()
	ps.RetentionDays, ps.RequireArchiveBeforeTrash, ps.RestoreRole, ps.PurgeAllowed, ps.ProtectedSources = 7, true, kernel.RoleAdmin, false, []string{"crm", "hubspot"}
	p, _ := ps.Policy()
	if err := s.SavePolicy(ctx, "acme", p); err != nil {
		t.Fatal(err)
	}
	if err := s.SavePolicy(ctx, "nope", p); !errors.Is(err, kernel.ErrWorkspaceNotFound) {
		t.Fatalf("policy of an unknown workspace: got %v", err)
	}
	got, err := s.Workspace(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Policy.Settings()) != fmt.Sprint(p.Settings()) || !got.CreatedAt.Equal(w.CreatedAt) {
		t.Fatalf("got %+v, want policy %+v", got.Policy.Settings(), p.Settings())
	}
	tok := ledger.Token{ID: "tok_1", Workspace: "acme", Role: kernel.RoleAuditor, Hash: []byte("hash"), Label: "ci", CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	gt, err := s.Token(ctx, "tok_1")
	if err != nil || gt.Role != kernel.RoleAuditor || gt.Workspace != "acme" || !bytes.Equal(gt.Hash, tok.Hash) || !gt.RevokedAt.IsZero() {
		t.Fatalf("got %+v, %v", gt, err)
	}
	if err := s.RevokeToken(ctx, "tok_1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if gt, _ := s.Token(ctx, "tok_1"); gt.RevokedAt.IsZero() {
		t.Fatal("revoked token has no revocation time")
	}
	if err := s.CreateWorkspace(ctx, ledger.Workspace{Name: "other", CreatedAt: w.CreatedAt, Policy: contact.DefaultPolicy()}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, ledger.Token{ID: "tok_3", Workspace: "other", Role: kernel.RoleMember, Hash: []byte("h"), CreatedAt: w.CreatedAt}); err != nil {
		t.Fatal(err)
	}
	if list, err := s.Tokens(ctx, "acme"); err != nil || len(list) != 1 || list[0].ID != "tok_1" || list[0].RevokedAt.IsZero() {
		t.Fatalf("tokens of acme: got %+v, %v; want tok_1 (revoked) only", list, err)
	}
	if _, err := s.Token(ctx, "tok_2"); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("unknown token: got %v", err)
	}
	if err := s.RevokeToken(ctx, "tok_2", time.Now()); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("revoke unknown token: got %v", err)
	}
}

func checkpointsMoveWithRows(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	if cp, err := s.Checkpoint(ctx, "trash"); err != nil || !cp.IsZero() {
		t.Fatalf("new checkpoint: %s %v", cp, err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	a := snapshot("ws", "Ada", "ada@example.com", contact.StateTrashed, now)
	p1 := kernel.Position{Commit: 5, Prepare: 5}
	row := projections.BuildRow(a, suiteIndex, p1)
	if err := s.Commit(ctx, projections.Batch{Projection: "trash", To: p1, Upserts: []projections.Row{row}}); err != nil {
		t.Fatal(err)
	}
	if cp, _ := s.Checkpoint(ctx, "trash"); cp != p1 {
		t.Fatalf("checkpoint: got %s, want %s", cp, p1)
	}
	// A stale batch (from the wrong checkpoint) writes nothing at all.
	b := snapshot("ws", "Bob", "bob@example.com", contact.StateTrashed, now)
	err := s.Commit(ctx, projections.Batch{Projection: "trash", From: kernel.Position{}, To: kernel.Position{Commit: 9, Prepare: 9},
		Upserts: []projections.Row{projections.BuildRow(b, suiteIndex, kernel.Position{Commit: 9, Prepare: 9})}, Deletes: []projections.Ref{{Workspace: "ws", ID: a.ID}}})
	if !errors.Is(err, kernel.ErrConcurrency) {
		t.Fatalf("stale batch: got %v, want ErrConcurrency", err)
	}
	rows, err := s.Rows(ctx, "trash", []projections.Ref{{Workspace: "ws", ID: a.ID}, {Workspace: "ws", ID: b.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[a.ID].Contact.Personal.Email != "ada@example.com" || rows[a.ID].Position != p1 || rows[a.ID].EmailIndex != row.EmailIndex {
		t.Fatalf("rows after a stale batch: got %+v, want Ada's only", rows)
	}
	if cp, _ := s.Checkpoint(ctx, "trash"); cp != p1 {
		t.Fatalf("a stale batch moved the checkpoint to %s", cp)
	}
	if cp, _ := s.Checkpoint(ctx, "active"); !cp.IsZero() {
		t.Fatalf("another projection's checkpoint moved to %s", cp)
	}
	// Delete and destroy keys in one batch.
	if err := s.PutKey(ctx, ledger.KeyRow{Owner: a.ID.String(), Workspace: "ws", KeyID: "dk", KEKID: "k", Wrapped: []byte{1}, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	p2 := kernel.Position{Commit: 6, Prepare: 6}
	if err := s.Commit(ctx, projections.Batch{Projection: "trash", From: p1, To: p2, Deletes: []projections.Ref{{Workspace: "ws", ID: a.ID}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, projections.Batch{Projection: projections.Erasure, To: p2, DestroyKeys: []projections.Ref{{Workspace: "ws", ID: a.ID}}}); err != nil {
		t.Fatal(err)
	}
	if rows, _ := s.Rows(ctx, "trash", []projections.Ref{{Workspace: "ws", ID: a.ID}}); len(rows) != 0 {
		t.Fatal("deleted row is still there")
	}
	if keys, _ := s.GetKeys(ctx, "ws", []string{a.ID.String()}); len(keys) != 0 {
		t.Fatal("destroyed key is still there")
	}
}

func viewsListFilterPaginate(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var rows []projections.Row
	var all []contact.Snapshot
	for i := range 25 {
		tags := []string{"t" + fmt.Sprint(i%3)}
		sn := snapshot("ws", fmt.Sprintf("Person %02d", i), fmt.Sprintf("p%02d@example.com", i), contact.StateTrashed, base.Add(time.Duration(i/2)*time.Hour), tags...)
		sn.Personal.Phone = fmt.Sprintf("+1 555 01%02d", i)
		if i%5 == 0 {
			by := kernel.Actor{Principal: "tok_special", Role: kernel.RoleAdmin}
			sn.TrashedBy = &by
		}
		switch i % 4 {
		case 0:
			sn.TrashedOperation = "bulk:r1"
		case 1:
			sn.TrashedOperation = "r1" // the same request, before operation ids
		case 2:
			sn.TrashedOperation = "bulk:r2"
		}
		all = append(all, sn)
		rows = append(rows, projections.BuildRow(sn, suiteIndex, kernel.Position{Commit: uint64(i + 1), Prepare: uint64(i + 1)}))
	}
	other := snapshot("other-ws", "Person 00", "p00@example.com", contact.StateTrashed, base)
	rows = append(rows, projections.BuildRow(other, suiteIndex, kernel.Position{Commit: 30, Prepare: 30}))
	if err := s.Commit(ctx, projections.Batch{Projection: "trash", To: kernel.Position{Commit: 30, Prepare: 30}, Upserts: rows}); err != nil {
		t.Fatal(err)
	}
	list := func(q ledger.ListQuery) []contact.Snapshot {
		t.Helper()
		q.Workspace, q.View = "ws", "trash"
		if q.Limit == 0 {
			q.Limit = 100
		}
		items, err := s.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]contact.Snapshot, len(items))
		for i, it := range items {
			out[i] = it.Contact
		}
		return out
	}
	// Every page is newest first, and pages chain without gaps or repeats.
	var paged []contact.Snapshot
	var after *ledger.Cursor
	for {
		items, err := s.List(ctx, ledger.ListQuery{Workspace: "ws", View: "trash", Limit: 7, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			paged = append(paged, it.Contact)
		}
		if len(items) < 7 {
			break
		}
		last := items[len(items)-1]
		after = &ledger.Cursor{SortAt: last.SortAt, ID: last.Contact.ID.String()}
	}
	if len(paged) != 25 {
		t.Fatalf("paged through %d contacts, want 25 (the other workspace's must not show)", len(paged))
	}
	seen := map[contact.ID]bool{}
	for i, sn := range paged {
		if seen[sn.ID] {
			t.Fatalf("contact %s on two pages", sn.ID)
		}
		seen[sn.ID] = true
		if i > 0 {
			prev := paged[i-1]
			if prev.TrashedAt.Before(*sn.TrashedAt) || (prev.TrashedAt.Equal(*sn.TrashedAt) && prev.ID.String() < sn.ID.String()) {
				t.Fatalf("not newest first at %d", i)
			}
		}
	}
	for name, tc := range map[string]struct {
		q    ledger.ListQuery
		want int
	}{
		"q name":                   {ledger.ListQuery{Q: "person 1"}, 10},
		"q email":                  {ledger.ListQuery{Q: "P03@EXAMPLE"}, 1},
		"q phone":                  {ledger.ListQuery{Q: "5550107"}, 1},
		"q id":                     {ledger.ListQuery{Q: all[4].ID.String()}, 1},
		"email index":              {ledger.ListQuery{EmailIndex: suiteIndex.Of("email", "p07@example.com")}, 1},
		"phone index":              {ledger.ListQuery{PhoneIndex: suiteIndex.Of("phone", contact.NormalizePhone("+1 555 0108"))}, 1},
		"tag":                      {ledger.ListQuery{TagIndex: ledger.TagIndex(suiteIndex, "t1")}, 8},
		"deleted by":               {ledger.ListQuery{DeletedBy: "tok_special"}, 5},
		"deleted after":            {ledger.ListQuery{DeletedAfter: base.Add(10 * time.Hour)}, 5},
		"deleted before":           {ledger.ListQuery{DeletedBefore: base.Add(2 * time.Hour)}, 4},
		"combined":                 {ledger.ListQuery{TagIndex: ledger.TagIndex(suiteIndex, "t0"), DeletedBy: "tok_special"}, 2},
		"operation":                {ledger.ListQuery{Operations: []string{"bulk:r1"}}, 7},
		"operation forms":          {ledger.ListQuery{Operations: []string{"bulk:r1", "r1"}}, 13},
		"operation and deleted by": {ledger.ListQuery{Operations: []string{"bulk:r1"}, DeletedBy: "tok_special"}, 2},
		"unknown operation":        {ledger.ListQuery{Operations: []string{"bulk:r9"}}, 0},
		"no match":                 {ledger.ListQuery{Q: "nobody"}, 0},
	} {
		if got := list(tc.q); len(got) != tc.want {
			t.Errorf("%s: got %d contacts, want %d", name, len(got), tc.want)
		}
	}
}

func identityIndex(t *testing.T, h StateStoreHarness) {
	f := newIdentityFixture(t, h.New(t))
	identityFinds(t, f)
	identityBatchFinds(t, f)
	identityRows(t, f)
}

// identityFixture is a store whose identity index holds Ada (active, with
// an external id and a phone), Bob (spam, in the trash) and Ada Again
// (archived, Ada's email) in ws, and another Ada in another workspace.
type identityFixture struct {
	s    projections.StateStore
	a, b contact.Snapshot
	ext  string
	p1   kernel.Position
}

func newIdentityFixture(t *testing.T, s projections.StateStore) identityFixture {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	a := snapshot("ws", "Ada", "ada@example.com", contact.StateActive, now)
	a.Source, a.Personal.ExternalID, a.Personal.Phone = "hubspot", "H-1", "+44 20 7946 0018"
	b := snapshot("ws", "Bob", "bob@example.com", contact.StateTrashed, now)
	b.Spam = true
	c := snapshot("ws", "Ada Again", "ada@example.com", contact.StateArchived, now)
	other := snapshot("other", "Ada", "ada@example.com", contact.StateActive, now)
	p1 := kernel.Position{Commit: 3, Prepare: 3}
	var rows []projections.Row
	for _, sn := range []contact.Snapshot{a, b, c, other} {
		rows = append(rows, projections.BuildRow(sn, suiteIndex, p1))
	}
	if err := s.Commit(ctx, projections.Batch{Projection: projections.Identities, To: p1, Upserts: rows}); err != nil {
		t.Fatal(err)
	}
	return identityFixture{s: s, a: a, b: b, ext: projections.ExtIndex(suiteIndex, "hubspot", "H-1"), p1: p1}
}

func (f identityFixture) find(t *testing.T, q ledger.IdentityQuery) []ledger.IdentityMatch {
	t.Helper()
	ms, err := f.s.FindIdentities(context.Background(), "ws", q)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// matchLines shows matches as comparable lines.
func matchLines(ms []ledger.IdentityMatch) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s/%s/spam=%v/ext=%v/email=%v/phone=%v", m.ID, m.State, m.Spam, m.ByExt, m.ByEmail, m.ByPhone))
	}
	return out
}

// identityFinds checks single lookups by external id, email and phone.
func identityFinds(t *testing.T, f identityFixture) {
	a, b, ext := f.a, f.b, f.ext
	if got := matchLines(f.find(t, ledger.IdentityQuery{ExtIndex: ext})); fmt.Sprint(got) != fmt.Sprint([]string{a.ID.String() + "/active/spam=false/ext=true/email=false/phone=false"}) {
		t.Fatalf("by external id: got %v", got)
	}
	if got := f.find(t, ledger.IdentityQuery{ExtIndex: projections.ExtIndex(suiteIndex, "salesforce", "H-1")}); len(got) != 0 {
		t.Fatalf("the same external id of another source matched: %v", matchLines(got))
	}
	byEmail := f.find(t, ledger.IdentityQuery{EmailIndex: suiteIndex.Of("email", "ada@example.com")})
	if len(byEmail) != 2 || !byEmail[0].ByEmail || !byEmail[1].ByEmail || byEmail[0].ID.String() > byEmail[1].ID.String() {
		t.Fatalf("by email: got %v, want Ada and Ada Again of ws in id order", matchLines(byEmail))
	}
	states := map[contact.State]bool{byEmail[0].State: true, byEmail[1].State: true}
	if !states[contact.StateActive] || !states[contact.StateArchived] {
		t.Fatalf("by email: states %v", states)
	}
	spam := f.find(t, ledger.IdentityQuery{EmailIndex: suiteIndex.Of("email", "bob@example.com"), PhoneIndex: suiteIndex.Of("phone", contact.NormalizePhone("+44 20 7946 0018"))})
	if len(spam) != 2 {
		t.Fatalf("by email or phone: got %v, want Bob and Ada", matchLines(spam))
	}
	for _, m := range spam {
		if m.ID == b.ID && (!m.Spam || m.State != contact.StateTrashed || !m.ByEmail || m.ByPhone) {
			t.Fatalf("Bob: got %+v, want spam in trash by email", m)
		}
		if m.ID == a.ID && (m.Spam || !m.ByPhone || m.ByEmail) {
			t.Fatalf("Ada: got %+v, want matched by phone only", m)
		}
	}
	if got := f.find(t, ledger.IdentityQuery{}); len(got) != 0 {
		t.Fatalf("an empty query matched %v", matchLines(got))
	}
}

func identityBatchFinds(t *testing.T, f identityFixture) {
	ctx, s, ext := context.Background(), f.s, f.ext
	// A batched lookup (imports) answers each query as FindIdentities does.
	bf, ok := s.(ledger.IdentityBatchFinder)
	if !ok {
		t.Fatalf("%T does not look up many identities at once (ledger.IdentityBatchFinder)", s)
	}
	qs := []ledger.IdentityQuery{
		{ExtIndex: ext}, {}, {EmailIndex: suiteIndex.Of("email", "ada@example.com")},
		{EmailIndex: suiteIndex.Of("email", "bob@example.com"), PhoneIndex: suiteIndex.Of("phone", contact.NormalizePhone("+44 20 7946 0018"))},
		{ExtIndex: ext, EmailIndex: suiteIndex.Of("email", "ada@example.com"), PhoneIndex: suiteIndex.Of("phone", contact.NormalizePhone("+44 20 7946 0018"))},
		{EmailIndex: suiteIndex.Of("email", "nobody@example.com")}, {ExtIndex: ext},
	}
	many, err := bf.FindIdentitiesMany(ctx, "ws", qs)
	if err != nil || len(many) != len(qs) {
		t.Fatalf("batched lookup: %d answers, %v; want %d", len(many), err, len(qs))
	}
	for i, q := range qs {
		if got, want := matchLines(many[i]), matchLines(f.find(t, q)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("batched query %d: got %v, want %v", i, got, want)
		}
	}
}

func identityRows(t *testing.T, f identityFixture) {
	ctx, s, a, b, ext, p1 := context.Background(), f.s, f.a, f.b, f.ext, f.p1
	// The projection's rows come back with their snapshot and indexes,
	// and a contact leaving the live states (purged) leaves the index.
	got, err := s.Rows(ctx, projections.Identities, []projections.Ref{{Workspace: "ws", ID: a.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if r := got[a.ID]; r.ExtIndex != ext || r.Contact.Personal.ExternalID != "H-1" || r.Position != p1 || r.EmailIndex == "" {
		t.Fatalf("row: got %+v", r)
	}
	b.Spam = false
	p2 := kernel.Position{Commit: 4, Prepare: 4}
	err = s.Commit(ctx, projections.Batch{Projection: projections.Identities, From: p1, To: p2,
		Upserts: []projections.Row{projections.BuildRow(b, suiteIndex, p2)}, Deletes: []projections.Ref{{Workspace: "ws", ID: a.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.find(t, ledger.IdentityQuery{ExtIndex: ext}); len(got) != 0 {
		t.Fatalf("a deleted row still matches: %v", matchLines(got))
	}
	if got := f.find(t, ledger.IdentityQuery{EmailIndex: suiteIndex.Of("email", "bob@example.com")}); len(got) != 1 || got[0].Spam {
		t.Fatalf("unmarked spam: got %v", matchLines(got))
	}
	if cp, _ := s.Checkpoint(ctx, projections.Identities); cp != p2 {
		t.Fatalf("checkpoint %s, want %s", cp, p2)
	}
}

func shadowBuiltAndSwitched(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	f := newShadowFixture(h)
	s, ss := f.stores(t)
	if ss == nil {
		return
	}
	old := f.row("Old", 1)
	if err := s.Commit(ctx, projections.Batch{Projection: "active", To: densePos(3), Upserts: []projections.Row{old}}); err != nil {
		t.Fatal(err)
	}
	if err := ss.CreateShadow(ctx, "active", "g1"); err != nil {
		t.Fatal(err)
	}
	a, b := f.row("Ann", 2), f.row("Ben", 3)
	if err := ss.LoadShadow(ctx, "active", "g1", []projections.Row{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := ss.IndexShadow(ctx, "active", "g1"); err != nil {
		t.Fatal(err)
	}
	shadow := projections.Shadow("active", "g1")
	if err := s.Commit(ctx, projections.Batch{Projection: shadow, To: densePos(2)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Rows(ctx, shadow, []projections.Ref{{Workspace: "ws", ID: a.Contact.ID}, {Workspace: "ws", ID: old.Contact.ID}})
	if err != nil || len(got) != 1 || got[a.Contact.ID].Contact.Personal.Email != "Ann@example.com" || got[a.Contact.ID].Position != densePos(2) {
		t.Fatalf("shadow rows: %+v, %v", got, err)
	}
	if names := f.names(t, s, "active"); !slices.Equal(names, []string{"Old"}) {
		t.Fatalf("the live view shows %v before the switch, want [Old]", names)
	}
	// The live checkpoint (3) is ahead of the shadow's (2): the switch asks for the batch between.
	c := f.row("Cid", 3)
	var asked []kernel.Position
	err = ss.SwitchShadow(ctx, "active", "g1", func(ctx context.Context, from, to kernel.Position) (projections.Batch, error) {
		asked = append(asked, from, to)
		return projections.Batch{Upserts: []projections.Row{c}, Deletes: []projections.Ref{{Workspace: "ws", ID: b.Contact.ID}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 2 || asked[0] != densePos(2) || asked[1] != densePos(3) {
		t.Fatalf("catch-up asked for %v, want (2, 3]", asked)
	}
	if names := f.names(t, s, "active"); !slices.Equal(names, []string{"Ann", "Cid"}) {
		t.Fatalf("the live view shows %v after the switch, want [Ann Cid]", names)
	}
	if items, err := s.List(ctx, ledger.ListQuery{Workspace: "ws", View: "active", EmailIndex: a.EmailIndex, Limit: 10}); err != nil || len(items) != 1 || items[0].Contact.ID != a.Contact.ID {
		t.Fatalf("email lookup after the switch: %d items, %v", len(items), err)
	}
	if cp, _ := s.Checkpoint(ctx, "active"); cp != densePos(3) {
		t.Fatalf("live checkpoint after the switch: %s, want 3", cp)
	}
	if v, _ := ss.Versions(ctx); v["active"] != projections.Version || len(v) != 1 {
		t.Fatalf("versions after the switch: %v, want active at %d and no shadow", v, projections.Version)
	}
	// The live projection goes on committing on the new table.
	d := f.row("Dot", 4)
	if err := s.Commit(ctx, projections.Batch{Projection: "active", From: densePos(3), To: densePos(4), Upserts: []projections.Row{d}}); err != nil {
		t.Fatal(err)
	}
	if names := f.names(t, s, "active"); !slices.Equal(names, []string{"Ann", "Cid", "Dot"}) {
		t.Fatalf("after a live commit: %v", names)
	}
	switchShadowAhead(t, f, s, ss)
}

// switchShadowAhead switches in a shadow ahead of the live projection,
// never indexed: the checkpoint moves forward and the switch builds the
// indexes.
func switchShadowAhead(t *testing.T, f shadowFixture, s projections.StateStore, ss projections.ShadowStore) {
	t.Helper()
	ctx := context.Background()
	if err := ss.CreateShadow(ctx, "active", "g2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, projections.Batch{Projection: projections.Shadow("active", "g2"), To: densePos(9), Upserts: []projections.Row{f.row("Eve", 9)}}); err != nil {
		t.Fatal(err)
	}
	err := ss.SwitchShadow(ctx, "active", "g2", func(context.Context, kernel.Position, kernel.Position) (projections.Batch, error) {
		return projections.Batch{}, errors.New("not asked for")
	})
	if err != nil {
		t.Fatal(err)
	}
	if names := f.names(t, s, "active"); !slices.Equal(names, []string{"Eve"}) {
		t.Fatalf("after the second switch: %v", names)
	}
	// g2 switched in without IndexShadow: the switch built its indexes.
	eve := f.row("Eve", 9)
	if items, err := s.List(ctx, ledger.ListQuery{Workspace: "ws", View: "active", EmailIndex: eve.EmailIndex, Limit: 10}); err != nil || len(items) != 1 {
		t.Fatalf("email lookup after a switch without IndexShadow: %d items, %v", len(items), err)
	}
	if cp, _ := s.Checkpoint(ctx, "active"); cp != densePos(9) {
		t.Fatalf("live checkpoint: %s, want 9", cp)
	}
	if err := s.Commit(ctx, projections.Batch{Projection: "active", From: densePos(4), To: densePos(5)}); !errors.Is(err, kernel.ErrConcurrency) {
		t.Fatalf("a live batch from before the switch: got %v, want ErrConcurrency", err)
	}
}

func failedSwitchKeepsLive(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	f := newShadowFixture(h)
	s, ss := f.stores(t)
	if ss == nil {
		return
	}
	if err := s.Commit(ctx, projections.Batch{Projection: "trash", To: densePos(5), Upserts: []projections.Row{f.row("Live", 5)}}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"a1", "a2"} {
		if err := ss.CreateShadow(ctx, "trash", g); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, projections.Batch{Projection: projections.Shadow("trash", g), To: densePos(1), Upserts: []projections.Row{f.row("Shadow", 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("boom")
	err := ss.SwitchShadow(ctx, "trash", "a1", func(context.Context, kernel.Position, kernel.Position) (projections.Batch, error) {
		return projections.Batch{}, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("failed catch-up: got %v, want it returned", err)
	}
	if names := f.names(t, s, "trash"); !slices.Equal(names, []string{"Live"}) {
		t.Fatalf("after a failed switch: %v", names)
	}
	if err := ss.DropShadows(ctx, "trash", "a1"); err != nil {
		t.Fatal(err)
	}
	if v, _ := ss.Versions(ctx); len(v) != 2 {
		t.Fatalf("after dropping one shadow: %v, want trash and trash~a2", v)
	}
	if err := ss.DropShadows(ctx, "trash", ""); err != nil {
		t.Fatal(err)
	}
	if v, _ := ss.Versions(ctx); len(v) != 1 {
		t.Fatalf("after dropping every shadow: %v, want trash only", v)
	}
	if _, err := s.Rows(ctx, projections.Shadow("trash", "a2"), []projections.Ref{{Workspace: "ws", ID: contact.NewID()}}); err == nil {
		t.Fatal("a dropped shadow can still be read")
	}
	if names := f.names(t, s, "trash"); !slices.Equal(names, []string{"Live"}) {
		t.Fatalf("after dropping shadows: %v", names)
	}
}

func failureKeptUntilCommit(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	f := newShadowFixture(h)
	s := h.New(t)
	fs, ok := s.(projections.FailureStore)
	if !ok {
		if !h.Features.NoShadowStore {
			t.Fatal("the store does not implement projections.FailureStore")
		}
		return
	}
	if err := s.Commit(ctx, projections.Batch{Projection: "active", To: densePos(2)}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"active", "erasure"} {
		if err := fs.SetFailed(ctx, name, f.now); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.SetFailed(ctx, "active", f.now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := fs.Failed(ctx)
	if err != nil || len(got) != 2 || !got["active"].Equal(f.now) {
		t.Fatalf("failed: %v, %v; want active and erasure, active since the first failure", got, err)
	}
	if cp, _ := s.Checkpoint(ctx, "active"); cp != densePos(2) {
		t.Fatalf("recording a failure moved the checkpoint to %s", cp)
	}
	if cp, _ := s.Checkpoint(ctx, "erasure"); !cp.IsZero() {
		t.Fatalf("recording a failure set a checkpoint %s", cp)
	}
	if err := s.Commit(ctx, projections.Batch{Projection: "active", From: densePos(2), To: densePos(3)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := fs.Failed(ctx); len(got) != 1 || got["erasure"].IsZero() {
		t.Fatalf("after a commit: %v, want erasure only", got)
	}
}

func rebuildLockAndRecords(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	f := newShadowFixture(h)
	_, ss := f.stores(t)
	if ss == nil {
		return
	}
	release, ok, err := ss.LockRebuild(ctx, "active")
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok, err := ss.LockRebuild(ctx, "active"); err != nil || ok {
		t.Fatalf("second lock: got %v %v, want refused", ok, err)
	}
	if _, ok, err := ss.LockRebuild(ctx, "trash", "active"); err != nil || ok {
		t.Fatalf("locks of two views, one held: got %v %v, want refused", ok, err)
	}
	other, ok, err := ss.LockRebuild(ctx, "trash", "archived")
	if err != nil || !ok {
		t.Fatalf("other views' locks: %v %v (a refused lock must not keep the others)", ok, err)
	}
	other()
	release()
	again, ok, err := ss.LockRebuild(ctx, "active")
	if err != nil || !ok {
		t.Fatalf("lock after release: %v %v", ok, err)
	}
	again()
	rebuildRecords(t, ss, f.now)
}

// rebuildRecords checks that rebuild records are saved, cancelled and listed.
func rebuildRecords(t *testing.T, ss projections.ShadowStore, now time.Time) {
	t.Helper()
	ctx := context.Background()
	j := projections.RebuildJob{ID: "rb_1", Projection: "all", State: projections.RebuildRunning, Phase: "folding", Reason: "requested",
		RequestedBy: "tok_x", EventsDone: 5, EventsTotal: 10, StartedAt: now, UpdatedAt: now}
	if cancel, err := ss.SaveRebuild(ctx, j); err != nil || cancel {
		t.Fatalf("save: %v %v", cancel, err)
	}
	if err := ss.CancelRebuild(ctx, "rb_1"); err != nil {
		t.Fatal(err)
	}
	if err := ss.CancelRebuild(ctx, "rb_2"); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
	j.EventsDone, j.State, j.FinishedAt = 10, projections.RebuildCancelled, now.Add(time.Second)
	if cancel, err := ss.SaveRebuild(ctx, j); err != nil || !cancel {
		t.Fatalf("save after cancel: got %v %v, want the cancel flag", cancel, err)
	}
	got, err := ss.Rebuild(ctx, "rb_1")
	if err != nil || got.EventsDone != 10 || got.State != projections.RebuildCancelled || !got.FinishedAt.Equal(j.FinishedAt) || !got.StartedAt.Equal(now) || !got.Cancel || got.RequestedBy != "tok_x" {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := ss.Rebuild(ctx, "rb_2"); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("unknown rebuild: %v", err)
	}
	j2 := j
	j2.ID, j2.StartedAt, j2.FinishedAt = "rb_2", now.Add(time.Minute), time.Time{}
	if _, err := ss.SaveRebuild(ctx, j2); err != nil {
		t.Fatal(err)
	}
	list, err := ss.Rebuilds(ctx, 10)
	if err != nil || len(list) != 2 || list[0].ID != "rb_2" || !list[0].FinishedAt.IsZero() {
		t.Fatalf("recent rebuilds: %+v, %v", list, err)
	}
}

func oneClaimPerValue(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	claim := claimAt(now)
	a, b := contact.NewID(), contact.NewID()
	cur, inserted, err := s.ClaimIdentity(ctx, claim("ws", "email", "i1", a))
	if err != nil || !inserted || cur.Contact != a {
		t.Fatalf("first claim: %+v %v %v", cur, inserted, err)
	}
	cur, inserted, err = s.ClaimIdentity(ctx, claim("ws", "email", "i1", b))
	if err != nil || inserted || cur.Contact != a || !cur.At.Equal(now) || cur.Kind != "email" || cur.Index != "i1" {
		t.Fatalf("another contact's claim: got %+v %v %v, want a's", cur, inserted, err)
	}
	if cur, inserted, err = s.ClaimIdentity(ctx, claim("ws", "email", "i1", a)); err != nil || inserted || cur.Contact != a {
		t.Fatalf("a claim again: %+v %v %v", cur, inserted, err)
	}
	// Kinds and workspaces are apart.
	for _, c := range []ledger.IdentityClaim{claim("ws", "phone", "i1", b), claim("other", "email", "i1", b)} {
		if _, inserted, err := s.ClaimIdentity(ctx, c); err != nil || !inserted {
			t.Fatalf("claim of %s/%s: %v %v", c.Workspace, c.Kind, inserted, err)
		}
	}
	if got, ok, err := s.IdentityClaimOf(ctx, "ws", "email", "i1"); err != nil || !ok || got.Contact != a {
		t.Fatalf("claim of: %+v %v %v", got, ok, err)
	}
	if _, ok, err := s.IdentityClaimOf(ctx, "ws", "email", "nope"); err != nil || ok {
		t.Fatalf("claim of an unclaimed value: %v %v", ok, err)
	}
}

func claimMovesFromHolder(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	claim := claimAt(now)
	a, b, c := contact.NewID(), contact.NewID(), contact.NewID()
	if _, _, err := s.ClaimIdentity(ctx, claim("ws", "email", "i2", a)); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.TakeOverIdentity(ctx, claim("ws", "email", "i2", b), c); err != nil || ok {
		t.Fatalf("take over from a contact that does not hold it: %v %v", ok, err)
	}
	if ok, err := s.TakeOverIdentity(ctx, claim("ws", "email", "i2", b), a); err != nil || !ok {
		t.Fatalf("take over from the holder: %v %v", ok, err)
	}
	if err := s.ReleaseIdentity(ctx, "ws", "email", "i2", a); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := s.IdentityClaimOf(ctx, "ws", "email", "i2"); !ok || got.Contact != b {
		t.Fatalf("a release by a former holder took b's claim: %+v %v", got, ok)
	}
	if err := s.ReleaseIdentity(ctx, "ws", "email", "i2", b); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.IdentityClaimOf(ctx, "ws", "email", "i2"); ok {
		t.Fatal("the holder's release left its claim")
	}
}

func racingClaimants(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	claim := claimAt(now)
	const n = 16
	var (
		mu  sync.Mutex
		won []contact.ID
		wg  sync.WaitGroup
	)
	ids := make([]contact.ID, n)
	for i := range ids {
		ids[i] = contact.NewID()
	}
	for i := range n {
		wg.Go(func() {
			cur, inserted, err := s.ClaimIdentity(ctx, claim("ws", "phone", "race", ids[i]))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if inserted {
				won = append(won, cur.Contact)
			}
		})
	}
	wg.Wait()
	got, _, _ := s.IdentityClaimOf(ctx, "ws", "phone", "race")
	if len(won) != 1 || got.Contact != won[0] {
		t.Fatalf("%d claimants won %v; the claim is %s's", n, won, got.Contact)
	}
}

func erasureDeletesClaims(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	claim := claimAt(now)
	a, b := contact.NewID(), contact.NewID()
	for _, c := range []ledger.IdentityClaim{claim("ws", "email", "e-a", a), claim("ws", "phone", "p-a", a), claim("ws", "email", "e-b", b)} {
		if _, _, err := s.ClaimIdentity(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	to := kernel.Position{Commit: 1, Prepare: 1}
	if err := s.Commit(ctx, projections.Batch{Projection: projections.Erasure, To: to, DestroyKeys: []projections.Ref{{Workspace: "ws", ID: a}}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct{ kind, index string }{{"email", "e-a"}, {"phone", "p-a"}} {
		if _, ok, _ := s.IdentityClaimOf(ctx, "ws", k.kind, k.index); ok {
			t.Fatalf("the erased contact's %s claim stays", k.kind)
		}
	}
	if got, ok, _ := s.IdentityClaimOf(ctx, "ws", "email", "e-b"); !ok || got.Contact != b {
		t.Fatal("another contact's claim went with the erasure")
	}
}

func heldContacts(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	var held []contact.Snapshot
	var rows []projections.Row
	p := kernel.Position{Commit: 5, Prepare: 5}
	for i := range 5 {
		sn := snapshot("ws", fmt.Sprintf("Held %d", i), "", contact.StateTrashed, now)
		if i != 2 {
			sn.Hold = &contact.Hold{ID: fmt.Sprintf("hold_%d", i), Case: "Doe v. Acme", At: now, By: kernel.Actor{Principal: "tok_a", Role: kernel.RoleAuditor}}
			held = append(held, sn)
		}
		rows = append(rows, projections.BuildRow(sn, suiteIndex, p))
	}
	o := snapshot("other", "Held elsewhere", "", contact.StateActive, now)
	o.Hold = &contact.Hold{ID: "hold_o", At: now}
	rows = append(rows, projections.BuildRow(o, suiteIndex, p))
	if err := s.Commit(ctx, projections.Batch{Projection: projections.Identities, To: p, Upserts: rows}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(held, func(a, b contact.Snapshot) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	var got []contact.Snapshot
	after := ""
	for {
		page, err := s.HeldContacts(ctx, "ws", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1].ID.String()
	}
	if len(got) != len(held) {
		t.Fatalf("held contacts: got %d, want %d", len(got), len(held))
	}
	for i := range held {
		if got[i].ID != held[i].ID || got[i].Hold == nil || got[i].Hold.ID != held[i].Hold.ID || got[i].Hold.Case != "Doe v. Acme" {
			t.Fatalf("held contact %d: got %+v, want %+v", i, got[i], held[i])
		}
	}
	// A release (a row without a hold) takes it off the list.
	sn := held[0]
	sn.Hold = nil
	p2 := kernel.Position{Commit: 6, Prepare: 6}
	if err := s.Commit(ctx, projections.Batch{Projection: projections.Identities, From: p, To: p2, Upserts: []projections.Row{projections.BuildRow(sn, suiteIndex, p2)}}); err != nil {
		t.Fatal(err)
	}
	if page, _ := s.HeldContacts(ctx, "ws", "", 10); len(page) != len(held)-1 {
		t.Fatalf("after a release: %d held, want %d", len(page), len(held)-1)
	}
}

// TrashByOperation checks that the store's trash view keeps the operation
// that trashed each contact and filters by it, for the stores' migration
// tests (a view's table made before the column existed gets it).
func TrashByOperation(t *testing.T, s projections.StateStore) {
	t.Helper()
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Microsecond)
	var rows []projections.Row
	for _, op := range []string{"bulk:r1", "bulk:r2"} {
		sn := snapshot("ws", "Op "+op, "", contact.StateTrashed, at)
		sn.TrashedOperation = op
		rows = append(rows, projections.BuildRow(sn, suiteIndex, kernel.Position{Commit: 1, Prepare: 1}))
	}
	if err := s.Commit(ctx, projections.Batch{Projection: "trash", To: kernel.Position{Commit: 1, Prepare: 1}, Upserts: rows}); err != nil {
		t.Fatal(err)
	}
	items, err := s.List(ctx, ledger.ListQuery{Workspace: "ws", View: "trash", Operations: []string{"bulk:r2"}, Limit: 10})
	if err != nil || len(items) != 1 || items[0].Contact.ID != rows[1].Contact.ID || items[0].Contact.TrashedOperation != "bulk:r2" {
		t.Fatalf("trash by operation: %v, %v", items, err)
	}
}

// sessionsCase checks the console's session port: a session is found by
// its hash only, touched forward only, deleted, and expired by either limit.
func sessionsCase(t *testing.T, h StateStoreHarness) {
	ctx := context.Background()
	s := h.New(t)
	at := time.Now().UTC().Truncate(time.Microsecond)
	mk := func(n byte, seen, expires time.Time) ledger.Session {
		return ledger.Session{Hash: bytes.Repeat([]byte{n}, 32), TokenID: fmt.Sprintf("tok_%d", n), Workspace: "ws",
			CreatedAt: at, SeenAt: seen, ExpiresAt: expires}
	}
	fresh, idle, old := mk(1, at, at.Add(time.Hour)), mk(2, at.Add(-time.Hour), at.Add(time.Hour)), mk(3, at, at.Add(-time.Second))
	for _, ss := range []ledger.Session{fresh, idle, old} {
		if err := s.CreateSession(ctx, ss); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Session(ctx, fresh.Hash)
	if err != nil || got.TokenID != fresh.TokenID || got.Workspace != "ws" || !got.SeenAt.Equal(at) || !got.ExpiresAt.Equal(fresh.ExpiresAt) || !got.CreatedAt.Equal(at) {
		t.Fatalf("got %+v %v, want %+v", got, err, fresh)
	}
	if _, err := s.Session(ctx, bytes.Repeat([]byte{9}, 32)); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("unknown session: got %v, want ErrNotFound", err)
	}
	later := at.Add(time.Minute)
	if err := s.TouchSession(ctx, fresh.Hash, later); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchSession(ctx, fresh.Hash, at); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Session(ctx, fresh.Hash); !got.SeenAt.Equal(later) {
		t.Fatalf("seen at %v after touches at %v then %v, want the later", got.SeenAt, later, at)
	}
	n, err := s.ExpireSessions(ctx, at, at.Add(-30*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("expire: got %d %v, want the idle and the ended session", n, err)
	}
	for _, gone := range [][]byte{idle.Hash, old.Hash} {
		if _, err := s.Session(ctx, gone); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("expired session: got %v, want ErrNotFound", err)
		}
	}
	if err := s.DeleteSession(ctx, fresh.Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, fresh.Hash); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("deleted session: got %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(ctx, fresh.Hash); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
}
