package contact_test

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
)

func TestCodec(t *testing.T) {
	ev := contact.Created{Source: "web", Tags: []string{"a"}, Personal: contact.Personal{Name: "Ada", Email: "ada@example.com", ExternalID: "x1"}}
	enc, err := contact.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if enc.Type != "ContactCreated" || enc.Schema != 2 || enc.Personal == nil {
		t.Fatalf("got %+v", enc)
	}
	if string(enc.Data) != `{"source":"web"}` {
		t.Fatalf("clear payload %s holds more than the non-personal fields", enc.Data)
	}
	got, err := contact.Decode(enc.Type, enc.Schema, enc.Data, enc.Personal, false)
	if err != nil {
		t.Fatal(err)
	}
	if c := got.(contact.Created); c.Personal.Email != "ada@example.com" || c.Source != "web" || c.Shredded || !slices.Equal(c.Tags, []string{"a"}) {
		t.Fatalf("round trip: got %+v", c)
	}
	shredded, err := contact.Decode(enc.Type, enc.Schema, enc.Data, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if c := shredded.(contact.Created); !c.Shredded || c.Personal.Name != "" || c.Source != "web" || c.Tags != nil {
		t.Fatalf("shredded: got %+v", c)
	}
	for name, tc := range map[string]struct {
		typ      string
		schema   int
		data     string
		personal []byte
	}{
		"unknown type":     {"ContactTeleported", 1, `{}`, nil},
		"future schema":    {"ContactArchived", 9, `{}`, nil},
		"zero schema":      {"ContactArchived", 0, `{}`, nil},
		"bad payload":      {"ContactArchived", 1, `[`, nil},
		"missing personal": {"ContactCreated", 1, `{}`, nil},
		"bad personal":     {"ContactCreated", 1, `{}`, []byte("{")},
	} {
		if _, err := contact.Decode(tc.typ, tc.schema, []byte(tc.data), tc.personal, false); !errors.Is(err, contact.ErrCorruptEvent) {
			t.Errorf("%s: got %v, want ErrCorruptEvent", name, err)
		}
	}
}

// TestFreeTextIsSealed checks that every event type with free text (tags,
// reasons, list names, link ids) keeps it out of its clear payload in the
// current schema, reads it back from the sealed part, loses it when the part
// is shredded, and that events written in schema 1, with the text in clear,
// still read as they were.
func TestFreeTextIsSealed(t *testing.T) {
	const secret = "ada.lovelace@example.com"
	er := contact.Erasure{Reason: secret, Trigger: contact.TriggerRequest, Request: "DSR-1", KeyID: "dk_1", Erased: []string{"name"}}
	for _, tc := range []struct {
		ev       contact.Event
		shredded contact.Event
		v1       string // the schema 1 payload of ev
	}{
		{contact.Created{Source: "web", Tags: []string{secret}, Personal: contact.Personal{Name: "x"}},
			contact.Created{Source: "web", Shredded: true}, `{"source":"web","tags":["` + secret + `"]}`},
		{contact.Archived{Reason: secret}, contact.Archived{}, `{"reason":"` + secret + `"}`},
		{contact.Unarchived{Reason: secret}, contact.Unarchived{}, `{"reason":"` + secret + `"}`},
		{contact.Trashed{Reason: secret, From: contact.StateActive}, contact.Trashed{From: contact.StateActive}, `{"reason":"` + secret + `","from":"active"}`},
		{contact.Restored{Reason: secret, To: contact.StateArchived}, contact.Restored{To: contact.StateArchived}, `{"reason":"` + secret + `","to":"archived"}`},
		{contact.Purged{er}, contact.Purged{contact.Erasure{Trigger: er.Trigger, Request: er.Request, KeyID: er.KeyID, Erased: er.Erased}},
			`{"reason":"` + secret + `","trigger":"request","request":"DSR-1","key_id":"dk_1","erased":["name"]}`},
		{contact.Anonymized{er}, contact.Anonymized{contact.Erasure{Trigger: er.Trigger, Request: er.Request, KeyID: er.KeyID, Erased: er.Erased}},
			`{"reason":"` + secret + `","trigger":"request","request":"DSR-1","key_id":"dk_1","erased":["name"]}`},
		{contact.TagsChanged{Added: []string{secret}, Removed: []string{"old"}}, contact.TagsChanged{}, `{"added":["` + secret + `"],"removed":["old"]}`},
		{contact.ListMembershipChanged{List: secret, Status: contact.ListBounced}, contact.ListMembershipChanged{Status: contact.ListBounced},
			`{"list":"` + secret + `","status":"bounced"}`},
		{contact.ListMembershipRemoved{List: secret}, contact.ListMembershipRemoved{}, `{"list":"` + secret + `"}`},
		{contact.Linked{contact.Link{Kind: "deal", Ref: secret}}, contact.Linked{contact.Link{Kind: "deal"}}, `{"kind":"deal","id":"` + secret + `"}`},
		{contact.Unlinked{contact.Link{Kind: "deal", Ref: secret}}, contact.Unlinked{contact.Link{Kind: "deal"}}, `{"kind":"deal","id":"` + secret + `"}`},
		{contact.MarkedSpam{Reason: secret}, contact.MarkedSpam{}, `{"reason":"` + secret + `"}`},
		{contact.UnmarkedSpam{Reason: secret}, contact.UnmarkedSpam{}, `{"reason":"` + secret + `"}`},
	} {
		typ := tc.ev.EventType()
		t.Run(typ, func(t *testing.T) {
			enc, err := contact.Encode(tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(enc.Data, []byte(secret)) || enc.Personal == nil || !bytes.Contains(enc.Personal, []byte(secret)) {
				t.Fatalf("schema %d: clear %s, sealed part %s; want the free text in the sealed part only", enc.Schema, enc.Data, enc.Personal)
			}
			if !contact.HasPersonal(typ) {
				t.Fatalf("HasPersonal(%s) is false", typ)
			}
			got, err := contact.Decode(typ, enc.Schema, enc.Data, enc.Personal, false)
			if err != nil || !reflect.DeepEqual(got, tc.ev) {
				t.Fatalf("round trip: got %+v, %v; want %+v", got, err, tc.ev)
			}
			got, err = contact.Decode(typ, enc.Schema, enc.Data, nil, true)
			if err != nil || !reflect.DeepEqual(got, tc.shredded) {
				t.Fatalf("shredded: got %+v, %v; want %+v", got, err, tc.shredded)
			}
			// Schema 1 kept the text in clear: it reads as it was, shredded or not.
			for _, shredded := range []bool{false, true} {
				var personal []byte
				if typ == contact.TypeCreated && !shredded {
					personal = []byte(`{"name":"x"}`)
				}
				got, err = contact.Decode(typ, 1, []byte(tc.v1), personal, shredded)
				want := tc.ev
				if c, ok := want.(contact.Created); ok && shredded {
					c.Personal, c.Shredded = contact.Personal{}, true
					want = c
				}
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Fatalf("schema 1 (shredded %v): got %+v, %v; want %+v", shredded, got, err, want)
				}
			}
		})
	}
	// An event with no free text has no sealed part at all.
	for _, ev := range []contact.Event{contact.Archived{}, contact.Trashed{From: contact.StateActive}, contact.MarkedSpam{}} {
		enc, err := contact.Encode(ev)
		if err != nil || enc.Personal != nil {
			t.Fatalf("%s without a reason: sealed part %s, %v; want none", ev.EventType(), enc.Personal, err)
		}
		if _, err := contact.Decode(enc.Type, enc.Schema, enc.Data, nil, false); err != nil {
			t.Fatalf("%s without a sealed part: %v", ev.EventType(), err)
		}
	}
}

func TestPositions(t *testing.T) {
	for _, s := range []string{"", "0", "42", "7-9"} {
		p, err := kernel.ParsePosition(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if s != "" && p.String() != s {
			t.Fatalf("%q: round trip gives %q", s, p.String())
		}
	}
	for _, s := range []string{"x", "-1", "1-", "1-2-3", "18446744073709551616"} {
		if _, err := kernel.ParsePosition(s); err == nil {
			t.Errorf("%q: got no error", s)
		}
	}
	a, b := kernel.Position{Commit: 1, Prepare: 9}, kernel.Position{Commit: 2, Prepare: 1}
	if !a.Less(b) || b.Less(a) || a.Less(a) {
		t.Fatal("positions order by commit, then prepare")
	}
}
