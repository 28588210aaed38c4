package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/delivery"
	"github.com/contactledger/ledger/domain/feed"
	"github.com/contactledger/ledger/internal/hooktest"
	"github.com/contactledger/ledger/internal/pgtest"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// feedEvent is an event of GET /v1/events.
type feedEvent struct {
	ID   string     `json:"id"`
	Type string     `json:"type"`
	Data feed.Event `json:"data"`
}

// feedAll reads the whole change feed of the token's workspace.
func feedAll(t *testing.T, base, token, query string) []feedEvent {
	t.Helper()
	var out []feedEvent
	after := ""
	for {
		r := send(t, base, token, "GET", "/v1/events?limit=1000&after="+after+query, nil)
		want(t, r, 200, "")
		var page struct {
			Events    []feedEvent `json:"events"`
			NextAfter string      `json:"next_after"`
			HasMore   bool        `json:"has_more"`
		}
		if err := json.Unmarshal(r.Raw, &page); err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Events...)
		after = page.NextAfter
		if !page.HasMore {
			return out
		}
	}
}

// waitAllDelivered waits until every event of the feed has been delivered
// (2xx) at least once, and returns the feed.
func waitAllDelivered(t *testing.T, rc *hooktest.Receiver, base, token string, timeout time.Duration) []feedEvent {
	t.Helper()
	var events []feedEvent
	waitFor(t, timeout, "every event of the feed to be delivered", func() bool {
		events = feedAll(t, base, token, "")
		got := map[string]bool{}
		for _, d := range rc.Delivered() {
			got[d.CE.ID()] = true
		}
		for _, e := range events {
			if !got[e.ID] {
				return false
			}
		}
		return true
	})
	return events
}

// webhookLedger starts a ledger whose webhooks may reach 127.0.0.1, with
// retries in milliseconds rather than minutes.
func webhookLedger(t *testing.T, store string) *ledgerUnderTest {
	return start(t, store, func(m *main.Main) {
		m.Config.WebhookAllow = []string{"127.0.0.1/32"}
		// The second retry comes late, so that a test can change the
		// contact between two attempts with none in flight.
		m.Webhook = delivery.Options{Schedule: []time.Duration{50 * time.Millisecond, 2 * time.Second, 200 * time.Millisecond,
			200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}, Scan: 50 * time.Millisecond, Poll: 50 * time.Millisecond}
	})
}

// TestWebhooks walks the outbound side on each store: every kind of change
// is delivered, signed and in each contact's order, with its origin; a
// restore arrives as contact.restored; a receiver that fails for a while
// gets everything once it recovers; a retry after a purge carries nothing
// personal and the erasure receipt lists the acknowledgment; a rotated
// secret signs beside the new one during its overlap.
func TestWebhooks(t *testing.T) { eachStore(t, testWebhooks) }

func testWebhooks(t *testing.T, store string) {
	l := webhookLedger(t, store)
	rc := hooktest.NewReceiver(t)
	r := l.as("POST", "/v1/webhooks", map[string]any{"url": rc.URL(), "description": "crm sync", "include_personal": true})
	want(t, r, 201, "")
	hook, secret := r.str("id"), r.str("secret")
	rc.Trust(secret)
	if got := l.as("GET", "/v1/webhooks/"+hook, nil); strings.Contains(string(got.Raw), secret) || got.str("status", "position") == "" {
		t.Fatalf("GET shows the secret or no status: %s", got.Raw)
	}
	if got := l.as("GET", "/v1/webhooks", nil); strings.Contains(string(got.Raw), secret) || len(got.items()) != 1 {
		t.Fatalf("the list: %s", got.Raw)
	}

	// Every kind of change.
	a := l.create(map[string]any{"name": "Ada Hook", "email": "ada.hook@example.com", "tags": []string{"vip"}})
	for _, step := range []struct{ method, path string }{
		{"POST", "/tags"}, {"POST", "/notes"}, {"PUT", "/lists/newsletter"}, {"POST", "/links"}, {"POST", "/spam"}, {"POST", "/unspam"},
		{"POST", "/archive"}, {"POST", "/unarchive"}, {"POST", "/trash"}, {"POST", "/restore"},
	} {
		body := map[string]any{}
		switch step.path {
		case "/tags":
			body["add"] = []string{"gold"}
		case "/notes":
			body["text"] = "call back on Monday"
		case "/lists/newsletter":
			body["status"] = "subscribed"
		case "/links":
			body["kind"], body["id"] = "deal", "D-7"
		}
		want(t, l.as(step.method, "/v1/contacts/"+a+step.path, body), map[bool]int{true: 201, false: 200}[step.path == "/notes"], "")
	}
	want(t, l.as("PATCH", "/v1/contacts/"+a, map[string]any{"job_title": "Engineer"}), 200, "")
	b, c := l.create(map[string]any{"name": "Bulk One"}), l.create(map[string]any{"name": "Bulk Two"})
	for _, action := range []string{"trash", "restore"} {
		want(t, l.as("POST", "/v1/contacts/bulk", map[string]any{"action": action, "ids": []string{b, c}, "expected_count": 2}, "X-Request-Id", "bulk-"+action), 200, "")
	}
	want(t, l.as("POST", "/v1/contacts/import?source=sheet", []map[string]any{{"name": "Imported Hook", "email": "imported.hook@example.com"}}, "X-Request-Id", "import-1"), 200, "")
	d := l.create(map[string]any{"name": "Job Hook", "tags": []string{"jobtag"}})
	want(t, l.as("POST", "/v1/contacts/"+d+"/trash", nil), 200, "")
	job := l.as("POST", "/v1/restore-jobs", map[string]any{"tag": "jobtag"})
	want(t, job, 202, "")
	waitFor(t, 30*time.Second, "the restore job", func() bool { return l.as("GET", "/v1/restore-jobs/"+job.str("id"), nil).str("state") == "succeeded" })

	events := waitAllDelivered(t, rc, l.URL(), l.admin, 30*time.Second)
	got := rc.Delivered()
	hooktest.CheckContactOrder(t, got)
	byID := map[string]hooktest.Delivery{}
	for _, d := range got {
		byID[d.CE.ID()] = d
	}
	origins := map[string]map[string]string{} // contact -> type -> origin
	for _, e := range events {
		dv := byID[e.ID]
		if dv.Event.Type != e.Type || dv.Event.Position != e.Data.Position || dv.CE.Subject() != e.Data.ContactID {
			t.Fatalf("delivered %+v, the feed says %+v", dv.Event, e.Data)
		}
		if e.Type == feed.TypeCreated && e.Data.Version != 1 {
			t.Fatalf("a contact.created at version %d: a restore must never arrive as a creation", e.Data.Version)
		}
		if origins[e.Data.ContactID] == nil {
			origins[e.Data.ContactID] = map[string]string{}
		}
		origins[e.Data.ContactID][e.Type] = e.Data.Operation.Origin + " " + e.Data.Operation.ID
	}
	for _, tc := range []struct{ contact, typ, want string }{
		{a, feed.TypeRestored, "user "}, {b, feed.TypeTrashed, "bulk bulk:bulk-trash"}, {c, feed.TypeRestored, "bulk bulk:bulk-restore"},
		{d, feed.TypeRestored, "restore_job job:" + job.str("id")}, {a, feed.TypeSpamMarked, "user "}, {a, feed.TypeNoteAdded, "user "},
		{a, feed.TypeTagsChanged, "user "}, {a, feed.TypeListMembershipChanged, "user "}, {a, feed.TypeLinked, "user "},
	} {
		if got := origins[tc.contact][tc.typ]; !strings.HasPrefix(got, tc.want) {
			t.Fatalf("%s of %s: origin %q, want %q", tc.typ, tc.contact, got, tc.want)
		}
	}
	imported := false
	for _, e := range events {
		if e.Data.Operation.Origin == feed.OriginImport && e.Data.Operation.ID == "import:import-1" && e.Type == feed.TypeCreated {
			imported = true
		}
	}
	if !imported {
		t.Fatal("the imported contact's creation does not name its import")
	}
	for _, dv := range got {
		if dv.Event.ContactID == a && dv.Event.Type == feed.TypeCreated && (dv.Event.Personal == nil || dv.Event.Personal.Email != "ada.hook@example.com") {
			t.Fatalf("a subscription with personal fields got none: %s", dv.Body)
		}
	}

	// A receiver that fails for a while; a contact purged meanwhile.
	rc.SetFail(func(feed.Event) int { return 503 })
	e := l.create(map[string]any{"name": "Erin Erased", "email": "erin.erased@example.com"})
	f := l.create(map[string]any{"name": "Fay Waiting"})
	waitFor(t, 10*time.Second, "failed attempts", func() bool {
		n := 0
		for _, d := range rc.All() {
			if d.Event.ContactID == e && d.Status == 503 {
				n++
			}
		}
		return n >= 2
	})
	if !slices.ContainsFunc(rc.All(), func(d hooktest.Delivery) bool { return strings.Contains(d.Body, "Erin Erased") }) {
		t.Fatal("the attempts before the purge should carry the name")
	}
	attempts := l.as("GET", "/v1/webhooks/"+hook+"/deliveries?limit=200", nil)
	want(t, attempts, 200, "")
	if !strings.Contains(string(attempts.Raw), `"outcome":"retrying"`) || !strings.Contains(string(attempts.Raw), `"status":503`) || !strings.Contains(string(attempts.Raw), `"error":"HTTP 503"`) {
		t.Fatalf("the attempts log shows no failed attempt: %s", attempts.Raw)
	}
	if st := l.as("GET", "/v1/webhooks/"+hook, nil); st.str("status", "failing_since") == "" || st.str("status", "last_error") != "HTTP 503" {
		t.Fatalf("status while failing: %s", st.Raw)
	}
	want(t, l.as("POST", "/v1/contacts/"+e+"/trash", map[string]any{"reason": "asked to be forgotten"}), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+e+"/purge", nil), 200, "")
	// Every attempt rendered before the purge's answer has arrived: the
	// second failure was waited for, and the next retry comes 2 s after it.
	sent := len(rc.All())
	want(t, l.as("PATCH", "/v1/contacts/"+f, map[string]any{"job_title": "Patient"}), 200, "")
	rc.SetFail(nil)
	waitAllDelivered(t, rc, l.URL(), l.admin, 30*time.Second)
	hooktest.CheckContactOrder(t, rc.Delivered())
	for _, d := range rc.All()[sent:] {
		if strings.Contains(d.Body, "Erin Erased") || strings.Contains(d.Body, "erin.erased@example.com") || strings.Contains(d.Body, "asked to be forgotten") {
			t.Fatalf("a delivery after the purge carries personal data: %s", d.Body)
		}
	}
	waitFor(t, 10*time.Second, "the subscription to be healthy", func() bool {
		return l.as("GET", "/v1/webhooks/"+hook, nil).str("status", "failing_since") == ""
	})

	// The erasure receipt lists the acknowledgment, and still verifies. The
	// receiver has the notice before the runner commits its outcome, so the
	// receipt is read again until the acknowledgment is in.
	var receipt reply
	waitFor(t, 10*time.Second, "the acknowledgment to reach the receipt", func() bool {
		receipt = l.as("GET", "/v1/contacts/"+e+"/erasure-receipt", nil)
		return receipt.Status != 200 || strings.Contains(string(receipt.Raw), `"acknowledged"`)
	})
	want(t, receipt, 200, "")
	prop, _ := receipt.Body["propagation"].(map[string]any)
	subs, _ := prop["subscriptions"].([]any)
	if len(subs) != 1 {
		t.Fatalf("propagation: %s", receipt.Raw)
	}
	if s := subs[0].(map[string]any); s["subscription_id"] != hook || s["status"] != "acknowledged" || s["acknowledged_at"] == nil || prop["signed"] != false {
		t.Fatalf("propagation entry: %v", s)
	}
	file := filepath.Join(t.TempDir(), "receipt.json")
	if err := os.WriteFile(file, receipt.Raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := l.run("receipts", "verify", file)
	if err != nil || !strings.Contains(out, "Signature valid") || !strings.Contains(out, "acknowledged by 1 of 1 webhook subscriptions") {
		t.Fatalf("receipts verify (%v): %s", err, out)
	}

	// A rotated secret keeps signing beside the new one during the overlap.
	rot := l.as("POST", "/v1/webhooks/"+hook+"/rotate-secret", map[string]any{"overlap_seconds": 3600})
	want(t, rot, 200, "")
	newSecret := rot.str("secret")
	if newSecret == secret || len(rot.Body["secrets"].([]any)) != 2 {
		t.Fatalf("rotation: %s", rot.Raw)
	}
	rc.Trust(newSecret)
	// The deliverer sees the rotation at its next batch.
	time.Sleep(200 * time.Millisecond)
	g := l.create(map[string]any{"name": "Gil Rotated"})
	waitAllDelivered(t, rc, l.URL(), l.admin, 30*time.Second)
	for _, d := range rc.Delivered() {
		if d.Event.ContactID != g {
			continue
		}
		body := []byte(d.Body)
		for _, s := range []string{secret, newSecret} {
			wh, _ := standardwebhooks.NewWebhook(s)
			if err := wh.Verify(body, d.Header); err != nil {
				t.Fatalf("during the overlap, a signature under each secret: %v (%s)", err, d.Header.Get("webhook-signature"))
			}
		}
	}

	// Test messages, the command line, metrics.
	test := l.as("POST", "/v1/webhooks/"+hook+"/test", nil)
	if test.Status != 200 || test.str("outcome") != "delivered" || test.str("event_type") != feed.TypeTest {
		t.Fatalf("test message: %s", test.Raw)
	}
	// The command line's sender has its own allowlist.
	allow := []string{"--webhook-allow", "127.0.0.1/32"}
	out, _, err = l.run("webhooks", "list")
	if err != nil || !strings.Contains(out, hook) || !strings.Contains(out, "enabled") {
		t.Fatalf("webhooks list (%v): %s", err, out)
	}
	if out, _, err = l.run(append([]string{"webhooks", "test-send", hook}, allow...)...); err != nil || !strings.Contains(out, "Delivered") {
		t.Fatalf("webhooks test-send (%v): %s", err, out)
	}
	before := len(rc.Delivered())
	last := events[len(events)-2].Data.Position
	if out, _, err = l.run("webhooks", "replay", hook, "--after", last); err != nil || !strings.Contains(out, "Replaying") {
		t.Fatalf("webhooks replay (%v): %s", err, out)
	}
	waitFor(t, 10*time.Second, "the replayed events", func() bool { return len(rc.Delivered()) > before })
	metrics := send(t, l.URL(), "", "GET", "/metrics", nil)
	if !strings.Contains(string(metrics.Raw), `ledger_webhook_deliveries_total{outcome="delivered",subscription="`+hook+`"}`) ||
		!strings.Contains(string(metrics.Raw), `ledger_webhook_lag_events{subscription="`+hook+`"}`) || strings.Contains(string(metrics.Raw), rc.Addr()) {
		t.Fatalf("metrics: no webhook series, or a URL in them")
	}
	want(t, l.as("DELETE", "/v1/webhooks/"+hook, nil), 204, "")
	want(t, l.as("GET", "/v1/webhooks/"+hook, nil), 404, "not-found")
}

// TestWebhookAddressChecks checks, on each store, that without the
// allowlist a loopback address, a name resolving to loopback and the
// metadata address are refused at creation, and that a subscription made
// while allowed gets nothing once the allowlist is gone: the dialler
// refuses the address at delivery.
func TestWebhookAddressChecks(t *testing.T) { eachStore(t, testWebhookAddressChecks) }

func testWebhookAddressChecks(t *testing.T, store string) {
	rc := hooktest.NewReceiver(t)
	port := rc.Addr()[len("127.0.0.1:"):]
	l := start(t, store)
	for _, u := range []string{rc.URL(), "http://localhost:" + port + "/hook", "http://[::1]:" + port + "/", "http://169.254.169.254/latest/meta-data",
		"http://10.0.0.7/hook", "http://[fd00:ec2::254]/"} {
		r := l.as("POST", "/v1/webhooks", map[string]any{"url": u})
		want(t, r, 422, "validation-failed")
		if !strings.Contains(string(r.Raw), `"field":"url"`) {
			t.Fatalf("%s: %s", u, r.Raw)
		}
	}
	if n := len(rc.All()); n != 0 {
		t.Fatalf("checking URLs sent the receiver %d requests", n)
	}
	// Allowed when created; the allowlist gone at delivery.
	l.Config.WebhookAllow = []string{"127.0.0.1/32"}
	l.restart()
	r := l.as("POST", "/v1/webhooks", map[string]any{"url": "http://localhost:" + port + "/hook"})
	want(t, r, 201, "")
	hook := r.str("id")
	rc.Trust(r.str("secret"))
	l.Config.WebhookAllow = nil
	l.restart()
	l.create(map[string]any{"name": "Never Sent"})
	var attempts reply
	waitFor(t, 10*time.Second, "a refused attempt", func() bool {
		attempts = l.as("GET", "/v1/webhooks/"+hook+"/deliveries", nil)
		return len(attempts.items()) > 0
	})
	if a := attempts.items()[0]; a["outcome"] != "retrying" || !strings.Contains(a["error"].(string), "not a public address") || a["status"] != float64(0) {
		t.Fatalf("attempt: %v", a)
	}
	if test := l.as("POST", "/v1/webhooks/"+hook+"/test", nil); test.str("outcome") != "failed" {
		t.Fatalf("test message: %s", test.Raw)
	}
	if n := len(rc.All()); n != 0 {
		t.Fatalf("the receiver got %d requests through a refused address", n)
	}
}

var _ = fmt.Sprint

// sseEvent is one Server-Sent Event.
type sseEvent struct{ id, typ, data string }

// readStream connects to the event stream (resuming after lastID when
// set), reads events until the server ends the connection, stop returns
// true (given how many it read), or drop events were read (drop > 0: the
// client hangs up), and
// reports how many heartbeats it saw.
func readStream(t *testing.T, base, token, lastID string, drop int, stop func(read int) bool) ([]sseEvent, int) {
	t.Helper()
	req, err := http.NewRequest("GET", base+"/v1/events/stream?after=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	var (
		out   []sseEvent
		cur   sseEvent
		beats int
	)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.id != "" {
				out = append(out, cur)
				if (drop > 0 && len(out) == drop) || stop(len(out)) {
					return out, beats
				}
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, ":"):
			beats++
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.typ = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.data = line[6:]
		}
	}
	return out, beats
}

// TestEventStream reads the change feed as Server-Sent Events while
// commands run, through connections the client drops and the server ends
// (its bounded lifetime), resuming each time from Last-Event-ID: the
// events read are exactly the feed's, in order, with no gap and no repeat.
func TestEventStream(t *testing.T) { eachStore(t, testEventStream) }

func testEventStream(t *testing.T, store string) {
	l := start(t, store, func(m *main.Main) {
		m.StreamLifetime, m.StreamHeartbeat = 700*time.Millisecond, 100*time.Millisecond
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 60 {
			r, err := try(http.DefaultClient, l.URL(), l.admin, "POST", "/v1/contacts", map[string]any{"name": fmt.Sprintf("Stream %d", i)})
			if err != nil || r.Status != 201 {
				t.Errorf("create: %v %d", err, r.Status)
				return
			}
			id := r.str("id")
			if i%3 == 0 {
				try(http.DefaultClient, l.URL(), l.admin, "POST", "/v1/contacts/"+id+"/trash", nil)
			}
			time.Sleep(15 * time.Millisecond)
		}
	}()
	writing := func() bool {
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	var got []sseEvent
	beats, last, conns := 0, "", 0
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		conns++
		drop := 0
		if conns%2 == 1 {
			drop = 7 // the client hangs up after a few events
		}
		feedLen := -1
		if !writing() {
			feedLen = len(feedAll(t, l.URL(), l.admin, ""))
			if len(got) == feedLen {
				break
			}
		}
		// Once the writer is done, read until the feed's end (the
		// server ends the connection at its lifetime anyway).
		n := len(got)
		evs, b := readStream(t, l.URL(), l.admin, last, drop, func(read int) bool { return feedLen >= 0 && n+read >= feedLen })
		got, beats = append(got, evs...), beats+b
		if len(evs) > 0 {
			last = evs[len(evs)-1].id
		}
	}
	<-done
	feedEvents := feedAll(t, l.URL(), l.admin, "")
	if len(got) != len(feedEvents) {
		t.Fatalf("read %d events through %d connections, the feed has %d", len(got), conns, len(feedEvents))
	}
	for i, e := range feedEvents {
		var ce event.Event
		if err := json.Unmarshal([]byte(got[i].data), &ce); err != nil {
			t.Fatal(err)
		}
		if ce.ID() != e.ID || got[i].id != e.Data.Position || got[i].typ != e.Type {
			t.Fatalf("event %d: read %s (%s at %s), the feed has %s (%s at %s)", i, ce.ID(), got[i].typ, got[i].id, e.ID, e.Type, e.Data.Position)
		}
	}
	if conns < 4 || beats == 0 {
		t.Fatalf("%d connections and %d heartbeats: the test did not resume enough", conns, beats)
	}
	// A malformed Last-Event-ID is refused.
	r := l.as("GET", "/v1/events/stream", nil, "Last-Event-ID", "not-a-position")
	want(t, r, 422, "validation-failed")
}

// TestWebhookCrash delivers to a slow receiver while clients send
// commands, and kills the server with SIGKILL at random moments, with
// deliveries in flight; after the last restart every event of the log has
// been delivered at least once, each contact's in order.
func TestWebhookCrash(t *testing.T) { eachStore(t, testWebhookCrash) }

func testWebhookCrash(t *testing.T, store string) {
	var (
		kills   = sized(3, 10)
		minLoad = sized(300*time.Millisecond, time.Second)
		maxLoad = sized(900*time.Millisecond, 3*time.Second)
	)
	dir := t.TempDir()
	env := []string{"LEDGER_WEBHOOK_ALLOW=127.0.0.1/32"}
	if store == "postgres" {
		env = append(env, "LEDGER_DATABASE_URL="+pgtest.URL(t))
	}
	rc := hooktest.NewReceiver(t)
	rc.SetDelay(2 * time.Millisecond) // slow enough to have deliveries in flight at each kill
	p := spawn(t, dir, env...)
	admin := p.adminToken()
	r := send(t, p.url, admin, "POST", "/v1/webhooks", map[string]any{"url": rc.URL()})
	want(t, r, 201, "")
	rc.Trust(r.str("secret"))
	w := newWorkload(t, "Hook", admin, p.url)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx, 4); close(done) }()
	inFlight := 0
	for range kills {
		time.Sleep(minLoad + rand.N(maxLoad-minLoad))
		waitFor(t, 10*time.Second, "a delivery in flight", func() bool { return rc.Inflight.Load() > 0 })
		p.kill()
		inFlight++
		p = spawn(t, dir, env...)
		w.base.Store(&p.url)
	}
	time.Sleep(minLoad)
	stop()
	<-done
	events := waitAllDelivered(t, rc, p.url, admin, 90*time.Second)
	got := rc.Delivered()
	hooktest.CheckContactOrder(t, got)
	repeats := len(got) - len(events)
	t.Logf("%s: %d kills with deliveries in flight, %d events, %d deliveries (%d repeats)", store, inFlight, len(events), len(got), repeats)
	if len(events) < 50 {
		t.Fatalf("only %d events: the test proves nothing", len(events))
	}
}

// TestWebhookLag checks, on each store, the lag a subscription's status
// shows: the events after its checkpoint it will receive, its types and
// every erasure notice, and nothing else.
func TestWebhookLag(t *testing.T) { eachStore(t, testWebhookLag) }

func testWebhookLag(t *testing.T, store string) {
	l := webhookLedger(t, store)
	rc := hooktest.NewReceiver(t)
	all := l.as("POST", "/v1/webhooks", map[string]any{"url": rc.URL(), "enabled": false})
	want(t, all, 201, "")
	archives := l.as("POST", "/v1/webhooks", map[string]any{"url": rc.URL(), "enabled": false, "types": []string{"contact.archived"}})
	want(t, archives, 201, "")
	var ids []string
	for i := range 3 {
		ids = append(ids, l.create(map[string]any{"name": fmt.Sprintf("Lag %d", i)}))
	}
	want(t, l.as("POST", "/v1/contacts/"+ids[0]+"/trash", nil), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+ids[0]+"/purge", nil), 200, "")
	for _, tc := range []struct {
		id   string
		want float64
	}{{all.str("id"), 5}, {archives.str("id"), 1}} {
		st := l.as("GET", "/v1/webhooks/"+tc.id, nil)
		status, _ := st.Body["status"].(map[string]any)
		if status["lag_events"] != tc.want || (tc.want > 0 && status["lag_seconds"].(float64) <= 0) {
			t.Fatalf("%s: status %v, want %v events behind", tc.id, status, tc.want)
		}
	}
	if len(rc.All()) != 0 {
		t.Fatal("a disabled subscription was delivered to")
	}
}

// TestWebhookRequests checks the edges of the change feed's and the
// webhooks' requests, each answer checked against the description as all
// traffic is: a description of 200 characters is taken whatever their
// bytes; a replay's since that is not a time is a 422 naming it, as are
// both or neither of after and since; a test message takes no body or {},
// and refuses any field; a body that is not JSON is a 415; the feed
// refuses unknown parameters (400), bad values (422), and personal values
// to a member (403), on the page and on the stream alike.
func TestWebhookRequests(t *testing.T) {
	l := webhookLedger(t, "sqlite")
	rc := hooktest.NewReceiver(t)
	long := strings.Repeat("é", 200) // 400 bytes
	r := l.as("POST", "/v1/webhooks", map[string]any{"url": rc.URL(), "description": long, "types": []string{feed.TypeCreated}})
	want(t, r, 201, "")
	hook := r.str("id")
	rc.Trust(r.str("secret"))
	if r.str("description") != long || r.Header.Get("Location") != "/v1/webhooks/"+hook {
		t.Fatalf("create: %s", r.Raw)
	}
	for _, tc := range []struct {
		name, method, path string
		body               any
		headers            []string
		status             int
		code, field        string
	}{
		{"a description over 200 characters", "PATCH", "/v1/webhooks/" + hook, map[string]any{"description": long + "e"}, nil, 422, "validation-failed", "description"},
		{"an empty url", "PATCH", "/v1/webhooks/" + hook, map[string]any{"url": ""}, nil, 422, "validation-failed", "url"},
		{"an unknown type", "PATCH", "/v1/webhooks/" + hook, map[string]any{"types": []string{"contact.exploded"}}, nil, 422, "validation-failed", "types"},
		{"a malformed webhook id", "GET", "/v1/webhooks/wh_nope", nil, nil, 400, "invalid-id", ""},
		{"an unknown webhook", "GET", "/v1/webhooks/wh_01JAAAAAAAAAAAAAAAAAAAAAAA", nil, nil, 404, "not-found", ""},
		{"a since that is not a time", "POST", "/v1/webhooks/" + hook + "/replay", map[string]any{"since": "yesterday"}, nil, 422, "validation-failed", "since"},
		{"both after and since", "POST", "/v1/webhooks/" + hook + "/replay", map[string]any{"since": "2026-01-01T00:00:00Z", "after": "0"}, nil, 422, "validation-failed", "after"},
		{"neither after nor since", "POST", "/v1/webhooks/" + hook + "/replay", map[string]any{}, nil, 422, "validation-failed", "after"},
		{"an overlap over 7 days", "POST", "/v1/webhooks/" + hook + "/rotate-secret", map[string]any{"overlap_seconds": 604801}, nil, 422, "validation-failed", "overlap_seconds"},
		{"a test message with a field", "POST", "/v1/webhooks/" + hook + "/test", map[string]any{"dry": true}, nil, 400, "unknown-field", ""},
		{"a body that is not JSON", "POST", "/v1/webhooks", "url=x", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported-media-type", ""},
		{"an unknown feed parameter", "GET", "/v1/events?since=2026-01-01T00:00:00Z", nil, nil, 400, "unknown-parameter", ""},
		{"a feed limit out of range", "GET", "/v1/events?limit=0", nil, nil, 422, "validation-failed", "limit"},
		{"a stream type that does not exist", "GET", "/v1/events/stream?types=contact.exploded", nil, nil, 422, "validation-failed", "types"},
		{"a stream position that is not one", "GET", "/v1/events/stream", nil, []string{"Last-Event-ID", "nowhere"}, 422, "validation-failed", "Last-Event-ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := l.as(tc.method, tc.path, tc.body, tc.headers...)
			want(t, r, tc.status, tc.code)
			if tc.field != "" && !strings.Contains(string(r.Raw), `"field":"`+tc.field+`"`) {
				t.Fatalf("the problem does not name %s: %s", tc.field, r.Raw)
			}
		})
	}
	member := l.token("default", "member")
	want(t, l.do(member, "GET", "/v1/events?include_personal=true", nil), 403, "role-not-allowed")
	want(t, l.do(member, "GET", "/v1/events/stream?include_personal=true", nil), 403, "role-not-allowed")
	want(t, l.do(member, "GET", "/v1/events", nil), 200, "")
	for _, body := range []any{nil, map[string]any{}} {
		if r := l.as("POST", "/v1/webhooks/"+hook+"/test", body); r.Status != 200 || r.str("outcome") != "delivered" {
			t.Fatalf("a test message with body %v: %s", body, r.Raw)
		}
	}
	r = l.as("POST", "/v1/webhooks/"+hook+"/replay", map[string]any{"since": "2026-01-01T00:00:00+02:00"})
	want(t, r, 200, "")
	if r.str("status", "position") == "" {
		t.Fatalf("replay: %s", r.Raw)
	}
}
