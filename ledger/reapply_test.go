package ledger_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/contactledger/ledger/adapters/keyring"
	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

// erasingLog is the log as a running erasure projection makes it look at
// its quickest: a tombstone's data key is destroyed the moment the
// tombstone is appended, before the appender looks at the key again.
type erasingLog struct {
	kernel.EventStore
	vault *ledger.Vault
}

func (l erasingLog) Append(ctx context.Context, stream string, expected uint64, recs []kernel.Record) (kernel.Position, error) {
	pos, err := l.EventStore.Append(ctx, stream, expected, recs)
	if err != nil {
		return pos, err
	}
	for _, r := range recs {
		if r.Type == contact.TypePurged || r.Type == contact.TypeAnonymized {
			id, _ := contact.IDFromStream(r.Stream)
			if err := l.vault.Destroy(ctx, r.Workspace, id); err != nil {
				return pos, err
			}
		}
	}
	return pos, nil
}

// TestReapplyReportsTheKeyItDestroyed re-applies an erasure receipt on the
// embedded store while the erasure projection destroys the data key as soon
// as the re-written tombstone is in the log: the run still reports that it
// found the key and saw it destroyed, and a second run finds nothing left.
func TestReapplyReportsTheKeyItDestroyed(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	store, err := sqlite.Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	keys, err := keyring.OpenLocal(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	vault := ledger.NewVault(store, keys)
	svc := ledger.New(ledger.Options{Events: erasingLog{store, vault}, Vault: vault, Directory: store, Views: store, Identities: store})
	if _, err := svc.CreateWorkspace(ctx, "ws"); err != nil {
		t.Fatal(err)
	}
	actor := kernel.Actor{Principal: "tok_test", Role: kernel.RoleAdmin}
	res, err := svc.Create(ctx, "ws", ledger.Meta{Actor: actor, CorrelationID: "req-1"}, contact.Draft{Personal: contact.Personal{Name: "Restored Person"}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Contact.ID
	// A receipt of a purge the restored log lost: the contact and its key are back.
	rc := ledger.Receipt{Workspace: "ws", Contact: id.String(), Outcome: contact.StatePurged,
		Erasure: ledger.ReceiptErasure{EventID: "01JERASUREERASUREERASUREER", Trigger: contact.TriggerRequest, Request: "DSR-1"},
		Erased:  ledger.ReceiptErased{Fields: []string{"name"}, KeyID: "dk_1"}}

	got, err := svc.Reapply(ctx, rc, "reapply-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Tombstone != "written" || !got.KeyDestroyed {
		t.Fatalf("first run: got tombstone %q, key destroyed %v; want written, true", got.Tombstone, got.KeyDestroyed)
	}
	if k, err := vault.ContactKey(ctx, "ws", id); err != nil || !k.Destroyed {
		t.Fatalf("the key after reapply: %v, destroyed %v", err, k.Destroyed)
	}
	got, err = svc.Reapply(ctx, rc, "reapply-2")
	if err != nil {
		t.Fatal(err)
	}
	if got.Tombstone != "present" || got.KeyDestroyed {
		t.Fatalf("second run: got tombstone %q, key destroyed %v; want present, false", got.Tombstone, got.KeyDestroyed)
	}
}
