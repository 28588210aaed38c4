package main_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	main "github.com/contactledger/ledger/cmd/ledger"
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

func testLogHygiene(t *testing.T, store string) {
	var logs syncBuffer
	l := start(t, store, func(m *main.Main) {
		m.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	lifecycle(t, l, "default")

	// Personal data sent where it does not belong: in invalid values, in
	// unknown fields and their names, in query strings and headers.
	leaks := []string{"leaky.person@example.com", "Leaky Person", "+1 555 0123 999", "leaky-key@example.com"}
	var problems []string
	for _, r := range []reply{
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
	} {
		if r.Status >= 400 {
			problems = append(problems, string(r.Raw))
		}
	}
	if len(problems) < 8 {
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
