// Package bench measures the ledger beside the physical limits of its
// stores: `make bench` builds it into bin/ledger-bench (the ledger binary
// with the bench command, tag bench) and runs `ledger-bench bench`. It is
// kept out of the production binary: its raw-driver baselines, load
// generators and /proc reading are no part of what `ledger` serves.
package bench

import (
	"context"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
)

// Ledger is the ledger wired in the bench's process as `ledger serve` wires
// it, reduced to what the figures drive directly.
type Ledger interface {
	// Log is the event store the ledger appends to.
	Log() kernel.EventStore
	CreateWorkspace(ctx context.Context, name string) (ledger.Workspace, error)
	// CreateToken returns the new token's secret.
	CreateToken(ctx context.Context, workspace string, role kernel.Role, label string) (string, ledger.Token, error)
	// NewContactKey creates and stores the data key of a new contact.
	NewContactKey(ctx context.Context, workspace string, id contact.ID, now time.Time) (shred.DataKey, string, error)
	Feed(ctx context.Context, q ledger.FeedQuery) (ledger.FeedPage, error)
	// RunRebuild rebuilds a projection (or "all") and waits for it.
	RunRebuild(ctx context.Context, name, reason, by string, progress func(projections.RebuildJob)) (projections.RebuildJob, error)
	// Bootstrap creates the default workspace and its admin token, as the
	// first `ledger serve` on an empty data directory does.
	Bootstrap(ctx context.Context) error
	Close() error
}

// Opener wires the ledger on a data directory and, when databaseURL is
// set, a PostgreSQL database.
type Opener func(ctx context.Context, dataDir, databaseURL string) (Ledger, error)
