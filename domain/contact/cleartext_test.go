package contact_test

import (
	"errors"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
)

// TestClearTextRefusesContactDetails checks the rule for free text kept in
// clear beyond any erasure: email addresses and phone numbers are refused,
// references, dates and ordinary words pass.
func TestClearTextRefusesContactDetails(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"", true},
		{"DSR-2026-0042", true},
		{"ticket 12345678 of 2026-11-25 10:30", true},
		{"request of 2026-11-25T10:30:00", true},
		{"duplicate", true},
		{"gdpr@ request", true},
		{"asked by ada@example.com", false},
		{"ADA.LOVELACE@EXAMPLE.ORG", false},
		{"call +44 20 7946 0018", false},
		{"(555) 123-4567 ext", false},
		{"+1 5551234", false},
		{"phone 020794600", false},
		{"ref 0207946", true},
	} {
		err := contact.ValidateClearText("request", tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: got %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, kernel.ErrInvalid) {
			t.Errorf("%q: got %v, want a validation error", tc.in, err)
		}
	}
}

// TestErasureRequestIsClearText checks that purge and anonymize refuse a
// request reference holding an email or phone (it is kept in clear in the
// tombstone and in receipts), and that the tombstone in the contact's state
// never carries the erasure's reason, which is sealed.
func TestErasureRequestIsClearText(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	by := kernel.Actor{Principal: "tok_a", Role: kernel.RoleAdmin}
	for _, erase := range []string{"purge", "anonymize"} {
		c, err := contact.Create(contact.NewID(), "ws", contact.Draft{Personal: contact.Personal{Name: "Ada"}, Tags: []string{"vip"}}, by, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Trash("", contact.DefaultPolicy(), by, now); err != nil {
			t.Fatal(err)
		}
		do := func(er contact.Erasure) error {
			if erase == "purge" {
				return c.Purge(er, contact.DefaultPolicy(), by, now)
			}
			return c.Anonymize(er, contact.DefaultPolicy(), by, now)
		}
		if err := do(contact.Erasure{Trigger: contact.TriggerRequest, KeyID: "k", Request: "from ada@example.com"}); !errors.Is(err, kernel.ErrInvalid) {
			t.Fatalf("%s with an email in request: got %v, want a validation error", erase, err)
		}
		if err := do(contact.Erasure{Trigger: contact.TriggerRequest, KeyID: "k", Request: "DSR-7", Reason: "Ada asked"}); err != nil {
			t.Fatal(err)
		}
		s := c.Snapshot()
		if s.Tombstone == nil || s.Tombstone.Erasure.Reason != "" || s.Tombstone.Erasure.Request != "DSR-7" {
			t.Fatalf("%s: tombstone %+v, want the request and no reason", erase, s.Tombstone)
		}
		if len(s.Tags) != 0 {
			t.Fatalf("%s: the erased contact still shows tags %v", erase, s.Tags)
		}
	}
}
