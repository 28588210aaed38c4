package contact_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
)

// replayed rebuilds c from the events its commands recorded, as a load from the log would.
func replayed(t *testing.T, c *contact.Contact) *contact.Contact {
	t.Helper()
	var envs []contact.Envelope
	for i, ch := range c.Changes() {
		// Round-trip through the codec, as the log does.
		enc, err := contact.Encode(ch.Event)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := contact.Decode(enc.Type, enc.Schema, enc.Data, enc.Personal, false)
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, contact.Envelope{Version: uint64(i + 1), At: ch.At, By: ch.By, Workspace: "ws", Event: ev})
	}
	r, err := contact.Replay(c.ID(), envs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func associations(s contact.Snapshot) string {
	return fmt.Sprint(s.Tags, s.Lists, s.Links, s.NoteCount, s.CreatedAt)
}

// TestAssociationsComeBackOnRestore records tags, notes, list memberships
// and links, trashes and restores the contact, and checks that it has
// exactly what it had before; a purge leaves none of them.
func TestAssociationsComeBackOnRestore(t *testing.T) {
	p := contact.DefaultPolicy()
	c := reach(t, "active")
	steps := []error{
		c.ChangeTags([]string{"vip", "lead"}, nil, member, t0),
		c.ChangeTags([]string{"customer"}, []string{"lead"}, member, t0),
		c.SetList("newsletter", contact.ListSubscribed, member, t0),
		c.SetList("product-updates", contact.ListUnconfirmed, member, t0),
		c.SetList("newsletter", contact.ListBounced, member, t0),
		c.SetList("old", contact.ListSubscribed, member, t0),
		c.RemoveList("old", member, t0),
		c.AddLink(contact.Link{Kind: "deal", Ref: "D-1"}, member, t0),
		c.AddLink(contact.Link{Kind: "account", Ref: "A-9"}, member, t0),
		c.AddLink(contact.Link{Kind: "ticket", Ref: "T-3"}, member, t0),
		c.RemoveLink(contact.Link{Kind: "ticket", Ref: "T-3"}, member, t0),
	}
	_, err := c.AddNote("Met at the conference;\nprefers email.", member, t0)
	steps = append(steps, err)
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	before := c.Snapshot()
	if fmt.Sprint(before.Tags) != "[customer vip]" || fmt.Sprint(before.Lists) != "map[newsletter:bounced product-updates:unconfirmed]" ||
		fmt.Sprint(before.Links) != "[{account A-9} {deal D-1}]" || before.NoteCount != 1 {
		t.Fatalf("associations: got %s", associations(before))
	}
	if err := c.Trash("", p, member, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"tags":  func() error { return c.ChangeTags([]string{"x"}, nil, member, t0) },
		"lists": func() error { return c.SetList("x", contact.ListSubscribed, member, t0) },
		"links": func() error { return c.AddLink(contact.Link{Kind: "task", Ref: "1"}, member, t0) },
		"notes": func() error { _, err := c.AddNote("x", member, t0); return err },
	} {
		if err := f(); !errors.Is(err, contact.ErrNotEditable) {
			t.Errorf("%s in trash: got %v, want ErrNotEditable", name, err)
		}
	}
	if err := c.Restore("", p, member, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	after := replayed(t, c)
	if got, want := associations(after.Snapshot()), associations(before); got != want {
		t.Fatalf("after restore: got %s, want %s", got, want)
	}
	if notes := after.Notes(); len(notes) != 1 || notes[0].Text != "Met at the conference;\nprefers email." {
		t.Fatalf("notes after restore: %+v", notes)
	}
	if err := c.Trash("", p, member, t0); err != nil {
		t.Fatal(err)
	}
	if err := c.Purge(erasure(), p, admin, t0); err != nil {
		t.Fatal(err)
	}
	s := c.Snapshot()
	if len(s.Tags)+len(s.Lists)+len(s.Links)+s.NoteCount != 0 || len(c.Notes()) != 0 {
		t.Fatalf("a purged contact kept associations: %s", associations(s))
	}
}

func TestAssociationValidation(t *testing.T) {
	c := reach(t, "active")
	for name, err := range map[string]error{
		"empty note":     func() error { _, err := c.AddNote("  \n", member, t0); return err }(),
		"long note":      func() error { _, err := c.AddNote(string(make([]rune, contact.MaxNoteLen+1)), member, t0); return err }(),
		"bad list":       c.SetList("no spaces", contact.ListSubscribed, member, t0),
		"bad status":     c.SetList("news", "maybe", member, t0),
		"bad link kind":  c.AddLink(contact.Link{Kind: "invoice", Ref: "1"}, member, t0),
		"bad link id":    c.AddLink(contact.Link{Kind: "deal", Ref: "a b"}, member, t0),
		"add and remove": c.ChangeTags([]string{"a"}, []string{"a"}, member, t0),
		"empty tag":      c.ChangeTags([]string{" "}, nil, member, t0),
	} {
		if !errors.Is(err, kernel.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	if err := c.RemoveList("news", member, t0); !errors.Is(err, kernel.ErrNotFound) {
		t.Errorf("remove from a list it is not on: got %v", err)
	}
	if err := c.RemoveLink(contact.Link{Kind: "deal", Ref: "1"}, member, t0); !errors.Is(err, kernel.ErrNotFound) {
		t.Errorf("remove a link it lacks: got %v", err)
	}
	if n := len(c.Changes()); n != 1 {
		t.Fatalf("refused commands recorded events: %d changes, want only ContactCreated", n)
	}
	// Changes that change nothing record nothing.
	if err := c.ChangeTags(nil, []string{"absent"}, member, t0); err != nil || len(c.Changes()) != 1 {
		t.Fatalf("removing an absent tag: %v, %d changes", err, len(c.Changes()))
	}
}

func TestSpamIsSeparateFromDeletion(t *testing.T) {
	for _, start := range []string{"active", "archived", "trashed (from active)"} {
		c := reach(t, start)
		state := c.State()
		if err := c.MarkSpam("phishing", member, t0); err != nil {
			t.Fatalf("%s: %v", start, err)
		}
		if !c.Spam() || c.State() != state {
			t.Fatalf("%s: spam %v state %s, want spam in the same state", start, c.Spam(), c.State())
		}
		if err := c.MarkSpam("", member, t0); !errors.Is(err, contact.ErrTransition) {
			t.Fatalf("%s: marking twice: %v", start, err)
		}
		if err := c.UnmarkSpam("", member, t0); err != nil || c.Spam() {
			t.Fatalf("%s: unmark: %v", start, err)
		}
		if err := c.UnmarkSpam("", member, t0); !errors.Is(err, contact.ErrTransition) {
			t.Fatalf("%s: unmarking twice: %v", start, err)
		}
	}
	if err := reach(t, "purged").MarkSpam("", member, t0); !errors.Is(err, contact.ErrPurged) {
		t.Fatalf("spam on a purged contact: %v", err)
	}
}

func TestRetentionPurgesOnlyPastTheWindow(t *testing.T) {
	ps := contact.DefaultPolicy().Settings()
	ps.RetentionDays = 10
	p, _ := ps.Policy()
	c := reach(t, "active")
	if err := c.Trash("", p, member, t0); err != nil {
		t.Fatal(err)
	}
	er := contact.Erasure{Trigger: contact.TriggerRetention, KeyID: "dk_1"}
	due := t0.AddDate(0, 0, 10)
	if !c.PurgeDue(p).Equal(due) {
		t.Fatalf("due %s, want %s", c.PurgeDue(p), due)
	}
	if err := c.Purge(er, p, kernel.System("retention"), due.Add(-time.Microsecond)); !errors.Is(err, contact.ErrTransition) {
		t.Fatalf("retention before the window: got %v, want ErrTransition", err)
	}
	if err := c.Purge(er, p, kernel.System("retention"), due); err != nil {
		t.Fatal(err)
	}
	ts := c.Tombstone()
	if ts.Erasure.Trigger != contact.TriggerRetention || ts.Erasure.RetentionDays != 10 || ts.By.Principal != "system:retention" {
		t.Fatalf("tombstone %+v", ts)
	}
}

func TestSyncKeepsArchivedArchived(t *testing.T) {
	c := reach(t, "archived")
	if err := c.Sync(contact.Patch{JobTitle: str("CTO")}, []string{"imported"}, member, t0); err != nil {
		t.Fatal(err)
	}
	s := c.Snapshot()
	if s.State != contact.StateArchived || s.Personal.JobTitle != "CTO" || !reflect.DeepEqual(s.Tags, []string{"imported"}) {
		t.Fatalf("sync of an archived contact: %+v", s)
	}
	if err := reach(t, "trashed (from active)").Sync(contact.Patch{JobTitle: str("CTO")}, nil, member, t0); !errors.Is(err, contact.ErrNotEditable) {
		t.Fatalf("sync of a trashed contact: %v", err)
	}
}

func TestNoteCodec(t *testing.T) {
	enc, err := contact.Encode(contact.NoteAdded{NoteID: "n1", Text: "secret note"})
	if err != nil {
		t.Fatal(err)
	}
	if string(enc.Data) != `{"note_id":"n1"}` || enc.Personal == nil {
		t.Fatalf("the note's text must travel in the sealed part only: data %s", enc.Data)
	}
	ev, err := contact.Decode(enc.Type, enc.Schema, enc.Data, enc.Personal, false)
	if err != nil || ev.(contact.NoteAdded).Text != "secret note" {
		t.Fatalf("round trip: %+v %v", ev, err)
	}
	ev, err = contact.Decode(enc.Type, enc.Schema, enc.Data, nil, true)
	if n := ev.(contact.NoteAdded); err != nil || n.Text != "" || !n.Shredded || n.NoteID != "n1" {
		t.Fatalf("shredded: %+v %v", ev, err)
	}
}
