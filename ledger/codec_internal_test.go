package ledger

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
)

// TestOpenLongStream checks that a long history, opened by several
// goroutines, gives the same envelopes in the same order as opening each
// record on its own, and that a record that fails to open fails the whole.
func TestOpenLongStream(t *testing.T) {
	k, err := shred.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	key := ContactKey{Key: k, KeyID: "dk_test"}
	actor := kernel.Actor{Principal: "tok_test", Role: kernel.RoleAdmin}
	now := time.Now().UTC().Truncate(time.Microsecond)
	id := contact.NewID()
	c, err := contact.Create(id, "ws", contact.Draft{Personal: contact.Personal{Name: "Long", Email: "long@example.com"}}, actor, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4_500; i++ {
		title := fmt.Sprint("Title ", i)
		if err := c.Update(contact.Patch{JobTitle: &title}, actor, now); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := SealChanges(key, id.Stream(), "ws", Meta{Actor: actor, CorrelationID: "test"}, 0, nil, c.Changes())
	if err != nil {
		t.Fatal(err)
	}
	got, err := open(key, recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("opened %d envelopes of %d records", len(got), len(recs))
	}
	for i, r := range recs {
		want, err := openOne(key, r)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Fatalf("envelope %d differs from the record opened alone:\n%+v\n%+v", i, got[i], want)
		}
	}
	replayed, err := contact.Replay(id, got)
	if err != nil || replayed.Snapshot().Personal.JobTitle != "Title 4499" {
		t.Fatalf("replay of the opened history: %v", err)
	}

	// A record sealed for another event, deep in the history, fails the open.
	bad := append([]kernel.Record(nil), recs...)
	bad[3_000].Sealed = recs[10].Sealed
	if _, err := open(key, bad); err == nil || !strings.Contains(err.Error(), "v3001") {
		t.Fatalf("a record that does not open: got %v, want an error naming v3001", err)
	}

	// A destroyed key opens every record as shredded.
	shredded, err := open(ContactKey{Destroyed: true}, recs)
	if err != nil || len(shredded) != len(recs) {
		t.Fatalf("destroyed key: %d envelopes, %v", len(shredded), err)
	}
}
