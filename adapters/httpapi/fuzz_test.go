package httpapi_test

import (
	"errors"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/httpapi"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

var actor = kernel.Actor{Principal: "tok_fuzz", Role: kernel.RoleMember}

// appError reports whether err is nil or an application error: anything
// else would become a 500.
func appError(err error) bool {
	var e *kernel.Error
	return err == nil || errors.As(err, &e)
}

// FuzzDecodeCreate feeds the create decoder and the domain's Create any
// bytes: they must answer with a coded error or a contact, never panic.
func FuzzDecodeCreate(f *testing.F) {
	for _, s := range []string{
		`{"name":"Ada","email":"ada@example.com","phone":"+44 20 7946 0018","tags":["a","b"],"custom_fields":{"k":"v"},"source":{"system":"crm","external_id":"1"}}`,
		`{}`, `[]`, `null`, `{"name":5}`, `{"name":"a","name":"b"}`, `{"custom_fields":{"1":"x"}}`, `{"tags":[null]}`,
		`{"email":"a@b"}`, "{\"name\":\"\xff\"}", `{"source":{"system":"Bad System"}}`, `{"name":"` + string(make([]byte, 300)) + `"}`,
		`[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`, `{"name":"a"} trailing`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := httpapi.DecodeCreate(body)
		if !appError(err) {
			t.Fatalf("decode: %T %v", err, err)
		}
		if err != nil {
			return
		}
		c, err := contact.Create(contact.NewID(), "ws", d, actor, time.Now())
		if !appError(err) {
			t.Fatalf("create: %T %v", err, err)
		}
		if err == nil && c.State() != contact.StateActive {
			t.Fatalf("created contact in state %s", c.State())
		}
	})
}

// FuzzDecodePatch does the same for PATCH bodies applied to a contact.
func FuzzDecodePatch(f *testing.F) {
	for _, s := range []string{
		`{"name":null}`, `{"email":"x@example.com","custom_fields":{"a":null,"b":"c"}}`, `{"tags":[]}`, `{"name":1}`,
		`{"custom_fields":[]}`, `{"custom_fields":{"":"x"}}`, `"string"`, `{}`, `{"phone":"+1 (555) 010-9999"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := httpapi.DecodePatch(body)
		if !appError(err) {
			t.Fatalf("decode: %T %v", err, err)
		}
		if err != nil {
			return
		}
		c, err := contact.Create(contact.NewID(), "ws", contact.Draft{Personal: contact.Personal{Name: "Base", Email: "base@example.com"}}, actor, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Update(p, actor, time.Now()); !appError(err) {
			t.Fatalf("update: %T %v", err, err)
		}
	})
}

// FuzzDecodeTransition does the same for the bodies of lifecycle commands.
func FuzzDecodeTransition(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"reason":"dup"}`, `{"request":"T-1"}`, `{"reason":1}`, `{"reason":"a\u0000b"}`,
		`{"dry_run":true}`, `{"on_conflict":"keep_both"}`, `{"on_conflict":"nope"}`, `{"dry_run":"yes"}`} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		tr := ledger.Transitions[int(which)%len(ledger.Transitions)]
		in, _, err := httpapi.DecodeTransition(tr, body)
		if !appError(err) {
			t.Fatalf("decode: %T %v", err, err)
		}
		if err == nil {
			if err := contact.ValidateReason(in.Reason); !appError(err) {
				t.Fatalf("reason: %T %v", err, err)
			}
		}
	})
}

// FuzzDecodeCursor checks that no string crashes the cursor decoder and
// that every cursor it makes decodes back to itself.
func FuzzDecodeCursor(f *testing.F) {
	good := httpapi.EncodeCursor("trash", "fp", ledger.Cursor{SortAt: time.UnixMicro(1_700_000_000_000_000).UTC(), ID: "01ARZ3NDEKTSV4RRFFQ69G5FAV"})
	for _, s := range []string{good, "", "@@@", "eyJ2IjoiYWN0aXZlIn0", "eyJ2IjoidHJhc2giLCJmIjoiZnAiLCJ0IjotMSwiaSI6IngifQ"} {
		f.Add(s, int64(1_700_000_000_000_000), "01ARZ3NDEKTSV4RRFFQ69G5FAV")
	}
	f.Fuzz(func(t *testing.T, s string, micros int64, id string) {
		if _, err := httpapi.DecodeCursor(s, "trash", "fp"); !appError(err) {
			t.Fatalf("decode: %T %v", err, err)
		}
		if micros <= 0 {
			return
		}
		if _, err := contact.ParseID(id); err != nil {
			return
		}
		at := time.UnixMicro(micros).UTC()
		cur, err := httpapi.DecodeCursor(httpapi.EncodeCursor("trash", "fp", ledger.Cursor{SortAt: at, ID: id}), "trash", "fp")
		if err != nil || !cur.SortAt.Equal(at) || cur.ID != id {
			t.Fatalf("round trip of (%s, %s): got %+v, %v", at, id, cur, err)
		}
	})
}
