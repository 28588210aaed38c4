package contact_test

import (
	"errors"
	"testing"

	"github.com/contactledger/ledger/domain/contact"
)

func TestCodec(t *testing.T) {
	ev := contact.Created{Source: "web", Tags: []string{"a"}, Personal: contact.Personal{Name: "Ada", Email: "ada@example.com", ExternalID: "x1"}}
	enc, err := contact.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if enc.Type != "ContactCreated" || enc.Schema != 1 || enc.Personal == nil {
		t.Fatalf("got %+v", enc)
	}
	if string(enc.Data) != `{"source":"web","tags":["a"]}` {
		t.Fatalf("clear payload %s holds more than the non-personal fields", enc.Data)
	}
	got, err := contact.Decode(enc.Type, enc.Schema, enc.Data, enc.Personal, false)
	if err != nil {
		t.Fatal(err)
	}
	if c := got.(contact.Created); c.Personal.Email != "ada@example.com" || c.Source != "web" || c.Shredded {
		t.Fatalf("round trip: got %+v", c)
	}
	shredded, err := contact.Decode(enc.Type, enc.Schema, enc.Data, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if c := shredded.(contact.Created); !c.Shredded || c.Personal.Name != "" || c.Source != "web" {
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

func TestPositions(t *testing.T) {
	for _, s := range []string{"", "0", "42", "7-9"} {
		p, err := contact.ParsePosition(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if s != "" && p.String() != s {
			t.Fatalf("%q: round trip gives %q", s, p.String())
		}
	}
	for _, s := range []string{"x", "-1", "1-", "1-2-3", "18446744073709551616"} {
		if _, err := contact.ParsePosition(s); err == nil {
			t.Errorf("%q: got no error", s)
		}
	}
	a, b := contact.Position{Commit: 1, Prepare: 9}, contact.Position{Commit: 2, Prepare: 1}
	if !a.Less(b) || b.Less(a) || a.Less(a) {
		t.Fatal("positions order by commit, then prepare")
	}
}
