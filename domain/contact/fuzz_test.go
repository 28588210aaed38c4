package contact_test

import (
	"errors"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
)

// FuzzDecodeEvent feeds the event decoder any stored parts: it must return
// an event or an error, never panic, and a decoded event must apply to a
// contact or be refused with an error.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []struct {
		typ            string
		schema         int
		data, personal string
		shredded       bool
	}{
		{"ContactCreated", 1, `{"source":"web","tags":["a"]}`, `{"name":"Ada","custom_fields":{"k":"v"}}`, false},
		{"ContactCreated", 1, `{}`, ``, true},
		{"ContactUpdated", 1, `{"fields":["name","custom_fields.k"]}`, `{"name":"B"}`, false},
		{"ContactTrashed", 1, `{"from":"archived"}`, ``, false},
		{"ContactRestored", 1, `{"to":"purged"}`, ``, false},
		{"ContactPurged", 1, `{"trigger":"retention","key_id":"dk","erased":["name"]}`, ``, false},
		{"ContactArchived", 2, `{}`, ``, false},
		{"Nope", 1, `{}`, ``, false},
	} {
		f.Add(s.typ, s.schema, []byte(s.data), []byte(s.personal), s.shredded)
	}
	f.Fuzz(func(t *testing.T, typ string, schema int, data, personal []byte, shredded bool) {
		if len(personal) == 0 {
			personal = nil
		}
		ev, err := contact.Decode(typ, schema, data, personal, shredded)
		if err != nil {
			if !errors.Is(err, contact.ErrCorruptEvent) {
				var e *kernel.Error
				if !errors.As(err, &e) && ev != nil {
					t.Fatalf("got %v with an event", err)
				}
			}
			return
		}
		now := time.Now()
		c, err := contact.Create(contact.NewID(), "ws", contact.Draft{Personal: contact.Personal{Name: "Base"}}, kernel.Actor{}, now)
		if err != nil {
			t.Fatal(err)
		}
		snap := c.Snapshot()
		d := contact.FromSnapshot(snap)
		_ = d.Apply(contact.Envelope{Version: 2, At: now, Event: ev}) // an error is fine; a panic is not
		if _, err := contact.Replay(contact.NewID(), []contact.Envelope{{Version: 1, At: now, Event: ev}}); err == nil {
			if _, ok := ev.(contact.Created); !ok {
				t.Fatalf("a history starting with %s replayed", typ)
			}
		}
	})
}
