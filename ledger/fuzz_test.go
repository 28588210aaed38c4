package ledger_test

import (
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/contactledger/ledger/ledger"
	"github.com/oklog/ulid/v2"
)

// FuzzOpenRecord feeds the envelope decoder records with any type, payload
// and sealed blob: opening must return an envelope or an error, never panic,
// and a blob sealed for another event must never open.
func FuzzOpenRecord(f *testing.F) {
	key, _ := shred.NewDataKey()
	id := ulid.Make()
	good, _ := shred.Seal(key, "contact-X", id[:], []byte(`{"name":"Ada"}`))
	f.Add("ContactCreated", 1, []byte(`{"tags":["a"]}`), good, false)
	f.Add("ContactCreated", 1, []byte(`{}`), []byte{1, 2, 3}, false)
	f.Add("ContactUpdated", 1, []byte(`{"fields":["name"]}`), good, true)
	f.Add("ContactArchived", 1, []byte(`{"reason":"x"}`), []byte(nil), false)
	f.Fuzz(func(t *testing.T, typ string, schema int, data, sealed []byte, destroyed bool) {
		r := contact.Record{ID: id, Stream: "contact-X", Version: 1, Type: typ, Schema: schema, Data: data, Sealed: sealed, Time: time.Now()}
		k := ledger.ContactKey{Key: key, Destroyed: destroyed}
		env, err := ledger.OpenRecord(k, r)
		if err == nil && env.Event == nil {
			t.Fatal("no error and no event")
		}
		other := r
		other.ID = ulid.Make()
		if len(sealed) > 0 && !destroyed && contact.HasPersonal(typ) {
			if _, err := ledger.OpenRecord(k, other); err == nil {
				t.Fatal("a sealed blob opened for another event")
			}
		}
	})
}
