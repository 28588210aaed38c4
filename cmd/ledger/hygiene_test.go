package main_test

import (
	"bytes"
	"github.com/contactledger/ledger/ledger"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/domain/feed"
	"github.com/contactledger/ledger/internal/hooktest"
)

// syncBuffer is a buffer the logger and the test can share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogHygiene runs the end-to-end walk, and requests that carry
// personal data where it does not belong, with logging at debug level, and
// then searches the captured logs and the problems answered for every
// personal string it used: none may appear.
func TestLogHygiene(t *testing.T) { eachStore(t, testLogHygiene) }

// TestInvalidUTF8 checks that a body with invalid UTF-8 is refused (400),
// never silently repaired, as JSON and in imports, and changes nothing.
func TestInvalidUTF8(t *testing.T) {
	l := start(t, "sqlite")
	want(t, l.as("POST", "/v1/contacts", []byte("{\"name\":\"Bad \xff Byte\"}")), 400, "invalid-utf8")
	want(t, l.as("POST", "/v1/contacts/import?source=web", []byte("[{\"name\":\"Bad \xff Byte\"}]"), "Content-Type", "application/json"), 400, "malformed-import")
	want(t, l.as("POST", "/v1/contacts/import?source=web", []byte("name\nBad \xff Byte\n"), "Content-Type", "text/csv"), 400, "malformed-import")
	want(t, l.as("POST", "/v1/contacts/import?source=web", []byte("na\xffme\nx\n"), "Content-Type", "text/csv"), 400, "malformed-import")
	if ids := l.ids("view=active"); len(ids) != 0 {
		t.Fatalf("an invalid body changed something: %v", ids)
	}
}

func testLogHygiene(t *testing.T, store string) {
	var logs syncBuffer
	l := start(t, store, func(m *main.Main) {
		m.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		m.Config.WebhookAllow = []string{"127.0.0.1/32"}
		m.Webhook.Schedule = []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}
	})
	// A subscription with personal fields, whose receiver refuses every
	// third delivery: deliveries, retries and failures are logged too.
	rc := hooktest.NewReceiver(t)
	var n atomic.Int64
	rc.SetFail(func(feed.Event) int {
		if n.Add(1)%3 == 0 {
			return 500
		}
		return 0
	})
	hook := l.as("POST", "/v1/webhooks", map[string]any{"url": rc.URL(), "include_personal": true})
	want(t, hook, 201, "")
	rc.Trust(hook.str("secret"))
	lifecycle(t, l, "default")
	waitAllDelivered(t, rc, l.URL(), l.admin, 30*time.Second)

	// Personal data sent where it does not belong: in invalid values, in
	// unknown fields and their names, in query strings and headers.
	leaks := []string{"leaky.person@example.com", "Leaky Person", "+1 555 0123 999", "leaky-key@example.com",
		"Leaky_Person_Key", "Leaky_Person_Param", "Leaky_Header", "leaky_custom_key", "leaky.twin@example.com", "Leaky Twin Matter", "leaky.counsel@example.com"}
	// A held contact and its twin: the refusals name ids, never the
	// email, the hold's case or reason.
	twin := l.create(map[string]any{"name": "Twin", "email": "leaky.twin@example.com"})
	want(t, l.as("POST", "/v1/contacts/"+twin+"/hold", map[string]any{"case": "Leaky Twin Matter", "reason": "leaky.counsel@example.com asked"}), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+twin+"/trash", nil), 200, "")
	var problems []string
	for _, r := range []reply{
		l.as("POST", "/v1/contacts", map[string]any{"name": "Twin Two", "email": "leaky.twin@example.com"}),
		l.as("POST", "/v1/contacts/"+twin+"/purge", nil),
		l.as("POST", "/v1/contacts/"+twin+"/anonymize", map[string]any{"dry_run": true}),
		l.as("POST", "/v1/workspace/hold", map[string]any{"case": "Leaky Person", "reason": "leaky.counsel@example.com"}),
		l.as("POST", "/v1/contacts/import?source=web", "name,email\nTwin Three,leaky.twin@example.com\n", "Content-Type", "text/csv"),
		l.as("POST", "/v1/contacts", map[string]any{"name": "Leaky Person", "email": "leaky.person@example.com@"}),
		l.as("POST", "/v1/contacts", map[string]any{"name": "Leaky Person", "leaky-key@example.com": "x"}),
		l.as("POST", "/v1/contacts", map[string]any{"phone": "+1 555 0123 999 ext Leaky Person"}),
		l.as("GET", "/v1/contacts?q=Leaky+Person&email=leaky.person@example.com&view=trash", nil),
		l.as("GET", "/v1/contacts?leaky-key@example.com=1", nil),
		l.as("GET", "/v1/contacts?view=Leaky+Person", nil),
		l.as("POST", "/v1/contacts", map[string]any{"name": "Leaky Person"}, "Idempotency-Key", "leaky-key@example.com"),
		l.as("POST", "/v1/contacts", map[string]any{"name": "Other"}, "Idempotency-Key", "leaky-key@example.com"),
		l.as("PATCH", "/v1/contacts/01ARZ3NDEKTSV4RRFFQ69G5FAV", map[string]any{"email": "leaky.person@example.com"}),
		l.as("GET", "/v1/contacts/leaky.person@example.com", nil),
		l.as("POST", "/v1/webhooks", map[string]any{"url": "http://leaky.person@example.com@127.0.0.1:9/Leaky+Person", "description": "Leaky Person\x00"}),
		l.as("GET", "/v1/events?types=Leaky+Person", nil),
		// Names a client chose: a JSON key, a query parameter, a CSV
		// header, a custom field's key, each shaped like a field name.
		l.as("POST", "/v1/contacts", map[string]any{"name": "x", "Leaky_Person_Key": "x"}),
		l.as("GET", "/v1/contacts?Leaky_Person_Param=1", nil),
		l.as("POST", "/v1/contacts/import?source=web", "email,Leaky_Header\nx@example.com,1\n", "Content-Type", "text/csv"),
		l.as("POST", "/v1/contacts", map[string]any{"name": "x", "custom_fields": map[string]any{"leaky_custom_key": 5}}),
		l.as("POST", "/v1/contacts/import?source=web", `[{"name":"x","Leaky_Person_Key":"y"}]`, "Content-Type", "application/json"),
	} {
		if r.Status >= 400 {
			problems = append(problems, string(r.Raw))
		}
	}
	// The import answers 200 with per-row results; its text counts too.
	if r := l.as("POST", "/v1/contacts/import?source=web", `[{"name":"x","Leaky_Person_Key":"y"}]`, "Content-Type", "application/json"); r.Status == 200 {
		problems = append(problems, string(r.Raw))
	}
	if len(problems) < 18 {
		t.Fatalf("only %d of the leaky requests were refused", len(problems))
	}
	secrets := append([]string{"Ada Lovelace", "ada.lovelace@analytical.example", "7946 0018", "Analyst of Engines", "Countess of Lovelace",
		"St James", "Difference Engine", "ext-ada-1815", "Grace Hopper", "grace.hopper@navy.example", "555 0199"}, leaks...)
	captured := logs.String()
	if testing.Verbose() {
		t.Log(captured)
	}
	if !strings.Contains(captured, `"msg":"request"`) || !strings.Contains(captured, `"level":"DEBUG"`) && !strings.Contains(captured, `"level":"INFO"`) {
		t.Fatalf("the logs captured nothing useful: %.300s", captured)
	}
	for _, s := range secrets {
		if strings.Contains(captured, s) {
			t.Errorf("the logs contain personal data %q", s)
		}
		for _, p := range problems {
			if strings.Contains(p, s) {
				t.Errorf("a problem contains personal data %q: %s", s, p)
			}
		}
	}
}

// TestRevokedTokenCannotChangeTokens checks that a token revoked by another
// process (the command line, another replica) cannot create or revoke
// tokens or change the policy during the server's token cache window: those
// changes check the token again in the store.
func TestRevokedTokenCannotChangeTokens(t *testing.T) {
	eachStore(t, testRevokedTokenCannotChangeTokens)
}

func testRevokedTokenCannotChangeTokens(t *testing.T, store string) {
	l := start(t, store)
	tok := l.token("default", "admin")
	want(t, l.do(tok, "GET", "/v1/tokens", nil), 200, "") // the server now has it cached
	p, err := l.Svc.Authenticate(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	victim := l.token("default", "member")
	vp, _ := l.Svc.Authenticate(t.Context(), victim)
	// Revoked behind the server's back, as `ledger tokens revoke` does from its own process.
	if err := l.State().(ledger.Directory).RevokeToken(t.Context(), p.TokenID, time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	want(t, l.do(tok, "POST", "/v1/tokens", map[string]any{"role": "admin", "label": "escalation"}), 401, "unauthorized")
	want(t, l.do(tok, "DELETE", "/v1/tokens/"+vp.TokenID, nil), 401, "unauthorized")
	policy := map[string]any{"retention_days": 0, "require_archive_before_trash": false, "restore_role": "member", "purge_allowed": true, "protected_sources": []string{}}
	want(t, l.do(tok, "PUT", "/v1/workspace/policy", policy), 401, "unauthorized")
	tokens, err := l.Svc.Tokens(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tokens {
		if tk.Label == "escalation" || (tk.ID == vp.TokenID && !tk.RevokedAt.IsZero()) {
			t.Fatalf("the revoked token changed the tokens: %+v", tk)
		}
	}
}
