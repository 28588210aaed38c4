package main_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	main "github.com/contactledger/ledger/cmd/ledger"
)

// TestMetricsAndLogs drives requests with every kind of outcome and reads
// /metrics (no token) and the server's JSON log: counts by route template
// and status, commands by outcome, append latency, projection lag, key-vault
// operations and rebuild progress, one log line per request whose id comes
// back as a header and becomes the events' correlation id; no personal data
// in either.
func TestMetricsAndLogs(t *testing.T) { eachStore(t, testMetricsAndLogs) }

func testMetricsAndLogs(t *testing.T, store string) {
	var logs syncBuffer
	l := start(t, store, func(m *main.Main) {
		m.Stderr, m.Config.LogFormat, m.Config.LogLevel = &logs, "auto", "info"
	})
	r := l.as("POST", "/v1/contacts", map[string]any{"name": "Metric Person", "email": "metric.person@example.com"}, "X-Request-Id", "req-test-123")
	want(t, r, 201, "")
	id := r.str("id")
	if got := r.Header.Get("X-Request-Id"); got != "req-test-123" {
		t.Fatalf("X-Request-Id: got %q, want the client's", got)
	}
	r = l.as("PATCH", "/v1/contacts/"+id, map[string]any{"name": "Other"}, "If-Match", `"9"`)
	want(t, r, 412, "concurrent-modification")
	want(t, l.as("POST", "/v1/contacts/"+id+"/restore", nil), 409, "invalid-transition")
	r = l.as("POST", "/v1/contacts/"+id+"/archive", nil)
	want(t, r, 200, "")
	generated := r.Header.Get("X-Request-Id")
	if len(generated) != 26 {
		t.Fatalf("a request without an id got %q, want a new ULID", generated)
	}
	want(t, l.as("GET", "/v1/nothing/"+id, nil), 404, "route-not-found")
	h := l.as("GET", "/v1/contacts/"+id+"/history", nil)
	evs := h.Body["events"].([]any)
	if evs[0].(map[string]any)["correlation_id"] != "req-test-123" || evs[1].(map[string]any)["correlation_id"] != generated {
		t.Fatalf("correlation ids: %v, %v; want req-test-123, %s", evs[0].(map[string]any)["correlation_id"], evs[1].(map[string]any)["correlation_id"], generated)
	}
	l.settle()
	if _, err := l.Runner.RunRebuild(t.Context(), "trash", "requested", "test", nil); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Get(l.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	text := string(body)
	for _, w := range []string{
		`ledger_http_requests_total{method="POST",route="/v1/contacts",status="201"} 1`,
		`ledger_http_requests_total{method="PATCH",route="/v1/contacts/:id",status="412"} 1`,
		`ledger_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`ledger_http_request_duration_seconds_bucket{method="POST",route="/v1/contacts",status="201",le="+Inf"} 1`,
		`ledger_commands_total{command="create",outcome="ok"} 1`,
		`ledger_commands_total{command="update",outcome="conflict"} 1`,
		`ledger_commands_total{command="restore",outcome="refused"} 1`,
		`ledger_commands_total{command="archive",outcome="ok"} 1`,
		`ledger_append_duration_seconds_count{outcome="ok"} 2`,
		`ledger_projection_lag_events{projection="active"} 0`,
		`ledger_projection_lag_seconds{projection="trash"} 0`,
		`ledger_key_vault_operations_total{op="create",outcome="ok"}`,
		`ledger_key_vault_operations_total{op="unwrap",outcome="ok"}`,
		`ledger_job_items_done{kind="rebuild",target="trash"}`,
		`ledger_job_running{kind="rebuild",target="trash"} 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	for _, secret := range []string{"Metric Person", "metric.person", id, "default", "req-test-123"} {
		if strings.Contains(text, secret) {
			t.Errorf("/metrics contains %q", secret)
		}
	}

	// One JSON line per request, with its id and route template; no personal data.
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("a log line is not JSON (stderr is not a terminal): %q", sc.Text())
		}
		if m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	found := 0
	for _, m := range lines {
		if m["request_id"] == "req-test-123" && m["route"] == "/v1/contacts" && m["status"] == float64(201) && m["method"] == "POST" {
			found++
		}
		if m["request_id"] == generated && m["route"] == "/v1/contacts/:id/archive" {
			found++
		}
	}
	if found != 2 {
		t.Fatalf("request log lines: %v", lines)
	}
	if strings.Contains(logs.String(), "Metric Person") || strings.Contains(logs.String(), "metric.person") {
		t.Fatal("the log contains personal data")
	}
}
