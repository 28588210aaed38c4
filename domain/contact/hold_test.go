package contact_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
)

// TestHoldBlocksErasureOnly checks a legal hold: purge and anonymize of a
// held contact are refused with an error naming the hold (its id, never
// its case or reason); trash, restore and edits still work; a second hold
// and a release without one are refused; after the release the purge goes
// through; and replaying the events gives the same contact.
func TestHoldBlocksErasureOnly(t *testing.T) {
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	admin := kernel.Actor{Principal: "tok_admin", Role: kernel.RoleAdmin}
	auditor := kernel.Actor{Principal: "tok_aud", Role: kernel.RoleAuditor}
	p := contact.DefaultPolicy()
	c, err := contact.Create(contact.NewID(), "ws", contact.Draft{Personal: contact.Personal{Name: "Ada", Email: "ada@example.com"}}, admin, now)
	if err != nil {
		t.Fatal(err)
	}
	const caseRef, reason = "Lovelace v. Babbage", "Ada's lawyer asked us to keep everything"
	id, err := c.PlaceHold(caseRef, reason, auditor, now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, contact.HoldPrefix) {
		t.Fatalf("hold id %q, want the prefix %q", id, contact.HoldPrefix)
	}
	h := c.Snapshot().Hold
	if h == nil || h.ID != id || h.Case != caseRef || h.Reason != reason || h.By != auditor || !h.At.Equal(now) {
		t.Fatalf("hold in the state: %+v", h)
	}
	if _, err := c.PlaceHold("another", "", admin, now); !errors.Is(err, contact.ErrAlreadyHeld) || !strings.Contains(err.Error(), id) {
		t.Fatalf("a second hold: got %v, want already-held naming %s", err, id)
	}
	// Edits, trash and restore still work on a held contact.
	name := "Ada King"
	if err := c.Update(contact.Patch{Name: &name}, admin, now); err != nil {
		t.Fatal(err)
	}
	if err := c.Trash("", p, admin, now); err != nil {
		t.Fatal(err)
	}
	if err := c.Restore("", p, admin, now); err != nil {
		t.Fatal(err)
	}
	if err := c.Trash("", p, admin, now); err != nil {
		t.Fatal(err)
	}
	er := contact.Erasure{Trigger: contact.TriggerRequest, KeyID: "dk_1"}
	for name, erase := range map[string]func() error{
		"purge":     func() error { return c.Purge(er, p, admin, now) },
		"anonymize": func() error { return c.Anonymize(er, p, admin, now) },
		"retention": func() error {
			return c.Purge(contact.Erasure{Trigger: contact.TriggerRetention, KeyID: "dk_1"}, p, kernel.System("retention"), now.AddDate(1, 0, 0))
		},
	} {
		err := erase()
		var held *contact.HeldError
		if !errors.As(err, &held) || !errors.Is(err, contact.ErrHeld) || held.Hold != id {
			t.Fatalf("%s of a held contact: got %v, want a HeldError naming %s", name, err, id)
		}
		if msg := err.Error(); !strings.Contains(msg, id) || strings.Contains(msg, "Lovelace") || strings.Contains(msg, "lawyer") {
			t.Fatalf("%s: the refusal %q must name the hold and not its case or reason", name, msg)
		}
	}
	if c.State() != contact.StateTrashed {
		t.Fatalf("refused erasures left the contact %s", c.State())
	}
	if err := c.ReleaseHold("matter closed", auditor, now); err != nil {
		t.Fatal(err)
	}
	if err := c.ReleaseHold("", auditor, now); !errors.Is(err, contact.ErrNotHeld) {
		t.Fatalf("releasing twice: got %v, want not-held", err)
	}
	if c.Snapshot().Hold != nil {
		t.Fatal("the released hold is still in the state")
	}
	// Held again and released again: the latest hold is the one that counts.
	if _, err := c.PlaceHold("", "", admin, now); err != nil {
		t.Fatal(err)
	}
	if err := c.ReleaseHold("", admin, now); err != nil {
		t.Fatal(err)
	}
	if err := c.Purge(er, p, admin, now); err != nil {
		t.Fatalf("purge after the release: %v", err)
	}
	if _, err := c.PlaceHold("", "", admin, now); !errors.Is(err, contact.ErrPurged) {
		t.Fatalf("a hold on a purged contact: got %v, want purged", err)
	}
	var envs []contact.Envelope
	for i, ch := range c.Changes() {
		envs = append(envs, contact.Envelope{Version: uint64(i + 1), At: ch.At, By: ch.By, Workspace: "ws", Event: ch.Event})
	}
	r, err := contact.Replay(c.ID(), envs)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Snapshot(), c.Snapshot()) {
		t.Fatalf("replay gives %+v, want %+v", r.Snapshot(), c.Snapshot())
	}
}

// TestHoldEventsSealTheirFreeText checks that a hold's case and reason,
// free text about the contact, are only in the sealed part of its events,
// read back from it, and read as shredded after an erasure; the hold id
// stays in clear.
func TestHoldEventsSealTheirFreeText(t *testing.T) {
	const secret = "ada.lovelace@example.com"
	for _, tc := range []struct{ ev, shredded contact.Event }{
		{contact.Held{HoldID: "hold_1", Case: secret, Reason: "r"}, contact.Held{HoldID: "hold_1"}},
		{contact.Held{HoldID: "hold_1", Reason: secret}, contact.Held{HoldID: "hold_1"}},
		{contact.HoldReleased{HoldID: "hold_1", Reason: secret}, contact.HoldReleased{HoldID: "hold_1"}},
	} {
		enc, err := contact.Encode(tc.ev)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(enc.Data, []byte(secret)) || !bytes.Contains(enc.Data, []byte("hold_1")) || !bytes.Contains(enc.Personal, []byte(secret)) {
			t.Fatalf("%s: clear %s, sealed %s; want the id in clear and the text sealed", enc.Type, enc.Data, enc.Personal)
		}
		got, err := contact.Decode(enc.Type, enc.Schema, enc.Data, enc.Personal, false)
		if err != nil || !reflect.DeepEqual(got, tc.ev) {
			t.Fatalf("round trip: got %+v, %v; want %+v", got, err, tc.ev)
		}
		got, err = contact.Decode(enc.Type, enc.Schema, enc.Data, nil, true)
		if err != nil || !reflect.DeepEqual(got, tc.shredded) {
			t.Fatalf("shredded: got %+v, %v; want %+v", got, err, tc.shredded)
		}
	}
	enc, err := contact.Encode(contact.Held{HoldID: "hold_2"})
	if err != nil || enc.Personal != nil {
		t.Fatalf("a hold without text: sealed part %s, %v; want none", enc.Personal, err)
	}
}

// TestRestoreRecordsKeepBoth checks that a restore asked to keep both
// contacts says so in its clear payload, and that a trash records the
// operation it was part of in the state until the restore.
func TestRestoreRecordsKeepBoth(t *testing.T) {
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	by := kernel.Actor{Principal: "tok_m", Role: kernel.RoleMember}
	p := contact.DefaultPolicy()
	c, err := contact.Create(contact.NewID(), "ws", contact.Draft{Personal: contact.Personal{Name: "Ada"}}, by, now)
	if err != nil {
		t.Fatal(err)
	}
	c.Within("bulk:req-1")
	if err := c.Trash("", p, by, now); err != nil {
		t.Fatal(err)
	}
	if op := c.Snapshot().TrashedOperation; op != "bulk:req-1" {
		t.Fatalf("trashed operation %q, want bulk:req-1", op)
	}
	if err := c.RestoreKeepingBoth("", p, by, now); err != nil {
		t.Fatal(err)
	}
	if op := c.Snapshot().TrashedOperation; op != "" {
		t.Fatalf("a restored contact still says it was trashed by %q", op)
	}
	ch := c.Changes()
	enc, err := contact.Encode(ch[len(ch)-1].Event)
	if err != nil || string(enc.Data) != `{"to":"active","keep_both":true}` {
		t.Fatalf("restore payload %s, %v", enc.Data, err)
	}
	got, err := contact.Decode(enc.Type, enc.Schema, enc.Data, enc.Personal, false)
	if err != nil || !got.(contact.Restored).KeepBoth {
		t.Fatalf("decoded %+v, %v; want keep_both", got, err)
	}
	if enc, _ := contact.Encode(contact.Restored{To: contact.StateActive}); string(enc.Data) != `{"to":"active"}` {
		t.Fatalf("a plain restore's payload is %s", enc.Data)
	}
}
