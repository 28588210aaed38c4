package delivery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/contactledger/ledger/adapters/keyring"
	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/adapters/webhookhttp"
	"github.com/contactledger/ledger/delivery"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/feed"
	"github.com/contactledger/ledger/ledger"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// env is a service on a real embedded store with a delivery runner and a
// receiver on 127.0.0.1.
type env struct {
	t      *testing.T
	svc    *ledger.Service
	store  *sqlite.Store
	runner *delivery.Runner
	recv   *receiver
	admin  contact.Actor
	stop   func()
}

// receiver records what it is sent, after verifying each signature with
// the Standard Webhooks library; fail decides an answer's status.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	secret string
	got    []received
	fail   func(e feed.Event) int // 0: 204
	// onHeader, when set, sees each delivery's webhook-signature.
	onHeader func(sig string)
}

type received struct {
	event feed.Event
	id    string
	body  string
	ok    bool
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	secret, fail, onHeader := rc.secret, rc.fail, rc.onHeader
	rc.mu.Unlock()
	if onHeader != nil {
		onHeader(r.Header.Get("webhook-signature"))
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		rc.t.Errorf("the secret %q is not in the whsec_ form: %v", secret, err)
	}
	if err := wh.Verify(body, r.Header); err != nil {
		rc.t.Errorf("the Standard Webhooks verifier refuses a delivery: %v", err)
		w.WriteHeader(400)
		return
	}
	var ce event.Event
	if err := json.Unmarshal(body, &ce); err != nil {
		rc.t.Errorf("not a CloudEvent: %v", err)
		return
	}
	var e feed.Event
	if err := ce.DataAs(&e); err != nil {
		rc.t.Errorf("its data: %v", err)
		return
	}
	status := 204
	if fail != nil {
		if s := fail(e); s != 0 {
			status = s
		}
	}
	rc.mu.Lock()
	rc.got = append(rc.got, received{event: e, id: r.Header.Get("webhook-id"), body: string(body), ok: status < 300})
	rc.mu.Unlock()
	w.WriteHeader(status)
}

func (rc *receiver) setFail(f func(feed.Event) int) {
	rc.mu.Lock()
	rc.fail = f
	rc.mu.Unlock()
}

// delivered returns the events answered with a 2xx, in arrival order.
func (rc *receiver) delivered() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []received
	for _, g := range rc.got {
		if g.ok {
			out = append(out, g)
		}
	}
	return out
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// guard fails the test on a dial anywhere but 127.0.0.1.
func guard(t *testing.T) func(netip.AddrPort) error {
	return func(ap netip.AddrPort) error {
		if ap.Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("a dial to %s: tests connect to 127.0.0.1 only", ap)
			return fmt.Errorf("refused %s", ap)
		}
		return nil
	}
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
	sender, err := webhookhttp.New(webhookhttp.Options{Allow: []string{"127.0.0.1/32"}, Guard: guard(t), Timeout: 2 * time.Second})
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
	e := &env{t: t, svc: svc, store: store, runner: delivery.New(o), recv: newReceiver(t),
		admin: contact.Actor{Principal: "tok_admin", Role: contact.RoleAdmin}}
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
	u := e.recv.srv.URL + "/hook"
	w, secret, err := e.svc.CreateWebhook(context.Background(), "ws", e.admin, ledger.WebhookInput{URL: &u, Types: &types, IncludePersonal: &personal})
	if err != nil {
		e.t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "whsec_") {
		e.t.Fatalf("secret %q is not in the whsec_ form", secret)
	}
	e.recv.mu.Lock()
	e.recv.secret = secret
	e.recv.mu.Unlock()
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
func checkOrder(t *testing.T, log []feed.Event, got []received) {
	t.Helper()
	seen := map[string]bool{}
	next := map[string]uint64{} // contact -> highest version received so far
	for _, g := range got {
		e := g.event
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
	var ids []contact.ID
	for i := range 30 {
		id := e.create(fmt.Sprintf("Order Person %d", i))
		ids = append(ids, id)
		e.transition(id, ledger.Archive)
		e.transition(id, ledger.Trash)
		e.transition(id, ledger.Restore)
	}
	log := e.eventsOf()
	if len(log) != 120 {
		t.Fatalf("the log has %d events, want 120", len(log))
	}
	waitFor(t, 20*time.Second, "every event", func() bool { return len(e.recv.delivered()) >= len(log) })
	got := e.recv.delivered()
	checkOrder(t, log, got)
	if len(got) != len(log) {
		t.Fatalf("got %d deliveries, want %d (no failure, so no repeat)", len(got), len(log))
	}
	for _, g := range got {
		if g.event.Type == feed.TypeCreated && g.event.Version != 1 {
			t.Fatalf("a restore arrived as contact.created: %+v", g.event)
		}
		if g.event.Version == 4 && g.event.Type != feed.TypeRestored {
			t.Fatalf("the restore arrived as %s", g.event.Type)
		}
		if g.event.PersonalStatus != feed.PersonalWithheld || strings.Contains(g.body, "Order Person") {
			t.Fatalf("a subscription without personal fields got some: %s", g.body)
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
	e := setup(t, delivery.Options{Schedule: []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond,
		100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}})
	w := e.subscribe(true)
	e.recv.setFail(func(feed.Event) int { return 503 })
	var ids []contact.ID
	for i := range 10 {
		ids = append(ids, e.create(fmt.Sprintf("Down Person %d", i)))
	}
	waitFor(t, 10*time.Second, "failed attempts", func() bool { return len(e.recv.all()) >= 20 })
	for _, id := range ids {
		e.transition(id, ledger.Trash)
		e.transition(id, ledger.Restore)
	}
	st, err := e.svc.WebhookStatus(context.Background(), "ws", w.ID)
	if err != nil || st.Progress.FailingSince.IsZero() || st.Progress.LastError != "HTTP 503" {
		t.Fatalf("status while failing: %+v %v", st.Progress, err)
	}
	e.recv.setFail(nil)
	log := e.eventsOf()
	waitFor(t, 20*time.Second, "every event after recovery", func() bool {
		seen := map[string]bool{}
		for _, g := range e.recv.delivered() {
			seen[fmt.Sprintf("%s/%d", g.event.ContactID, g.event.Version)] = true
		}
		return len(seen) == len(log)
	})
	checkOrder(t, log, e.recv.delivered())
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
	e.recv.setFail(func(ev feed.Event) int {
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
		for _, g := range e.recv.delivered() {
			if g.event.ContactID == other.String() {
				n++
			}
		}
		return n == 2
	})
	for _, g := range e.recv.all() {
		if g.event.ContactID == stuck.String() && g.event.Version > 1 {
			t.Fatalf("the stuck contact's version %d was sent while version 1 waits for a retry", g.event.Version)
		}
	}
}

// TestGivesUpAndGoesOn exhausts the schedule for one event: it is recorded
// as failed and the contact's next event goes.
func TestGivesUpAndGoesOn(t *testing.T) {
	e := setup(t, delivery.Options{Schedule: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}})
	w := e.subscribe(false)
	id := e.create("Poison Person")
	e.recv.setFail(func(ev feed.Event) int {
		if ev.Version == 1 {
			return 400
		}
		return 0
	})
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
	e.recv.setFail(func(feed.Event) int { return 502 })
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
	e.recv.setFail(nil)
	more := e.create("Later Person")
	on := true
	if _, err := e.svc.UpdateWebhook(context.Background(), "ws", w.ID, e.admin, ledger.WebhookInput{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	e.runner.Kick()
	waitFor(t, 10*time.Second, "the events after turning it back on", func() bool {
		for _, g := range e.recv.delivered() {
			if g.event.ContactID == more.String() {
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
	e.recv.setFail(func(feed.Event) int {
		failing.Lock()
		defer failing.Unlock()
		if down {
			return 503
		}
		return 0
	})
	id := e.create("Erased Person")
	waitFor(t, 10*time.Second, "the first attempt", func() bool { return len(e.recv.all()) > 0 })
	if first := e.recv.all()[0]; !strings.Contains(first.body, "Erased Person") || first.event.PersonalStatus != feed.PersonalIncluded {
		t.Fatalf("the first attempt, before the purge, should carry the name: %s", first.body)
	}
	e.transition(id, ledger.Trash)
	e.transition(id, ledger.Purge)
	failing.Lock()
	down = false
	failing.Unlock()
	waitFor(t, 10*time.Second, "the retry and the purge notice", func() bool {
		types := map[string]bool{}
		for _, g := range e.recv.delivered() {
			types[g.event.Type] = true
		}
		return types[feed.TypeCreated] && types[feed.TypePurged]
	})
	for _, g := range e.recv.all()[1:] {
		if strings.Contains(g.body, "Erased Person") || strings.Contains(g.body, "erased.person@example.com") || strings.Contains(g.body, "because") {
			t.Fatalf("a delivery after the purge carries personal data: %s", g.body)
		}
		if g.event.Type == feed.TypeTrashed {
			t.Fatalf("a type the subscription did not ask for arrived: %s", g.event.Type)
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
	waitFor(t, 10*time.Second, "two deliveries", func() bool { return len(e.recv.delivered()) == 2 })
	log := e.eventsOf()
	first, _ := contact.ParsePosition(log[0].Position)
	if err := e.svc.ReplayWebhook(context.Background(), "ws", w.ID, first, time.Time{}); err != nil {
		t.Fatal(err)
	}
	e.runner.Kick()
	waitFor(t, 10*time.Second, "the replay from a position", func() bool { return len(e.recv.delivered()) == 3 })
	if got := e.recv.delivered()[2].event.ContactID; got != b.String() {
		t.Fatalf("replayed %s, want %s", got, b)
	}
	if err := e.svc.ReplayWebhook(context.Background(), "ws", w.ID, contact.Position{}, mid); err != nil {
		t.Fatal(err)
	}
	e.runner.Kick()
	waitFor(t, 10*time.Second, "the replay from a time", func() bool { return len(e.recv.delivered()) == 4 })
	if got := e.recv.delivered()[3].event.ContactID; got != b.String() {
		t.Fatalf("replayed %s, want %s (the one after the time)", got, b)
	}
	_ = a
	before, err := e.svc.WebhookStatus(context.Background(), "ws", w.ID)
	if err != nil {
		t.Fatal(err)
	}
	far := contact.Position{Commit: 1 << 40, Prepare: 1 << 40}
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
	e.recv.setFail(func(feed.Event) int { return 0 })
	old := e.recv.secret
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
	e.recv.mu.Lock()
	e.recv.secret = secret
	e.recv.onHeader = count
	e.recv.mu.Unlock()
	e.create("During Overlap")
	waitFor(t, 10*time.Second, "a delivery during the overlap", func() bool { return len(e.recv.delivered()) == 1 })
	time.Sleep(600 * time.Millisecond)
	e.create("After Overlap")
	waitFor(t, 10*time.Second, "a delivery after the overlap", func() bool { return len(e.recv.delivered()) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if len(sigs) != 2 || sigs[0] != 2 || sigs[1] != 1 {
		t.Fatalf("signatures per delivery: %v, want 2 during the overlap and 1 after", sigs)
	}
	if old == secret {
		t.Fatal("the rotation kept the secret")
	}
}
