package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/apicontract"
	"github.com/contactledger/ledger/internal/pgtest"
)

// ledgerUnderTest is a real server on :0 with its own data directory.
type ledgerUnderTest struct {
	*main.Main
	t     *testing.T
	store string
	admin string
	// base is the URL of a server in another process; empty for Main's own.
	base string
}

func (l *ledgerUnderTest) url() string {
	if l.base != "" {
		return l.base
	}
	return l.URL()
}

// stores lists the stores every end-to-end test runs against.
var stores = []string{"sqlite", "postgres"}

// eachStore runs f once per store, as a subtest named after it.
func eachStore(t *testing.T, f func(t *testing.T, store string)) {
	for _, s := range stores {
		t.Run(s, func(t *testing.T) { f(t, s) })
	}
}

// start runs the ledger's real wiring on :0 with a fresh data directory
// and, for "postgres", a fresh database.
func start(t *testing.T, store string, configure ...func(*main.Main)) *ledgerUnderTest {
	t.Helper()
	m := main.NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DataDir = t.TempDir()
	m.Config.LogLevel = "warn"
	m.Config.KEKURL = ""
	m.Config.DatabaseURL = ""
	if store == "postgres" {
		m.Config.DatabaseURL = pgtest.URL(t)
	}
	var out bytes.Buffer
	m.Stdout, m.Stderr = &out, io.Discard
	m.Middleware = checkContract(t)
	for _, f := range configure {
		f(m)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	l := &ledgerUnderTest{Main: m, t: t, store: store, admin: m.AdminToken}
	t.Cleanup(func() {
		if err := l.Main.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if m.AdminToken == "" || !strings.Contains(out.String(), m.AdminToken) {
		t.Fatalf("first start did not show the admin token; output: %q", out.String())
	}
	return l
}

// contract is the checker of every request and answer the end-to-end
// tests exchange with a ledger in this process: it is made from the
// description the first server serves (all serve the same one).
var contract struct {
	once    sync.Once
	checker *apicontract.Checker
	err     error
}

// checkContract returns the middleware that checks a server's traffic
// against its served description (internal/apicontract) and fails t with
// each violation: the operation, the status and what did not match.
func checkContract(t *testing.T) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		contract.once.Do(func() { contract.checker, contract.err = servedChecker(next) })
		if contract.err != nil {
			t.Fatalf("the served description: %v", contract.err)
		}
		return contract.checker.Handler(next, func(violation string) {
			t.Errorf("the answer breaks the API description: %s", violation)
		})
	}
}

// servedChecker makes the checker of the description the API serves.
func servedChecker(api http.Handler) (*apicontract.Checker, error) {
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, httptest.NewRequest("GET", "/openapi.json", nil))
	return apicontract.New(rec.Body.Bytes())
}

// restart stops the server and starts it again on the same stores, as a
// restart of the process would.
func (l *ledgerUnderTest) restart() {
	l.t.Helper()
	cfg, now, logger := l.Config, l.Now, l.Logger
	if err := l.Main.Close(); err != nil {
		l.t.Fatal(err)
	}
	m := main.NewMain()
	m.Config, m.Now, m.Logger, m.Middleware = cfg, now, logger, l.Middleware
	m.Stdout, m.Stderr = io.Discard, io.Discard
	if err := m.Run(context.Background()); err != nil {
		l.t.Fatal(err)
	}
	l.Main = m
}

// cli returns the flags that point the command line at this ledger's stores.
func (l *ledgerUnderTest) cli(args ...string) []string {
	args = append(args, "--data-dir", l.Config.DataDir)
	if l.Config.DatabaseURL != "" {
		args = append(args, "--database-url", l.Config.DatabaseURL)
	}
	return args
}

// reply is an HTTP answer with its JSON body decoded.
type reply struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

func (r reply) str(path ...string) string {
	var v any = r.Body
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

func (r reply) num(key string) float64 { n, _ := r.Body[key].(float64); return n }

func (r reply) items() []map[string]any {
	raw, _ := r.Body["items"].([]any)
	out := make([]map[string]any, len(raw))
	for i, x := range raw {
		out[i], _ = x.(map[string]any)
	}
	return out
}

// remote is an HTTP client of a ledger at base.
type remote struct {
	t     *testing.T
	base  string
	token string
}

// as sends a request with the remote's token.
func (r *remote) as(method, path string, body any, headers ...string) reply {
	r.t.Helper()
	return send(r.t, r.base, r.token, method, path, body, headers...)
}

// do sends a request with the given token; body is marshalled unless it is
// a string or []byte, sent as is.
func (l *ledgerUnderTest) do(token, method, path string, body any, headers ...string) reply {
	l.t.Helper()
	return send(l.t, l.url(), token, method, path, body, headers...)
}

func send(t *testing.T, base, token, method, path string, body any, headers ...string) reply {
	t.Helper()
	r, err := try(http.DefaultClient, base, token, method, path, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// try sends a request and returns the answer, or the error of a request
// that got none (the server is down, or died while answering).
func try(client *http.Client, base, token, method, path string, body any, headers ...string) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return reply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	r := reply{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if ct := resp.Header.Get("Content-Type"); len(raw) > 0 && strings.Contains(ct, "json") && !strings.Contains(ct, "ndjson") {
		if err := json.Unmarshal(raw, &r.Body); err != nil {
			return reply{}, fmt.Errorf("%s %s: body is not a JSON object: %s", method, path, raw)
		}
	}
	return r, nil
}

// as sends a request with the admin token.
func (l *ledgerUnderTest) as(method, path string, body any, headers ...string) reply {
	l.t.Helper()
	return l.do(l.admin, method, path, body, headers...)
}

// want checks an answer's status, and for errors its problem code.
func want(t *testing.T, r reply, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got status %d, want %d; body %s", r.Status, status, r.Raw)
	}
	if status >= 400 {
		if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("got content type %q, want application/problem+json", ct)
		}
		if r.str("code") != code || r.str("type") != "https://contactledger.dev/problems/"+code || int(r.num("status")) != status {
			t.Fatalf("got problem %s, want code %s", r.Raw, code)
		}
	}
}

func (l *ledgerUnderTest) create(body map[string]any) string {
	l.t.Helper()
	r := l.as("POST", "/v1/contacts", body)
	want(l.t, r, 201, "")
	return r.str("id")
}

// ids returns the ids of a view's first page.
func (l *ledgerUnderTest) ids(query string) []string {
	l.t.Helper()
	r := l.as("GET", "/v1/contacts?"+query, nil)
	want(l.t, r, 200, "")
	var out []string
	for _, it := range r.items() {
		out = append(out, it["id"].(string))
	}
	return out
}

func roleOf(s string) kernel.Role { return kernel.Role(s) }
