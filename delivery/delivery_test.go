package delivery_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/keyring"
	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/adapters/webhookhttp"
	"github.com/contactledger/ledger/delivery"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/feed"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/hooktest"
	"github.com/contactledger/ledger/ledger"
)

// env is a service on a real embedded store with a delivery runner and a
// receiver on 127.0.0.1 (internal/hooktest: it verifies every signature
// with the Standard Webhooks library's verifier).
type env struct {
	t      *testing.T
	svc    *ledger.Service
	store  *sqlite.Store
	runner *delivery.Runner
	recv   *hooktest.Receiver
	admin  kernel.Actor
	stop   func()
}

func setup(t *testing.T, o delivery.Options) *env {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keyring.OpenLocal(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	sender, err := webhookhttp.New(webhookhttp.Options{Allow: []string{"127.0.0.1/32"}, Guard: hooktest.Guard(t), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	svc := ledger.New(ledger.Options{Events: store, Vault: ledger.NewVault(store, keys), Directory: store, Views: store, Identities: store,
		Webhooks: store, Sender: sender})
	if _, err := svc.CreateWorkspace(ctx, "ws"); err != nil {
		t.Fatal(err)
	}
	o.Service, o.Store, o.Sender = svc, store, sender
	if o.Scan == 0 {
		o.Scan = 50 * time.Millisecond
	}
	if o.Poll == 0 {
		o.Poll = 50 * time.Millisecond
	}
	e := &env{t: t, svc: svc, store: store, runner: delivery.New(o), recv: hooktest.NewReceiver(t),
		admin: kernel.Actor{Principal: "tok_admin", Role: kernel.RoleAdmin}}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = svc.WatchLog(runCtx) })
	wg.Go(func() { _ = e.runner.Run(runCtx) })
	e.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(func() {
		e.stop()
		sender.Close()
		store.Close()
		keys.Close()
	})
	return e
}

// subscribe creates a subscription to the receiver.
func (e *env) subscribe(personal bool, types ...string) ledger.Webhook {
	e.t.Helper()
	u := e.recv.URL()
	w, secret, err := e.svc.CreateWebhook(context.Background(), "ws", e.admin, ledger.WebhookInput{URL: &u, Types: &types, IncludePersonal: &personal})
	if err != nil {
		e.t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "whsec_") {
		e.t.Fatalf("secret %q is not in the whsec_ form", secret)
	}
	e.recv.Trust(secret)
	e.runner.Kick()
	return w
}

var seq int

func (e *env) meta() ledger.Meta {
	seq++
	return ledger.Meta{Actor: e.admin, CorrelationID: fmt.Sprintf("req-%d", seq)}
}

func (e *env) create(name string) contact.ID {
	e.t.Helper()
	res, err := e.svc.Create(context.Background(), "ws", e.meta(), contact.Draft{Personal: contact.Personal{Name: name, Email: strings.ToLower(strings.ReplaceAll(name, " ", ".")) + "@example.com"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Contact.ID
}

func (e *env) transition(id contact.ID, t ledger.Transition) {
	e.t.Helper()
	if _, err := e.svc.Transition(context.Background(), "ws", id, e.meta(), t, ledger.TransitionInput{Reason: "because"}); err != nil {
		e.t.Fatal(err)
	}
}

// eventsOf returns the workspace's events in the log, in their public form.
func (e *env) eventsOf() []feed.Event {
	e.t.Helper()
	page, err := e.svc.Feed(context.Background(), ledger.FeedQuery{Workspace: "ws", Limit: ledger.MaxFeedPage})
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]feed.Event, len(page.Events))
	for i, r := range page.Events {
		out[i] = r.Event
	}
	return out
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkOrder checks that every event of the log arrived, and that each
// contact's events first arrived in version order.
func checkOrder(t *testing.T, log []feed.Event, got []hooktest.Delivery) {
	t.Helper()
	seen := map[string]bool{}
	next := map[string]uint64{} // contact -> highest version received so far
	for _, g := range got {
		e := g.Event
		key := fmt.Sprintf("%s/%d", e.ContactID, e.Version)
		if seen[key] {
			continue
		}
		seen[key] = true
		if e.Version != next[e.ContactID]+1 {
			t.Fatalf("%s: version %d arrived after version %d", e.ContactID, e.Version, next[e.ContactID])
		}
		next[e.ContactID] = e.Version
	}
	for _, e := range log {
		if !seen[fmt.Sprintf("%s/%d", e.ContactID, e.Version)] {
			t.Fatalf("%s version %d (%s) never arrived", e.ContactID, e.Version, e.Type)
		}
	}
}

// TestDeliversEveryEventInOrder delivers a mix of commands on many
// contacts and checks every event arrived once, signed, in each contact's order.
func TestDeliversEveryEventInOrder(t *testing.T) {
	e := setup(t, delivery.Options{Batch: 50, InFlight: 8})
	w := e.subscribe(false)
	for i := range 30 {
		id := e.create(fmt.Sprintf("Order Person %d", i))
		e.transition(id, ledger.Archive)
		e.transition(id, ledger.Trash)
		e.transition(id, ledger.Restore)
	}
	log := e.eventsOf()
	if len(log) != 120 {
		t.Fatalf("the log has %d events, want 120", len(log))
	}
	waitFor(t, 20*time.Second, "every event", func() bool { return len(e.recv.Delivered()) >= len(log) })
	got := e.recv.Delivered()
	checkOrder(t, log, got)
	if len(got) != len(log) {
		t.Fatalf("got %d deliveries, want %d (no failure, so no repeat)", len(got), len(log))
	}
	for _, g := range got {
		if g.Event.Type == feed.TypeCreated && g.Event.Version != 1 {
			t.Fatalf("a restore arrived as contact.created: %+v", g.Event)
		}
		if g.Event.Version == 4 && g.Event.Type != feed.TypeRestored {
			t.Fatalf("the restore arrived as %s", g.Event.Type)
		}
		if g.Event.PersonalStatus != feed.PersonalWithheld || strings.Contains(g.Body, "Order Person") {
			t.Fatalf("a subscription without personal fields got some: %s", g.Body)
		}
	}
	st, err := e.svc.WebhookStatus(context.Background(), "ws", w.ID)
	if err != nil || st.LagEvents != 0 || st.Progress.Pending != 0 || st.Progress.LastSuccessAt.IsZero() {
		t.Fatalf("status: %+v %v, want caught up", st, err)
	}
}

// TestFailingReceiverGetsEverythingAfterRecovering lets the receiver fail
// for a while, then recover, and checks that every event arrives, each
// contact's in order.
func TestFailingReceiverGetsEverythingAfterRecovering(t *testing.T) {
	// The retries must outlast the outage, or the first events are given
	// up before the receiver recovers: the outage lasts as long as the
	// test takes to make its changes, seconds on a loaded machine under
	// -race, so they go on for 10 s.
	schedule := []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}
	for range 100 {
		schedule = append(schedule, 100*time.Millisecond)
	}
	e := setup(t, delivery.Options{Schedule: schedule})
	w := e.subscribe(true)
	e.recv.SetFail(func(feed.Event) int { return 503 })
	var ids []contact.ID
	for i := range 10 {
		ids = append(ids, e.create(fmt.Sprintf("Down Person %d", i)))
	}
	waitFor(t, 10*time.Second, "failed attempts", func() bool { return len(e.recv.All()) >= 20 })
	for _, id := range ids {
		e.transition(id, ledger.Trash)
		e.transition(id, ledger.Restore)
	}
	st, err := e.svc.WebhookStatus(context.Background(), "ws", w.ID)
	if err != nil || st.Progress.FailingSince.IsZero() || st.Progress.LastError != "HTTP 503" {
		t.Fatalf("status while failing: %+v %v", st.Progress, err)
	}
	e.recv.SetFail(nil)
	log := e.eventsOf()
	waitFor(t, 20*time.Second, "every event after recovery", func() bool {
		seen := map[string]bool{}
		for _, g := range e.recv.Delivered() {
			seen[fmt.Sprintf("%s/%d", g.Event.ContactID, g.Event.Version)] = true
		}
		return len(seen) == len(log)
	})
	checkOrder(t, log, e.recv.Delivered())
	attempts, err := e.svc.WebhookDeliveries(context.Background(), "ws", w.ID, ledger.AttemptQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var retrying int
	for _, a := range attempts {
		if a.Outcome == ledger.AttemptRetrying {
			retrying++
			if a.Status != 503 || a.Error != "HTTP 503" || a.Latency <= 0 {
				t.Fatalf("a failed attempt: %+v", a)
			}
		}
	}
	if retrying == 0 {
		t.Fatal("the attempts log shows no failed attempt")
	}
	waitFor(t, 5*time.Second, "health", func() bool {
		st, _ := e.svc.WebhookStatus(context.Background(), "ws", w.ID)
		return st.Progress.FailingSince.IsZero() && st.Progress.Pending == 0
	})
}

// TestOneContactDoesNotHoldUpOthers refuses one contact's events: the
// others' events go on, and its own later events wait behind the refused one.
func TestOneContactDoesNotHoldUpOthers(t *testing.T) {
	e := setup(t, delivery.Options{Schedule: []time.Duration{time.Hour}})
	e.subscribe(false)
	stuck := e.create("Stuck Person")
	e.recv.SetFail(func(ev feed.Event) int {
		if ev.ContactID == stuck.String() {
			return 500
		}
		return 0
	})
	e.transition(stuck, ledger.Archive)
	other := e.create("Free Person")
	e.transition(other, ledger.Archive)
	waitFor(t, 10*time.Second, "the other contact's events", func() bool {
		n := 0
		for _, g := range e.recv.Delivered() {
			if g.Event.ContactID == other.String() {
				n++
			}
		}
		return n == 2
	})
	for _, g := range e.recv.All() {
		if g.Event.ContactID == stuck.String() && g.Event.Version > 1 {
			t.Fatalf("the stuck contact's version %d was sent while version 1 waits for a retry", g.Event.Version)
		}
	}
}

// TestGivesUpAndGoesOn exhausts the schedule for one event: it is recorded
// as failed and the contact's next event goes.
func TestGivesUpAndGoesOn(t *testing.T) {
	e := setup(t, delivery.Options{Schedule: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}})
	w := e.subscribe(false)
	// The receiver refuses before the create: set after it, a loaded
	// machine could deliver version 1 first.
	e.recv.SetFail(func(ev feed.Event) int {
		if ev.Version == 1 {
			return 400
		}
		return 0
	})
	id := e.create("Poison Person")
	e.transition(id, ledger.Archive)
	var attempts []ledger.DeliveryAttempt
	waitFor(t, 10*time.Second, "version 2 delivered after version 1 was given up", func() bool {
		var err error
		if attempts, err = e.svc.WebhookDeliveries(context.Background(), "ws", w.ID, ledger.AttemptQuery{Limit: 100}); err != nil {
			t.Fatal(err)
		}
		for _, a := range attempts {
			if a.EventType == feed.TypeArchived && a.Outcome == ledger.AttemptDelivered {
				return true
			}
		}
		return false
	})
	var outcomes []string
	for _, a := range attempts {
		if a.EventType == feed.TypeCreated {
			outcomes = append(outcomes, fmt.Sprintf("%d:%s", a.Attempt, a.Outcome))
		}
	}
	if strings.Join(outcomes, " ") != "3:failed 2:retrying 1:retrying" {
		t.Fatalf("version 1's attempts, newest first: %v; want two retried, the third given up", outcomes)
	}
}

// TestDisabledAfterFailingForDays disables a subscription whose every
// attempt fails for longer than DisableAfter, with the reason shown;
// turning it back on resumes where it stopped.
func TestDisabledAfterFailingForDays(t *testing.T) {
	e := setup(t, delivery.Options{Schedule: slices.Repeat([]time.Duration{50 * time.Millisecond}, 40), DisableAfter: 300 * time.Millisecond})
	w := e.subscribe(false)
	e.recv.SetFail(func(feed.Event) int { return 502 })
	for i := range 3 {
		e.create(fmt.Sprintf("Gone Person %d", i))
	}
	var got ledger.WebhookStatus
	waitFor(t, 10*time.Second, "the subscription to be disabled", func() bool {
		var err error
		got, err = e.svc.WebhookStatus(context.Background(), "ws", w.ID)
		return err == nil && !got.Enabled
	})
	if !strings.Contains(got.DisabledReason, "every delivery failed since") || !strings.Contains(got.DisabledReason, "HTTP 502") || got.DisabledAt.IsZero() {
		t.Fatalf("disabled with reason %q", got.DisabledReason)
	}
	e.recv.SetFail(nil)
	more := e.create("Later Person")
	on := true
	if _, err := e.svc.UpdateWebhook(context.Background(), "ws", w.ID, e.admin, ledger.WebhookInput{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	e.runner.Kick()
	waitFor(t, 10*time.Second, "the events after turning it back on", func() bool {
		for _, g := range e.recv.Delivered() {
			if g.Event.ContactID == more.String() {
				return true
			}
		}
		return false
	})
}

// TestRetryAfterPurgeCarriesNothingPersonal fails a create's delivery,
// purges the contact, then lets the retry through: it carries no personal
// data, and the purge notice follows and is acknowledged in the receipt.
func TestRetryAfterPurgeCarriesNothingPersonal(t *testing.T) {
	e := setup(t, delivery.Options{Schedule: []time.Duration{300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}})
	w := e.subscribe(true, feed.TypeCreated)
	var failing sync.Mutex
	failing.Lock()
	down := true
	failing.Unlock()
	e.recv.SetFail(func(feed.Event) int {
		failing.Lock()
		defer failing.Unlock()
		if down {
			return 503
		}
		return 0
	})
	id := e.create("Erased Person")
	waitFor(t, 10*time.Second, "the first attempt", func() bool { return len(e.recv.All()) > 0 })
	if first := e.recv.All()[0]; !strings.Contains(first.Body, "Erased Person") || first.Event.PersonalStatus != feed.PersonalIncluded {
		t.Fatalf("the first attempt, before the purge, should carry the name: %s", first.Body)
	}
	e.transition(id, ledger.Trash)
	e.transition(id, ledger.Purge)
	failing.Lock()
	down = false
	failing.Unlock()
	waitFor(t, 10*time.Second, "the retry and the purge notice", func() bool {
		types := map[string]bool{}
		for _, g := range e.recv.Delivered() {
			types[g.Event.Type] = true
		}
		return types[feed.TypeCreated] && types[feed.TypePurged]
	})
	for _, g := range e.recv.All()[1:] {
		if strings.Contains(g.Body, "Erased Person") || strings.Contains(g.Body, "erased.person@example.com") || strings.Contains(g.Body, "because") {
			t.Fatalf("a delivery after the purge carries personal data: %s", g.Body)
		}
		if g.Event.Type == feed.TypeTrashed {
			t.Fatalf("a type the subscription did not ask for arrived: %s", g.Event.Type)
		}
	}
	doc, err := e.svc.ErasureReceipt(context.Background(), "ws", id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.VerifyReceipt(doc, nil); err != nil {
		t.Fatalf("the receipt with its propagation section does not verify: %v", err)
	}
	prop, err := ledger.ReceiptPropagationOf(doc)
	if err != nil || prop == nil || len(prop.Subscriptions) != 1 {
		t.Fatalf("propagation: %+v %v", prop, err)
	}
	if p := prop.Subscriptions[0]; p.Subscription != w.ID || p.Status != ledger.NoticeAcknowledged || p.AcknowledgedAt == nil || p.NotifiedAt == nil {
		t.Fatalf("propagation entry: %+v", p)
	}
}

// TestReplay delivers again from a position and from a time.
func TestReplay(t *testing.T) {
	e := setup(t, delivery.Options{})
	w := e.subscribe(false)
	a := e.create("Replay One")
	mid := time.Now()
	time.Sleep(5 * time.Millisecond)
	b := e.create("Replay Two")
	waitFor(t, 10*time.Second, "two deliveries", func() bool { return len(e.recv.Delivered()) == 2 })
	log := e.eventsOf()
	first, _ := kernel.ParsePosition(log[0].Position)
	if err := e.svc.ReplayWebhook(context.Background(), "ws", w.ID, first, time.Time{}); err != nil {
		t.Fatal(err)
	}
	e.runner.Kick()
	waitFor(t, 10*time.Second, "the replay from a position", func() bool { return len(e.recv.Delivered()) == 3 })
	if got := e.recv.Delivered()[2].Event.ContactID; got != b.String() {
		t.Fatalf("replayed %s, want %s", got, b)
	}
	if err := e.svc.ReplayWebhook(context.Background(), "ws", w.ID, kernel.Position{}, mid); err != nil {
		t.Fatal(err)
	}
	e.runner.Kick()
	waitFor(t, 10*time.Second, "the replay from a time", func() bool { return len(e.recv.Delivered()) == 4 })
	if got := e.recv.Delivered()[3].Event.ContactID; got != b.String() {
		t.Fatalf("replayed %s, want %s (the one after the time)", got, b)
	}
	_ = a
	// Once the checkpoint is committed at the log's end (the commit of a
	// batch runs while the next is sent), a replay after a position ahead
	// must leave it there.
	end := log[len(log)-1].Position
	var before ledger.WebhookStatus
	waitFor(t, 10*time.Second, "the checkpoint at the end of the log", func() bool {
		var err error
		before, err = e.svc.WebhookStatus(context.Background(), "ws", w.ID)
		return err == nil && before.Progress.Position.String() == end
	})
	far := kernel.Position{Commit: 1 << 40, Prepare: 1 << 40}
	if err := e.svc.ReplayWebhook(context.Background(), "ws", w.ID, far, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if after, _ := e.svc.WebhookStatus(context.Background(), "ws", w.ID); after.Progress.Position != before.Progress.Position {
		t.Fatalf("a replay after a position ahead moved the checkpoint from %s to %s: it would skip events", before.Progress.Position, after.Progress.Position)
	}
}

// TestRotationOverlap rotates a subscription's secret with an overlap: while
// it lasts each delivery carries a signature under each secret, and once it
// ends only the new secret signs, without restarting anything.
func TestRotationOverlap(t *testing.T) {
	e := setup(t, delivery.Options{})
	w := e.subscribe(false)
	var mu sync.Mutex
	var sigs []int
	e.recv.SetFail(func(feed.Event) int { return 0 })
	w, secret, err := e.svc.RotateWebhookSecret(context.Background(), "ws", w.ID, 600*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// The rotation changed the subscription: the runner restarts its
	// deliverer with the new secrets at its next look (kicked here).
	e.runner.Kick()
	time.Sleep(150 * time.Millisecond)
	if len(w.Secrets) != 2 || w.Secrets[1].ExpiresAt.IsZero() {
		t.Fatalf("secrets after rotation: %+v", w.Secrets)
	}
	count := func(sig string) {
		mu.Lock()
		sigs = append(sigs, len(strings.Fields(sig)))
		mu.Unlock()
	}
	e.recv.Trust(secret)
	e.recv.OnSignature(count)
	e.create("During Overlap")
	waitFor(t, 10*time.Second, "a delivery during the overlap", func() bool { return len(e.recv.Delivered()) == 1 })
	time.Sleep(600 * time.Millisecond)
	e.create("After Overlap")
	waitFor(t, 10*time.Second, "a delivery after the overlap", func() bool { return len(e.recv.Delivered()) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if len(sigs) != 2 || sigs[0] != 2 || sigs[1] != 1 {
		t.Fatalf("signatures per delivery: %v, want 2 during the overlap and 1 after", sigs)
	}
}
