package main_test

import (
	"strings"
	"testing"

	main "github.com/contactledger/ledger/cmd/ledger"
)

// TestEventStoreConfig checks, without a server, that the EventStoreDB
// setting reaches the wiring from its environment variable and its flag.
func TestEventStoreConfig(t *testing.T) {
	t.Setenv("LEDGER_EVENTSTORE_URL", "esdb://kurrent.example:2113?tls=false")
	if got := main.DefaultConfig().EventStoreURL; got != "esdb://kurrent.example:2113?tls=false" {
		t.Fatalf("LEDGER_EVENTSTORE_URL: got %q", got)
	}
	var stdout, stderr strings.Builder
	cmd := main.NewRootCommand(&stdout, &stderr)
	cmd.SetArgs([]string{"workspaces", "list", "--data-dir", t.TempDir(), "--eventstore-url", "http://not-an-esdb-url"})
	err := cmd.ExecuteContext(t.Context())
	if err == nil || !strings.Contains(err.Error(), "eventstoredb connection string") {
		t.Fatalf("--eventstore-url with a bad URL: got %v, want the connection string refused", err)
	}
}
