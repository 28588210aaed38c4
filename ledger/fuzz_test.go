package ledger_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
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
		r := kernel.Record{ID: id, Stream: "contact-X", Version: 1, Type: typ, Schema: schema, Data: data, Sealed: sealed, Time: time.Now()}
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

// FuzzImportRows feeds the CSV and JSON importers any file: they must yield
// rows or a *FileError (a 400 for the API), never panic or loop, and a row
// they yield must turn into a domain draft or a validation error.
func FuzzImportRows(f *testing.F) {
	for _, s := range []string{
		"name,email,tags\nAda,ada@example.com,a;b\n",
		"email\n\"unterminated\n",
		"name,shoe_size\nA,42\n",
		"name,name\nA,B\n",
		"\xef\xbb\xbfname,email\nA,a@example.com\n",
		"name\n" + strings.Repeat("x", 5000) + "\n",
		`[{"name":"Ada","tags":["a"]},{"email":"b@example.com"}]`,
		`[{"name":1}]`, `{"name":"not an array"}`, `[`, `[]`, ``,
	} {
		f.Add([]byte(s), s != "" && s[0] == '[' || s != "" && s[0] == '{')
	}
	f.Fuzz(func(t *testing.T, file []byte, asJSON bool) {
		open := ledger.NewCSVRows
		if asJSON {
			open = ledger.NewJSONRows
		}
		rows, err := open(bytes.NewReader(file))
		if err != nil {
			var fe *ledger.FileError
			if !errors.As(err, &fe) {
				t.Fatalf("open: %T %v", err, err)
			}
			return
		}
		for n := 0; ; n++ {
			if n > len(file)+1 {
				t.Fatalf("%d rows from %d bytes: the reader loops", n, len(file))
			}
			row, err := rows.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var fe *ledger.FileError
				if !errors.As(err, &fe) {
					t.Fatalf("next: %T %v", err, err)
				}
				return
			}
			d := contact.Draft{Personal: contact.Personal{Name: row.Name, Email: row.Email, Phone: row.Phone, JobTitle: row.JobTitle,
				Address: row.Address, ExternalID: row.ExternalID}, Source: "fuzz", Tags: row.Tags}
			if _, err := contact.Create(contact.NewID(), "ws", d, kernel.Actor{}, time.Now()); err != nil {
				var e *kernel.Error
				if !errors.As(err, &e) {
					t.Fatalf("create from a row: %T %v", err, err)
				}
			}
		}
	})
}
