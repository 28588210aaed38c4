// Package webhookhttp sends webhooks over HTTP: signed per Standard
// Webhooks (webhook-id, webhook-timestamp, webhook-signature, with the
// official Go library), and guarded against server-side request forgery. A
// receiver's address must be public: loopback, private, link-local (the
// cloud metadata service), carrier-grade NAT, multicast and reserved ranges
// are refused, when a subscription is created and again when each
// connection is dialled (a name can resolve elsewhere by then), unless an
// allowlist names them. Redirects are not followed, connections and answers
// have timeouts, and at most a few KiB of an answer is read.
package webhookhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Options configures a Sender.
type Options struct {
	// Allow names addresses that may receive webhooks although they are not
	// public: CIDR prefixes ("10.20.0.0/16", "127.0.0.1/32") or host names
	// ("hooks.internal"), for internal deployments and tests.
	Allow []string
	// ConnectTimeout bounds dialling (5 s when zero); Timeout a whole
	// attempt, answer included (15 s when zero).
	ConnectTimeout time.Duration
	Timeout        time.Duration
	// MaxAnswer is how much of an answer body is read (64 KiB when zero);
	// the rest is dropped with the connection.
	MaxAnswer int64
	// Guard, when set, is asked before every connection with the address
	// about to be dialled; an error refuses it. Tests install one that
	// fails on any address but 127.0.0.1.
	Guard func(netip.AddrPort) error
	// Resolver resolves host names (net.DefaultResolver when nil); the
	// sender dials the addresses it returns, so tests can keep every
	// lookup off the network.
	Resolver Resolver
}

// Resolver resolves host names; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Sender delivers webhooks. It is safe for concurrent use.
type Sender struct {
	client   *http.Client
	prefixes []netip.Prefix
	hosts    map[string]bool
	guard    func(netip.AddrPort) error
	resolver Resolver
	max      int64
	timeout  time.Duration
}

var _ ledger.WebhookSender = (*Sender)(nil)

// New returns a Sender. Errors: an allowlist entry that is neither a CIDR
// prefix nor a host name.
func New(o Options) (*Sender, error) {
	s := &Sender{hosts: map[string]bool{}, guard: o.Guard, resolver: o.Resolver, max: o.MaxAnswer, timeout: o.Timeout}
	for _, a := range o.Allow {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if p, err := netip.ParsePrefix(a); err == nil {
			s.prefixes = append(s.prefixes, p.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(a); err == nil {
			s.prefixes = append(s.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		if !validHost(a) {
			return nil, fmt.Errorf("webhook allowlist: %q is neither a CIDR prefix (10.0.0.0/8) nor a host name", a)
		}
		s.hosts[strings.ToLower(a)] = true
	}
	if s.resolver == nil {
		s.resolver = net.DefaultResolver
	}
	if s.max == 0 {
		s.max = 64 << 10
	}
	if s.timeout == 0 {
		s.timeout = 15 * time.Second
	}
	connect := o.ConnectTimeout
	if connect == 0 {
		connect = 5 * time.Second
	}
	dialer := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second, ControlContext: s.control}
	transport := &http.Transport{
		// Never a proxy from the environment: it would dial on our behalf,
		// past the address check.
		Proxy:                 nil,
		DialContext:           s.dial(dialer),
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   connect,
		ResponseHeaderTimeout: s.timeout,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
	}
	s.client = &http.Client{
		Transport: transport,
		Timeout:   s.timeout,
		// A redirect is an answer like any other: not 2xx, so not delivered.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s, nil
}

// Close closes idle connections.
func (s *Sender) Close() { s.client.CloseIdleConnections() }

func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// notPublic are ranges that are not public unicast addresses, beyond what
// netip's predicates (loopback, private, link-local, multicast,
// unspecified) already say.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT (and some clouds' metadata, 100.100.100.200)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (TEST-NET-1)
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (TEST-NET-3)
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: reaches IPv4 addresses, private ones too
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001::/32"),       // Teredo: tunnels to IPv4
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: tunnels to IPv4
	netip.MustParsePrefix("fc00::/7"),        // unique local (and fd00:ec2::254, a metadata service)
	netip.MustParsePrefix("fec0::/10"),       // site-local, deprecated
}

// IsPublic reports whether addr is a public unicast address, which may
// receive webhooks without an allowlist entry. IPv4 addresses mapped into
// IPv6 are judged as IPv4.
func IsPublic(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.IsUnspecified() || addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() ||
		addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.Zone() != "" {
		return false
	}
	for _, p := range notPublic {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

// permitted reports whether addr may be dialled: public, or allowed.
func (s *Sender) permitted(addr netip.Addr) bool {
	if IsPublic(addr) {
		return true
	}
	addr = addr.Unmap()
	for _, p := range s.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// errNotPublic refuses an address that is not public and not allowed.
var errNotPublic = errors.New("not a public address (loopback, private, link-local, metadata or reserved) and not in the webhook allowlist")

type allowedHostKey struct{}

// dial resolves the host itself (with the sender's resolver) and dials
// its addresses one by one; each goes through control. Dials to an allowed
// host name are marked so that control lets them through.
func (s *Sender) dial(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if s.hosts[strings.ToLower(host)] {
			ctx = context.WithValue(ctx, allowedHostKey{}, true)
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return d.DialContext(ctx, network, addr)
		}
		ips, err := s.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, &net.DNSError{Err: "no address", Name: host, IsNotFound: true}
		}
		var first error
		for _, ip := range ips {
			c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			if first == nil {
				first = err
			}
		}
		return nil, first
	}
}

// control checks the address each connection is about to be made to,
// after resolution: this is what stops a name that resolved to a public
// address when the subscription was made and to an internal one now.
func (s *Sender) control(ctx context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refused: %w", errNotPublic)
	}
	if s.guard != nil {
		if err := s.guard(ap); err != nil {
			return err
		}
	}
	if allowed, _ := ctx.Value(allowedHostKey{}).(bool); allowed || s.permitted(ap.Addr()) {
		return nil
	}
	return fmt.Errorf("refused %s: %w", ap.Addr(), errNotPublic)
}

// MaxURL is the longest webhook URL accepted.
const MaxURL = 2000

func badURL(why string) error {
	return kernel.Invalid(kernel.FieldError{Field: "url", Message: why})
}

// CheckURL refuses a URL that is not http(s), or whose host is, or
// resolves to, an address that is not public and not allowed.
func (s *Sender) CheckURL(ctx context.Context, raw string) error {
	if utf8.RuneCountInString(raw) > MaxURL {
		return badURL("is longer than " + strconv.Itoa(MaxURL) + " characters")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
		return badURL("must be an absolute http or https URL")
	}
	if u.Fragment != "" {
		return badURL("must not have a fragment")
	}
	host := u.Hostname()
	if s.hosts[strings.ToLower(host)] {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !s.permitted(ip) {
			return badURL("points to an address that is not public (loopback, private, link-local, metadata or reserved); allow it with --webhook-allow for an internal receiver")
		}
		return nil
	}
	if !validHost(host) {
		return badURL("has a malformed host name")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := s.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return badURL("has a host name that does not resolve")
	}
	for _, a := range addrs {
		if !s.permitted(a) {
			return badURL("has a host name that resolves to an address that is not public (loopback, private, link-local, metadata or reserved); allow it with --webhook-allow for an internal receiver")
		}
	}
	return nil
}

// Sign returns the webhook-signature header of a message: one v1
// signature per secret, separated by spaces, per Standard Webhooks.
func Sign(id string, at time.Time, body []byte, secrets [][]byte) (string, error) {
	sigs := make([]string, 0, len(secrets))
	for _, k := range secrets {
		wh, err := standardwebhooks.NewWebhookRaw(k)
		if err != nil {
			return "", err
		}
		sig, err := wh.Sign(id, at, body)
		if err != nil {
			return "", err
		}
		sigs = append(sigs, sig)
	}
	return strings.Join(sigs, " "), nil
}

// UserAgent is the User-Agent of every delivery.
const UserAgent = "contact-ledger-webhooks/1"

// Send makes one attempt to deliver m: a POST of its body with the
// Standard Webhooks headers.
func (s *Sender) Send(ctx context.Context, m ledger.WebhookMessage) ledger.WebhookResponse {
	start := time.Now()
	fail := func(err error) ledger.WebhookResponse {
		return ledger.WebhookResponse{Latency: time.Since(start), Err: err}
	}
	sig, err := Sign(m.ID, m.Timestamp, m.Body, m.Secrets)
	if err != nil {
		return fail(fmt.Errorf("signing failed: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL, bytes.NewReader(m.Body))
	if err != nil {
		return fail(errors.New("the URL cannot be requested"))
	}
	h := req.Header
	h.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	h.Set("User-Agent", UserAgent)
	h.Set(standardwebhooks.HeaderWebhookID, m.ID)
	h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(m.Timestamp.Unix(), 10))
	h.Set(standardwebhooks.HeaderWebhookSignature, sig)
	resp, err := s.client.Do(req)
	if err != nil {
		return fail(describe(err, s.timeout))
	}
	// Read a little of the answer (so the connection can be reused when it
	// is short), never keep it: it could echo personal data.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, s.max))
	resp.Body.Close()
	out := ledger.WebhookResponse{Status: resp.StatusCode, Latency: time.Since(start)}
	if !out.OK() {
		out.Err = fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return out
}

// describe turns a client error into words that name neither the URL nor
// anything the receiver sent.
func describe(err error, timeout time.Duration) error {
	var (
		dns *net.DNSError
		op  *net.OpError
	)
	switch {
	case errors.Is(err, errNotPublic):
		var ue *url.Error
		if errors.As(err, &ue) && errors.As(ue.Err, &op) && op.Err != nil {
			// The dialler's words: "refused <ip>: not a public address ..."
			return errors.New(op.Err.Error())
		}
		return errNotPublic
	case errors.Is(err, context.Canceled):
		return errors.New("cancelled")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return fmt.Errorf("timed out (no answer within %s)", timeout)
	case errors.As(err, &dns):
		return errors.New("the host name does not resolve")
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused")
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the connection was closed before an answer")
	case errors.As(err, &op):
		return fmt.Errorf("cannot connect (%s)", op.Op)
	}
	if strings.Contains(err.Error(), "tls") || strings.Contains(err.Error(), "x509") {
		return errors.New("TLS handshake failed")
	}
	return errors.New("the request failed")
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
