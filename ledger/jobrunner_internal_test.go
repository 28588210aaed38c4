package ledger

import (
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
)

// TestRestoreOnceKnowsBothForms checks the restore-job runner's
// exactly-once check: a contact whose stream already holds a restore
// caused by the job counts as restored, whether the restore names the job
// as its operation ("job:<id>") or, written before operation ids, by its
// bare id; a restore by another job or by hand does not.
func TestRestoreOnceKnowsBothForms(t *testing.T) {
	k, err := shred.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	key := ContactKey{Key: k, KeyID: "dk_test"}
	actor := kernel.Actor{Principal: "tok_test", Role: kernel.RoleAdmin}
	p := contact.DefaultPolicy()
	now := time.Now().UTC().Truncate(time.Microsecond)
	const job = "01JOBJOBJOBJOBJOBJOBJOBJOB"
	for _, tc := range []struct {
		name      string
		causation string
		restores  bool
	}{
		{"restored by the job, as an operation", OperationJob + job, false},
		{"restored by the job, before operation ids", job, false},
		{"restored by another job", OperationJob + "01OTHEROTHEROTHEROTHEROTHE", true},
		{"restored by a request", "req-1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := contact.NewID()
			c, err := contact.Create(id, "ws", contact.Draft{Personal: contact.Personal{Name: "Once"}}, actor, now)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Trash("", p, actor, now); err != nil {
				t.Fatal(err)
			}
			recs, err := SealChanges(key, id.Stream(), "ws", Meta{Actor: actor, CorrelationID: "req-0"}, 0, nil, c.Changes())
			if err != nil {
				t.Fatal(err)
			}
			// An earlier restore, trashed again since: the stream holds a
			// ContactRestored with the case's causation id.
			c, err = contact.Replay(id, mustOpen(t, key, recs))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Restore("", p, actor, now); err != nil {
				t.Fatal(err)
			}
			if err := c.Trash("", p, actor, now); err != nil {
				t.Fatal(err)
			}
			more, err := SealChanges(key, id.Stream(), "ws", Meta{Actor: actor, CorrelationID: "req-1", Operation: tc.causation}, c.Saved(), recs[len(recs)-1].Hash, c.Changes())
			if err != nil {
				t.Fatal(err)
			}
			if more[0].Type != contact.TypeRestored || more[0].CausationID != tc.causation {
				t.Fatalf("the earlier restore has causation %q, want %q", more[0].CausationID, tc.causation)
			}
			recs = append(recs, more...)
			c, err = contact.Replay(id, mustOpen(t, key, recs))
			if err != nil {
				t.Fatal(err)
			}
			if err := restoreOnce(job, actor, "", false)(loaded{c: c, recs: recs, key: key}, p, now); err != nil {
				t.Fatal(err)
			}
			if got := len(c.Changes()) > 0; got != tc.restores {
				t.Fatalf("restored again: got %v, want %v", got, tc.restores)
			}
		})
	}
}

func mustOpen(t *testing.T, key ContactKey, recs []kernel.Record) []contact.Envelope {
	t.Helper()
	envs, err := open(key, recs)
	if err != nil {
		t.Fatal(err)
	}
	return envs
}
