package delivery_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/keyring"
	"github.com/contactledger/ledger/adapters/postgres"
	"github.com/contactledger/ledger/adapters/webhookhttp"
	"github.com/contactledger/ledger/delivery"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/hooktest"
	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/contactledger/ledger/ledger"
)

// replica is one ledger process on a shared PostgreSQL database.
type replica struct {
	svc    *ledger.Service
	runner *delivery.Runner
	stop   func()
}

func newReplica(t *testing.T, url, keys string) *replica {
	t.Helper()
	ctx := context.Background()
	store, err := postgres.Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.OpenLocal(keys)
	if err != nil {
		t.Fatal(err)
	}
	sender, err := webhookhttp.New(webhookhttp.Options{Allow: []string{"127.0.0.1/32"}, Guard: hooktest.Guard(t)})
	if err != nil {
		t.Fatal(err)
	}
	svc := ledger.New(ledger.Options{Events: store, Vault: ledger.NewVault(store, kr), Directory: store, Views: store, Identities: store,
		Webhooks: store, Sender: sender})
	r := &replica{svc: svc, runner: delivery.New(delivery.Options{Service: svc, Store: store, Sender: sender, Leases: store,
		Scan: 50 * time.Millisecond, Poll: 50 * time.Millisecond, Batch: 20, InFlight: 4})}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = svc.WatchLog(runCtx) })
	wg.Go(func() { _ = r.runner.Run(runCtx) })
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			sender.Close()
			store.Close()
			kr.Close()
		})
	}
	t.Cleanup(r.stop)
	return r
}

// TestReplicasDeliverOnce runs two replicas on one PostgreSQL database:
// only the one holding a subscription's lease delivers it, so each event
// arrives once; when that replica stops, the other takes the lease and
// goes on from the checkpoint.
func TestReplicasDeliverOnce(t *testing.T) {
	url := pgtest.URL(t)
	keys := filepath.Join(t.TempDir(), "keys")
	a := newReplica(t, url, keys)
	b := newReplica(t, url, keys)
	if _, err := a.svc.CreateWorkspace(context.Background(), "ws"); err != nil {
		t.Fatal(err)
	}
	rc := hooktest.NewReceiver(t)
	u := rc.URL()
	admin := kernel.Actor{Principal: "tok_admin", Role: kernel.RoleAdmin}
	w, secret, err := a.svc.CreateWebhook(context.Background(), "ws", admin, ledger.WebhookInput{URL: &u})
	if err != nil {
		t.Fatal(err)
	}
	rc.Trust(secret)
	create := func(svc *ledger.Service, n int, prefix string) {
		for i := range n {
			if _, err := svc.Create(context.Background(), "ws", ledger.Meta{Actor: admin, CorrelationID: fmt.Sprintf("%s-%d", prefix, i)},
				contact.Draft{Personal: contact.Personal{Name: fmt.Sprintf("%s %d", prefix, i)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	create(a.svc, 40, "First")
	waitFor(t, 20*time.Second, "the first events", func() bool { return len(rc.Delivered()) >= 40 })
	time.Sleep(300 * time.Millisecond) // a second deliverer, if there were one, would have sent them again by now
	if n := len(rc.Delivered()); n != 40 {
		t.Fatalf("40 events were delivered %d times: more than one replica delivers the subscription", n)
	}
	holder, other := a, b
	if b.runner.Delivering(w.ID) {
		holder, other = b, a
	}
	if !holder.runner.Delivering(w.ID) || other.runner.Delivering(w.ID) {
		t.Fatal("exactly one replica should deliver the subscription")
	}
	holder.stop()
	create(other.svc, 40, "Second")
	waitFor(t, 20*time.Second, "the other replica to take over", func() bool {
		seen := map[string]bool{}
		for _, g := range rc.Delivered() {
			seen[g.Event.ContactID] = true
		}
		return len(seen) == 80
	})
	if !other.runner.Delivering(w.ID) {
		t.Fatal("the remaining replica does not deliver the subscription")
	}
}
