package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/contactledger/ledger/adapters/eventstoredb"
	"github.com/contactledger/ledger/domain/kernel"
)

// openEventStore opens the log in EventStoreDB/KurrentDB when url is set
// (LEDGER_EVENTSTORE_URL, --eventstore-url). It returns nil and no error
// when url is empty: the log then stays in the state store.
func openEventStore(ctx context.Context, url string, log *slog.Logger) (kernel.EventStore, func() error, error) {
	if url == "" {
		return nil, nil, nil
	}
	s, err := eventstoredb.Open(ctx, url, eventstoredb.Options{Logger: log.With("component", "eventstoredb")})
	if err != nil {
		return nil, nil, fmt.Errorf("event store: %w", err)
	}
	return s, s.Close, nil
}
