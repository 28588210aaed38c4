package projections

import (
	"context"

	"github.com/contactledger/ledger/ledger"
)

// StateStore is every port the state store serves: the application's
// (package ledger) and the projections' own. It is declared here, the one
// package that sees both. Both adapters (sqlite, postgres) implement it;
// cmd/ledger opens one, and the store contract suite (internal/storetest)
// runs against it. What only some stores offer stays an optional interface
// the callers assert: ledger.Lease, ShadowStore, FailureStore, Compacter.
type StateStore interface {
	ledger.KeyStore
	ledger.KeyRewrapper
	ledger.WebhookStore
	ledger.IdempotencyStore
	ledger.Identities
	ledger.IdentityClaims
	ledger.Directory
	ledger.ReadModels
	ledger.SessionStore
	Store
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}
