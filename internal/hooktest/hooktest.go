// Package hooktest helps tests of the outbound side: a webhook receiver
// on 127.0.0.1 that checks what it is sent as a client system would, and
// the guards that keep tests from connecting anywhere else.
package hooktest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/contactledger/ledger/domain/feed"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Receiver is a webhook receiver on 127.0.0.1: it verifies each delivery's
// signature with the Standard Webhooks library's own verifier, reads the
// CloudEvent with the CloudEvents SDK, and answers what its fail function
// says (204 by default).
type Receiver struct {
	t   testing.TB
	srv *httptest.Server

	mu        sync.Mutex
	secrets   []string // whsec_ secrets, any of which must verify
	got       []Delivery
	fail      func(feed.Event) int
	delay     time.Duration
	signature func(string)
	// Inflight counts the requests being answered now.
	Inflight atomic.Int64
}

// Delivery is one request the receiver got.
type Delivery struct {
	CE     event.Event
	Event  feed.Event
	Body   string
	Header http.Header
	Status int
}

// OK reports whether the receiver acknowledged it (2xx).
func (d Delivery) OK() bool { return d.Status < 300 }

// NewReceiver starts a receiver, closed when the test ends.
func NewReceiver(t testing.TB) *Receiver {
	rc := &Receiver{t: t}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

// URL is where deliveries go.
func (rc *Receiver) URL() string { return rc.srv.URL + "/hooks/ledger" }

// Addr is the receiver's address (127.0.0.1:port).
func (rc *Receiver) Addr() string { return rc.srv.Listener.Addr().String() }

// Trust adds a secret (whsec_...) that may sign deliveries.
func (rc *Receiver) Trust(secret string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !strings.HasPrefix(secret, "whsec_") {
		rc.t.Errorf("secret %q is not in the whsec_ form", secret)
	}
	rc.secrets = append(rc.secrets, secret)
}

// SetFail sets what the receiver answers an event: a status, or 0 for 204.
func (rc *Receiver) SetFail(f func(feed.Event) int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.fail = f
}

// SetDelay makes every answer wait d.
func (rc *Receiver) SetDelay(d time.Duration) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.delay = d
}

// OnSignature calls f with each delivery's webhook-signature header.
func (rc *Receiver) OnSignature(f func(string)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.signature = f
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	rc.Inflight.Add(1)
	defer rc.Inflight.Add(-1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	rc.mu.Lock()
	secrets, fail, delay, signature := slices.Clone(rc.secrets), rc.fail, rc.delay, rc.signature
	rc.mu.Unlock()
	if signature != nil {
		signature(r.Header.Get("webhook-signature"))
	}
	verified := false
	for _, s := range secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		if err == nil && wh.Verify(body, r.Header) == nil {
			verified = true
		}
	}
	if !verified {
		rc.t.Errorf("no secret verifies the delivery %s (%s)", r.Header.Get("webhook-id"), r.Header.Get("webhook-signature"))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var d Delivery
	if err := json.Unmarshal(body, &d.CE); err != nil || d.CE.Validate() != nil {
		rc.t.Errorf("not a valid CloudEvent (%v): %s", err, body)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if d.CE.Type() == feed.TypeTest {
		d.Event.Type = feed.TypeTest
	} else if err := d.CE.DataAs(&d.Event); err != nil {
		rc.t.Errorf("the event's data: %v", err)
	}
	d.Body, d.Header, d.Status = string(body), r.Header.Clone(), http.StatusNoContent
	if fail != nil {
		if s := fail(d.Event); s != 0 {
			d.Status = s
		}
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	rc.mu.Lock()
	rc.got = append(rc.got, d)
	rc.mu.Unlock()
	w.WriteHeader(d.Status)
}

// All returns every request, in arrival order.
func (rc *Receiver) All() []Delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// Delivered returns the requests answered with a 2xx, in arrival order.
func (rc *Receiver) Delivered() []Delivery {
	var out []Delivery
	for _, d := range rc.All() {
		if d.OK() {
			out = append(out, d)
		}
	}
	return out
}

// CheckContactOrder checks that each contact's events first arrived in
// version order: when version n arrived, every version before it had.
// Repeats (at-least-once) are fine.
func CheckContactOrder(t testing.TB, got []Delivery) {
	t.Helper()
	high := map[string]uint64{}
	for _, d := range got {
		if d.Event.Type == feed.TypeTest {
			continue
		}
		c, v := d.Event.ContactID, d.Event.Version
		switch {
		case v <= high[c]:
		case v == high[c]+1:
			high[c] = v
		default:
			t.Fatalf("contact %s: version %d arrived before version %d", c, v, high[c]+1)
		}
	}
}

// loopback is the one address tests may connect to.
var loopback = netip.MustParseAddr("127.0.0.1")

// Guard fails the test on a dial anywhere but 127.0.0.1, and refuses it.
func Guard(t testing.TB) func(netip.AddrPort) error {
	return func(ap netip.AddrPort) error {
		if ap.Addr() != loopback {
			t.Errorf("a dial to %s: tests connect to 127.0.0.1 only", ap)
			return fmt.Errorf("the test guard refuses %s", ap)
		}
		return nil
	}
}

// OnlyLoopback refuses, and reports on stderr, a dial to any address but
// 127.0.0.1; for processes that have no test to fail.
func OnlyLoopback(ap netip.AddrPort) error {
	if ap.Addr() == loopback {
		return nil
	}
	fmt.Fprintf(os.Stderr, "TEST GUARD: a webhook dial to %s was refused: tests connect to 127.0.0.1 only\n", ap)
	return fmt.Errorf("the test guard refuses %s: tests connect to 127.0.0.1 only", ap)
}

// LocalhostOnly resolves localhost to 127.0.0.1 and no other name: tests
// make no lookups on the network.
type LocalhostOnly struct{}

// LookupNetIP resolves localhost.
func (LocalhostOnly) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if strings.EqualFold(host, "localhost") {
		return []netip.Addr{loopback}, nil
	}
	return nil, &net.DNSError{Err: "tests resolve localhost only", Name: host, IsNotFound: true}
}
