//go:build bench

package main

// The bench command is built only into bin/ledger-bench (`make bench`,
// tag bench): the production binary carries no benchmark code.

import (
	"context"
	"io"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/contactledger/ledger/internal/bench"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
	"github.com/spf13/cobra"
)

func init() {
	benchCommand = func(stdout, stderr io.Writer) *cobra.Command { return bench.NewCommand(openBench, stdout, stderr) }
}

// benchLedger is a Main as the bench drives it.
type benchLedger struct{ *Main }

func openBench(ctx context.Context, dataDir, databaseURL string) (bench.Ledger, error) {
	m := NewMain()
	m.Config.DataDir, m.Config.DatabaseURL, m.Config.LogLevel, m.Config.KEKURL = dataDir, databaseURL, "error", ""
	m.Stdout, m.Stderr = io.Discard, io.Discard
	if err := m.Open(ctx); err != nil {
		return nil, err
	}
	return benchLedger{m}, nil
}

func (l benchLedger) Log() kernel.EventStore { return l.events }

func (l benchLedger) CreateWorkspace(ctx context.Context, name string) (ledger.Workspace, error) {
	return l.access.CreateWorkspace(ctx, name)
}

func (l benchLedger) CreateToken(ctx context.Context, workspace string, role kernel.Role, label string) (string, ledger.Token, error) {
	return l.access.CreateToken(ctx, workspace, role, label)
}

func (l benchLedger) NewContactKey(ctx context.Context, workspace string, id contact.ID, now time.Time) (shred.DataKey, string, error) {
	return l.vault.NewContactKey(ctx, workspace, id, now)
}

func (l benchLedger) Feed(ctx context.Context, q ledger.FeedQuery) (ledger.FeedPage, error) {
	return l.feed.Feed(ctx, q)
}

func (l benchLedger) RunRebuild(ctx context.Context, name, reason, by string, progress func(projections.RebuildJob)) (projections.RebuildJob, error) {
	return l.Runner.RunRebuild(ctx, name, reason, by, progress)
}

func (l benchLedger) Bootstrap(ctx context.Context) error { return l.bootstrap(ctx) }
