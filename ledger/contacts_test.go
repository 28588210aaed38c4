package ledger_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/ledgertest"
	"github.com/contactledger/ledger/ledger"
)

// TestLifecycle walks contacts through the lifecycle from each state: each
// command lands in its state (with the event it names) or is refused with
// its error, leaving the contact as it was.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{NoRunner: true})
	for _, tc := range []struct {
		name  string
		path  []ledger.Transition // brings a fresh contact to the state under test
		do    ledger.Transition
		state contact.State
		event string
		err   error
	}{
		{"archive an active contact", nil, ledger.Archive, contact.StateArchived, contact.TypeArchived, nil},
		{"unarchive", []ledger.Transition{ledger.Archive}, ledger.Unarchive, contact.StateActive, contact.TypeUnarchived, nil},
		{"trash an archived contact", []ledger.Transition{ledger.Archive}, ledger.Trash, contact.StateTrashed, contact.TypeTrashed, nil},
		{"restore", []ledger.Transition{ledger.Trash}, ledger.Restore, contact.StateActive, contact.TypeRestored, nil},
		{"purge from trash", []ledger.Transition{ledger.Trash}, ledger.Purge, contact.StatePurged, contact.TypePurged, nil},
		{"anonymize from trash", []ledger.Transition{ledger.Trash}, ledger.Anonymize, contact.StateAnonymized, contact.TypeAnonymized, nil},
		{"purge an active contact", nil, ledger.Purge, "", "", contact.ErrTransition},
		{"restore an active contact", nil, ledger.Restore, "", "", contact.ErrTransition},
		{"restore a purged contact", []ledger.Transition{ledger.Trash, ledger.Purge}, ledger.Restore, "", "", contact.ErrPurged},
		{"an unknown transition", nil, "explode", "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			id := e.Create(t, tc.name, "")
			for _, p := range tc.path {
				e.Move(t, id, p)
			}
			before, _ := e.Events.ReadStream(ctx, ledgertest.Workspace, id.Stream())
			res, err := e.Svc.Transition(ctx, ledgertest.Workspace, id, ledgertest.Meta("req-"+tc.name), tc.do, ledger.TransitionInput{Reason: "because"})
			if tc.state == "" {
				if err == nil || (tc.err != nil && !errors.Is(err, tc.err)) {
					t.Fatalf("got %v; want %v", err, tc.err)
				}
				after, _ := e.Events.ReadStream(ctx, ledgertest.Workspace, id.Stream())
				if len(after) != len(before) {
					t.Fatalf("a refused command appended %d events", len(after)-len(before))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Contact.State != tc.state || res.Version != uint64(len(before)+1) || res.EventID == "" || res.Operation != "req-"+tc.name {
				t.Fatalf("result: state %s version %d event %q op %q; want %s, %d", res.Contact.State, res.Version, res.EventID, res.Operation, tc.state, len(before)+1)
			}
			if r := lastEvent(t, e, id); r.Type != tc.event || r.ID.String() != res.EventID {
				t.Fatalf("last event %s %s; want %s %s", r.Type, r.ID, tc.event, res.EventID)
			}
			if got, err := e.Svc.Get(ctx, ledgertest.Workspace, id); err != nil || got.State != tc.state {
				t.Fatalf("get: %s, %v", got.State, err)
			}
			if tc.do.Erasing() {
				if k, _ := e.Vault.ContactKey(ctx, ledgertest.Workspace, id); !k.Destroyed {
					t.Fatal("an erasure kept the data key")
				}
				gone, err := e.Svc.Erasure(ctx, ledgertest.Workspace, id)
				if err != nil || gone == nil || gone.Tombstone != res.EventID || !errors.Is(gone, ledger.ErrErased) {
					t.Fatalf("erasure: %+v, %v", gone, err)
				}
			}
		})
	}
}

// TestCommandGuards checks If-Match and dry runs: a stale version is
// refused, a dry run answers the real run's outcome and appends nothing,
// and a policy that requires archiving first refuses a trash.
func TestCommandGuards(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{NoRunner: true})
	ctx := t.Context()
	id := e.Create(t, "Ann", "ann@example.com")

	stale := ledgertest.Meta("req-stale")
	v := uint64(7)
	stale.IfMatch = &v
	if _, err := e.Svc.Transition(ctx, ledgertest.Workspace, id, stale, ledger.Archive, ledger.TransitionInput{}); !errors.Is(err, kernel.ErrConcurrency) {
		t.Fatalf("a stale If-Match: %v; want ErrConcurrency", err)
	}
	fresh := ledgertest.Meta("req-fresh")
	v = 1
	fresh.IfMatch = &v
	name := "Ann B"
	if res, err := e.Svc.Update(ctx, ledgertest.Workspace, id, fresh, contact.Patch{Name: &name}); err != nil || res.Contact.Personal.Name != name || res.Version != 2 {
		t.Fatalf("update at the current version: %+v, %v", res.Contact.Personal, err)
	}

	dry := ledgertest.Meta("req-dry")
	dry.DryRun = true
	res, err := e.Svc.Transition(ctx, ledgertest.Workspace, id, dry, ledger.Trash, ledger.TransitionInput{Reason: "dry"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.DryRun || res.Current != 2 || res.EventID != "" || res.Effect.From != contact.StateActive || res.Effect.To != contact.StateTrashed ||
		!slices.Equal(res.Effect.Events, []string{contact.TypeTrashed}) || res.Contact.PurgeAfter == nil {
		t.Fatalf("dry run: %+v", res)
	}
	if r := lastEvent(t, e, id); r.Version != 2 {
		t.Fatalf("a dry run appended (the stream is at %d)", r.Version)
	}

	if _, err := e.Svc.SetPolicy(ctx, ledgertest.Workspace, contact.PolicySettings{RetentionDays: 30, RestoreRole: kernel.RoleMember, RequireArchiveBeforeTrash: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.Transition(ctx, ledgertest.Workspace, id, ledgertest.Meta("req-t"), ledger.Trash, ledger.TransitionInput{}); !errors.Is(err, contact.ErrArchiveFirst) {
		t.Fatalf("trash under archive-first: %v", err)
	}
	if _, err := e.Svc.SetPolicy(ctx, ledgertest.Workspace, contact.PolicySettings{RetentionDays: -1}); !errors.Is(err, kernel.ErrInvalid) {
		t.Fatalf("an invalid policy: %v", err)
	}
	if _, err := e.Svc.Get(ctx, ledgertest.Workspace, contact.NewID()); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("get of an unknown contact: %v", err)
	}
}

// TestIdempotentCreate repeats a create under one Idempotency-Key: the
// repeat answers the first run's contact; once that contact is erased, a
// repeat is refused as erased and creates nothing.
func TestIdempotentCreate(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{NoRunner: true})
	ctx := t.Context()
	meta := ledgertest.Meta("req-1")
	meta.IdempotencyKey, meta.IdempotentSince = "key-1", e.Clock.Now()
	d := contact.Draft{Personal: contact.Personal{Name: "Ann"}}
	first, err := e.Svc.Create(ctx, ledgertest.Workspace, meta, d)
	if err != nil {
		t.Fatal(err)
	}
	if want := ledger.IdempotentID(ledgertest.Workspace, ledgertest.Admin.Principal, "key-1", meta.IdempotentSince); first.Contact.ID != want {
		t.Fatalf("id %s; want the key's %s", first.Contact.ID, want)
	}
	again, err := e.Svc.Create(ctx, ledgertest.Workspace, meta, d)
	if err != nil || again.Contact.ID != first.Contact.ID || again.Version != 1 {
		t.Fatalf("repeat: %s v%d, %v; want %s v1", again.Contact.ID, again.Version, err, first.Contact.ID)
	}
	e.Move(t, first.Contact.ID, ledger.Trash)
	e.Move(t, first.Contact.ID, ledger.Purge)
	_, err = e.Svc.Create(ctx, ledgertest.Workspace, meta, d)
	var gone *ledger.ErasedError
	if !errors.As(err, &gone) || gone.Contact != first.Contact.ID || !errors.Is(err, ledger.ErrErased) {
		t.Fatalf("repeat after the erasure: %v; want an ErasedError", err)
	}
	if k, _ := e.Vault.ContactKey(ctx, ledgertest.Workspace, first.Contact.ID); !k.Destroyed {
		t.Fatal("the repeat left a key for the erased contact")
	}
}

// TestAssociations changes a contact's tags, notes, lists, links and spam
// mark: each shows in the contact and in its history, and invalid input
// is refused.
func TestAssociations(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	ws := ledgertest.Workspace
	id := e.Create(t, "Ann", "ann@example.com", "old")
	m := ledgertest.Meta("req-a")
	check := func(what string, res ledger.Result, err error, ok func(contact.Snapshot) bool) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !ok(res.Contact.Snapshot) {
			t.Fatalf("%s: %+v", what, res.Contact.Snapshot)
		}
	}
	res, err := e.Svc.ChangeTags(ctx, ws, id, m, []string{"vip", "lead"}, []string{"old"})
	check("tags", res, err, func(s contact.Snapshot) bool { return slices.Equal(s.Tags, []string{"lead", "vip"}) })
	res, noteID, err := e.Svc.AddNote(ctx, ws, id, m, "called about the renewal")
	check("note", res, err, func(s contact.Snapshot) bool { return s.NoteCount == 1 && noteID != "" })
	notes, err := e.Svc.Notes(ctx, ws, id)
	if err != nil || len(notes) != 1 || notes[0].Text != "called about the renewal" {
		t.Fatalf("notes: %+v, %v", notes, err)
	}
	res, err = e.Svc.SetList(ctx, ws, id, m, "newsletter", contact.ListSubscribed)
	check("list", res, err, func(s contact.Snapshot) bool { return s.Lists["newsletter"] == contact.ListSubscribed })
	res, err = e.Svc.RemoveList(ctx, ws, id, m, "newsletter")
	check("list removed", res, err, func(s contact.Snapshot) bool { return len(s.Lists) == 0 })
	link := contact.Link{Kind: "deal", Ref: "D-1"}
	res, err = e.Svc.AddLink(ctx, ws, id, m, link)
	check("link", res, err, func(s contact.Snapshot) bool { return slices.Equal(s.Links, []contact.Link{link}) })
	res, err = e.Svc.RemoveLink(ctx, ws, id, m, link)
	check("link removed", res, err, func(s contact.Snapshot) bool { return len(s.Links) == 0 })
	if _, err := e.Svc.AddLink(ctx, ws, id, m, contact.Link{Kind: "planet", Ref: "x"}); !errors.Is(err, kernel.ErrInvalid) {
		t.Fatalf("a link of an unknown kind: %v", err)
	}

	res, err = e.Svc.MarkSpam(ctx, ws, id, m, "bot")
	check("spam", res, err, func(s contact.Snapshot) bool { return s.Spam })
	if _, err := e.Svc.Create(ctx, ws, ledgertest.Meta("req-dup"), contact.Draft{Personal: contact.Personal{Name: "Copy", Email: "ANN@example.com"}}); !errors.Is(err, contact.ErrSpam) {
		t.Fatalf("a create with a spam-marked email: %v; want ErrSpam", err)
	}
	res, err = e.Svc.UnmarkSpam(ctx, ws, id, m, "a person after all")
	check("unspam", res, err, func(s contact.Snapshot) bool { return !s.Spam })

	hist, err := e.Svc.History(ctx, ws, id)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, h := range hist {
		types = append(types, h.Record.Type)
	}
	want := []string{contact.TypeCreated, contact.TypeTagsChanged, contact.TypeNoteAdded, contact.TypeListMembershipChanged, contact.TypeListMembershipRemoved,
		contact.TypeLinked, contact.TypeUnlinked, contact.TypeMarkedSpam, contact.TypeUnmarkedSpam}
	if !slices.Equal(types, want) {
		t.Fatalf("history: %v; want %v", types, want)
	}
}

// TestHistoryAndTrail reads a contact's history before and after its
// purge (personal parts readable, then shredded), its trail as of a time
// and a version, and a time before it existed.
func TestHistoryAndTrail(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{NoRunner: true})
	ctx := t.Context()
	ws := ledgertest.Workspace
	created := e.Clock.Now()
	id := e.Create(t, "Ann", "ann@example.com")
	e.Clock.Advance(time.Hour)
	name := "Ann B"
	if _, err := e.Svc.Update(ctx, ws, id, ledgertest.Meta("req-u"), contact.Patch{Name: &name}); err != nil {
		t.Fatal(err)
	}
	hist, err := e.Svc.History(ctx, ws, id)
	if err != nil || len(hist) != 2 || hist[0].Shredded || !json.Valid(hist[0].Personal) {
		t.Fatalf("history: %d entries, %v", len(hist), err)
	}
	var p contact.Personal
	if err := json.Unmarshal(hist[0].Personal, &p); err != nil || p.Email != "ann@example.com" {
		t.Fatalf("the first entry's personal part: %s, %v", hist[0].Personal, err)
	}
	for _, tc := range []struct {
		name    string
		asOf    time.Time
		version uint64
		entries int
		named   string
		err     error
	}{
		{"everything", time.Time{}, 0, 2, "Ann B", nil},
		{"as of its creation", created, 0, 1, "Ann", nil},
		{"up to version 1", time.Time{}, 1, 1, "Ann", nil},
		{"before it existed", created.Add(-time.Hour), 0, 0, "", ledger.ErrNotYet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := e.Svc.Trail(ctx, ws, id, tc.asOf, tc.version)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %v; want %v", err, tc.err)
				}
				return
			}
			if err != nil || len(tr.Entries) != tc.entries || tr.State.Personal.Name != tc.named || tr.Current != 2 {
				t.Fatalf("trail: %d entries, name %q, current %d, %v", len(tr.Entries), tr.State.Personal.Name, tr.Current, err)
			}
		})
	}
	e.Move(t, id, ledger.Trash)
	e.Move(t, id, ledger.Purge)
	hist, err = e.Svc.History(ctx, ws, id)
	if err != nil || len(hist) != 4 {
		t.Fatalf("history after the purge: %d, %v", len(hist), err)
	}
	if !hist[0].Shredded || hist[0].Personal != nil {
		t.Fatalf("the created event after the purge: shredded %v, personal %s", hist[0].Shredded, hist[0].Personal)
	}
}
