package main_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	main "github.com/contactledger/ledger/cmd/ledger"
)

// clock is a controllable clock for Main.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func policy(days int) map[string]any {
	return map[string]any{"retention_days": days, "require_archive_before_trash": false, "restore_role": "member", "purge_allowed": true, "protected_sources": []string{"crm"}}
}

// TestRetention lets the server's sweeper run on a controlled clock and
// checks that it purges exactly the contacts past the window, with
// tombstones that say the retention policy did it.
func TestRetention(t *testing.T) { eachStore(t, testRetention) }

func testRetention(t *testing.T, store string) {
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	l := start(t, store, func(m *main.Main) { m.Now, m.Config.RetentionInterval = clk.Now, "20ms" })

	want(t, l.do(l.token("default", "member"), "GET", "/v1/workspace/policy", nil), 403, "role-not-allowed")
	want(t, l.as("PUT", "/v1/workspace/policy", map[string]any{"retention_days": 10}), 422, "validation-failed")
	want(t, l.as("PUT", "/v1/workspace/policy", policy(-1)), 422, "validation-failed")
	r := l.as("PUT", "/v1/workspace/policy", policy(10))
	want(t, r, 200, "")
	if r.num("retention_days") != 10 || l.as("GET", "/v1/workspace/policy", nil).num("retention_days") != 10 {
		t.Fatalf("policy: %s", r.Raw)
	}

	early := []string{l.create(map[string]any{"name": "Early One"}), l.create(map[string]any{"name": "Early Two"})}
	late := l.create(map[string]any{"name": "Late"})
	active := l.create(map[string]any{"name": "Stays Active"})
	for _, id := range early {
		want(t, l.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
	}
	clk.set(t0.AddDate(0, 0, 5))
	want(t, l.as("POST", "/v1/contacts/"+late+"/trash", nil), 200, "")

	// One microsecond before the window ends, nothing is purged.
	clk.set(t0.AddDate(0, 0, 10).Add(-time.Microsecond))
	time.Sleep(200 * time.Millisecond)
	if got := l.ids("view=trash"); len(got) != 3 {
		t.Fatalf("trash before the window ends: %v, want all three", got)
	}
	// At the end of the early ones' window, they go; the late one stays.
	clk.set(t0.AddDate(0, 0, 10))
	deadline := time.Now().Add(10 * time.Second)
	for l.as("GET", "/v1/contacts/"+early[1], nil).Status != 410 || l.as("GET", "/v1/contacts/"+early[0], nil).Status != 410 {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not purge the contacts past the window")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if got := l.ids("view=trash"); !slices.Equal(got, []string{late}) {
		t.Fatalf("trash after the sweep: %v, want only %s", got, late)
	}
	if s := l.as("GET", "/v1/contacts/"+active, nil).str("state"); s != "active" {
		t.Fatalf("an active contact is %s", s)
	}
	for _, id := range early {
		events := l.as("GET", "/v1/contacts/"+id+"/history", nil).Body["events"].([]any)
		last := events[len(events)-1].(map[string]any)
		data := last["data"].(map[string]any)
		actor := last["actor"].(map[string]any)
		// The sweep is the purge's operation: its causation id is
		// "retention:<sweep id>" (the correlation id "retention-<sweep id>").
		sweep, _ := strings.CutPrefix(last["causation_id"].(string), "retention:")
		if last["type"] != "ContactPurged" || data["trigger"] != "retention" || data["retention_days"] != float64(10) ||
			actor["principal"] != "system:retention" || actor["role"] != "system" || last["correlation_id"] != "retention-"+sweep || sweep == "" {
			t.Fatalf("tombstone of %s: %v", id, last)
		}
		if ts, _ := time.Parse(time.RFC3339Nano, last["time"].(string)); ts.Before(t0.AddDate(0, 0, 10)) {
			t.Fatalf("purged at %s, before the window ended", ts)
		}
	}
}

// TestRetentionSweepCommand runs `ledger retention sweep` against a data
// directory whose contacts were trashed 40 and 1 days ago.
func TestRetentionSweepCommand(t *testing.T) { eachStore(t, testRetentionSweepCommand) }

func testRetentionSweepCommand(t *testing.T, store string) {
	clk := &clock{t: time.Now().UTC().AddDate(0, 0, -40)}
	l := start(t, store, func(m *main.Main) { m.Now, m.Config.RetentionInterval = clk.Now, "0" })
	old := l.create(map[string]any{"name": "Old Trash"})
	recent := l.create(map[string]any{"name": "Recent Trash"})
	want(t, l.as("POST", "/v1/contacts/"+old+"/trash", nil), 200, "")
	clk.set(time.Now().UTC().AddDate(0, 0, -1))
	want(t, l.as("POST", "/v1/contacts/"+recent+"/trash", nil), 200, "")

	out, _, err := l.run("retention", "sweep")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "default: purged 1 contacts in trash for over 30 days") {
		t.Fatalf("sweep printed %q", out)
	}
	want(t, l.as("GET", "/v1/contacts/"+old, nil), 410, "purged")
	if s := l.as("GET", "/v1/contacts/"+recent, nil).str("state"); s != "trashed" {
		t.Fatalf("the recent one is %s, want trashed", s)
	}
	if _, _, err := l.run("retention", "sweep", "--workspace", "nope"); err == nil {
		t.Fatal("sweeping an unknown workspace succeeded")
	}
}
