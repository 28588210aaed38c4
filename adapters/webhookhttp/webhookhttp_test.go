package webhookhttp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/webhookhttp"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/hooktest"
	"github.com/contactledger/ledger/ledger"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// TestAddressRanges checks the address check itself on every range it
// must refuse and on public addresses. Nothing here connects anywhere.
func TestAddressRanges(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		public bool
	}{
		{"127.0.0.1", false}, {"127.255.255.254", false}, {"::1", false},
		{"0.0.0.0", false}, {"0.1.2.3", false}, {"::", false},
		{"10.0.0.1", false}, {"10.255.255.255", false},
		{"172.16.0.1", false}, {"172.31.255.255", false},
		{"192.168.0.1", false}, {"192.168.255.255", false},
		{"169.254.169.254", false}, {"169.254.0.1", false}, // link-local: the metadata service
		{"100.64.0.1", false}, {"100.127.255.255", false}, {"100.100.100.200", false}, // CGNAT
		{"192.0.0.8", false}, {"192.0.2.1", false}, {"198.51.100.7", false}, {"203.0.113.9", false},
		{"198.18.0.1", false}, {"192.88.99.1", false},
		{"224.0.0.1", false}, {"239.255.255.250", false}, {"240.0.0.1", false}, {"255.255.255.255", false},
		{"fc00::1", false}, {"fd00:ec2::254", false}, {"fdff:ffff::1", false}, // unique local
		{"fe80::1", false}, {"febf::1", false}, // link-local
		{"fec0::1", false}, {"ff02::1", false},
		{"::ffff:127.0.0.1", false}, {"::ffff:10.0.0.1", false}, {"::ffff:169.254.169.254", false}, // IPv4-mapped
		{"64:ff9b::a00:1", false}, {"2002:a00:1::", false}, {"2001:0:4136:e378::1", false}, {"2001:db8::1", false}, {"100::1", false},
		{"8.8.8.8", true}, {"1.1.1.1", true}, {"93.184.216.34", true},
		{"172.15.255.255", true}, {"172.32.0.1", true}, {"100.63.255.255", true}, {"100.128.0.1", true},
		{"11.0.0.1", true}, {"192.169.0.1", true}, {"169.253.255.255", true},
		{"2606:4700:4700::1111", true}, {"2a00:1450:4001::1", true}, {"::ffff:8.8.8.8", true},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			if got := webhookhttp.IsPublic(netip.MustParseAddr(tc.addr)); got != tc.public {
				t.Fatalf("IsPublic(%s): got %v, want %v", tc.addr, got, tc.public)
			}
		})
	}
}

// names is the tests' resolver: it knows the names it is given, and no
// lookup leaves the process.
type names struct {
	mu sync.Mutex
	m  map[string]string
}

func (n *names) set(host, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.m[host] = addr
}

func (n *names) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if a, ok := n.m[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, &net.DNSError{Err: "unknown in this test", Name: host, IsNotFound: true}
}

func newSender(t *testing.T, o webhookhttp.Options) *webhookhttp.Sender {
	t.Helper()
	o.Guard = hooktest.Guard(t)
	if o.Resolver == nil {
		o.Resolver = &names{m: map[string]string{"localhost": "127.0.0.1"}}
	}
	s, err := webhookhttp.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// receiver is a test receiver on 127.0.0.1 that counts its requests.
func receiver(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func secret(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSignaturesVerify sends with two secrets (a rotation's overlap) and
// verifies with the Standard Webhooks library's own verifier under each.
func TestSignaturesVerify(t *testing.T) {
	old, cur := secret(t), secret(t)
	got := make(chan *http.Request, 1)
	var body []byte
	srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		got <- r
		w.WriteHeader(204)
	})
	s := newSender(t, webhookhttp.Options{Allow: []string{"127.0.0.1/32"}})
	m := ledger.WebhookMessage{URL: srv.URL + "/hook", ID: "01EVENT", Timestamp: time.Now(), Body: []byte(`{"type":"contact.created"}`), Secrets: [][]byte{cur, old}}
	res := s.Send(context.Background(), m)
	if !res.OK() || res.Status != 204 {
		t.Fatalf("got %+v, want a 204", res)
	}
	r := <-got
	for _, k := range [][]byte{cur, old} {
		wh, err := standardwebhooks.NewWebhookRaw(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, r.Header); err != nil {
			t.Fatalf("the library's verifier refuses the signature: %v", err)
		}
	}
	other, _ := standardwebhooks.NewWebhookRaw(secret(t))
	if err := other.Verify(body, r.Header); err == nil {
		t.Fatal("a signature verified under a secret that did not sign")
	}
	if err := mustWebhook(t, cur).Verify([]byte(`{"type":"contact.purged"}`), r.Header); err == nil {
		t.Fatal("a changed body verified")
	}
	if r.Header.Get("webhook-id") != "01EVENT" || r.Header.Get("Content-Type") != "application/cloudevents+json; charset=utf-8" {
		t.Fatalf("headers: %v", r.Header)
	}
}

func mustWebhook(t *testing.T, k []byte) *standardwebhooks.Webhook {
	wh, err := standardwebhooks.NewWebhookRaw(k)
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

// TestLoopbackRefused checks that without the allowlist a loopback URL and
// a name resolving to loopback are refused when checked, and that a send
// to them never reaches the receiver (the dialler checks too).
func TestLoopbackRefused(t *testing.T) {
	srv, hits := receiver(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	s := newSender(t, webhookhttp.Options{})
	ctx := context.Background()
	for _, u := range []string{srv.URL + "/hook", fmt.Sprintf("http://localhost:%d/hook", port), fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/", port)} {
		if err := s.CheckURL(ctx, u); kernel.ErrorCode(err) != kernel.CodeInvalid {
			t.Fatalf("CheckURL(%s): got %v, want invalid", u, err)
		}
	}
	for _, u := range []string{srv.URL + "/hook", fmt.Sprintf("http://localhost:%d/hook", port)} {
		res := s.Send(ctx, ledger.WebhookMessage{URL: u, ID: "m", Timestamp: time.Now(), Body: []byte("{}"), Secrets: [][]byte{secret(t)}})
		if res.OK() || res.Err == nil || !strings.Contains(res.Err.Error(), "not a public address") {
			t.Fatalf("send to %s: got %+v, want refused", u, res)
		}
		if strings.Contains(res.Err.Error(), "/hook") {
			t.Fatalf("the error names the URL: %v", res.Err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("the receiver got %d requests through a refused address", hits.Load())
	}
	allowed := newSender(t, webhookhttp.Options{Allow: []string{"127.0.0.0/8"}})
	if err := allowed.CheckURL(ctx, fmt.Sprintf("http://localhost:%d/hook", port)); err != nil {
		t.Fatalf("with the allowlist: %v", err)
	}
	byName := newSender(t, webhookhttp.Options{Allow: []string{"localhost"}})
	res := byName.Send(ctx, ledger.WebhookMessage{URL: fmt.Sprintf("http://localhost:%d/hook", port), ID: "m", Timestamp: time.Now(), Body: []byte("{}"), Secrets: [][]byte{secret(t)}})
	if !res.OK() || hits.Load() != 1 {
		t.Fatalf("an allowed host name: got %+v (%d hits)", res, hits.Load())
	}
}

// TestRebinding checks that a name resolving to a public address when the
// subscription is made, and to loopback when a delivery is sent, is refused
// at the dial: the address is checked where the connection is made.
func TestRebinding(t *testing.T) {
	srv, hits := receiver(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	dns := &names{m: map[string]string{"hooks.example.com": "93.184.216.34"}}
	s := newSender(t, webhookhttp.Options{Resolver: dns})
	u := fmt.Sprintf("http://hooks.example.com:%d/hook", port)
	if err := s.CheckURL(context.Background(), u); err != nil {
		t.Fatalf("a name of a public address: %v", err)
	}
	dns.set("hooks.example.com", "127.0.0.1")
	res := s.Send(context.Background(), ledger.WebhookMessage{URL: u, ID: "m", Timestamp: time.Now(), Body: []byte("{}"), Secrets: [][]byte{secret(t)}})
	if res.OK() || res.Err == nil || !strings.Contains(res.Err.Error(), "not a public address") || hits.Load() != 0 {
		t.Fatalf("after the name moved to loopback: got %+v and %d hits, want refused", res, hits.Load())
	}
	if err := s.CheckURL(context.Background(), "http://nowhere.example.com/"); kernel.ErrorCode(err) != kernel.CodeInvalid {
		t.Fatalf("a name that does not resolve: got %v, want invalid", err)
	}
}

// TestCheckURL refuses what is not an absolute http(s) URL.
func TestCheckURL(t *testing.T) {
	s := newSender(t, webhookhttp.Options{Allow: []string{"127.0.0.1/32"}})
	for _, u := range []string{"", "ftp://127.0.0.1/", "/relative", "http://", "http://127.0.0.1/#frag", "mailto:a@example.com",
		"http://bad_host!/", "http://" + strings.Repeat("a", 2001)} {
		if err := s.CheckURL(context.Background(), u); kernel.ErrorCode(err) != kernel.CodeInvalid {
			t.Fatalf("CheckURL(%q): got %v, want invalid", u, err)
		}
	}
	if _, err := webhookhttp.New(webhookhttp.Options{Allow: []string{"not a host/"}}); err == nil {
		t.Fatal("a malformed allowlist entry was accepted")
	}
}

// TestAnswers covers what a receiver can answer: a redirect is not
// followed and is not a delivery, a slow receiver times out, a huge answer
// is not read whole, and a 5xx is a failure.
func TestAnswers(t *testing.T) {
	other, otherHits := receiver(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	redirect, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL, http.StatusTemporaryRedirect)
	})
	slow, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(time.Second):
		}
	})
	huge, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 1600 { // 100 MiB, unless the client hangs up
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	failing, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	s := newSender(t, webhookhttp.Options{Allow: []string{"127.0.0.1/32"}, Timeout: 300 * time.Millisecond})
	send := func(u string) ledger.WebhookResponse {
		return s.Send(context.Background(), ledger.WebhookMessage{URL: u, ID: "m", Timestamp: time.Now(), Body: []byte("{}"), Secrets: [][]byte{secret(t)}})
	}
	if res := send(redirect.URL); res.OK() || res.Status != http.StatusTemporaryRedirect || otherHits.Load() != 0 {
		t.Fatalf("redirect: got %+v, %d hits on its target; want a failed 307 and no hit", res, otherHits.Load())
	}
	if res := send(slow.URL); res.OK() || res.Err == nil || !strings.Contains(res.Err.Error(), "timed out") || res.Latency > 3*time.Second {
		t.Fatalf("slow receiver: got %+v, want a timeout", res)
	}
	start := time.Now()
	if res := send(huge.URL); !res.OK() || time.Since(start) > 3*time.Second {
		t.Fatalf("huge answer: got %+v after %s, want a 200 without reading it all", res, time.Since(start))
	}
	if res := send(failing.URL); res.OK() || res.Status != 503 || res.Err.Error() != "HTTP 503" {
		t.Fatalf("503: got %+v", res)
	}
}
