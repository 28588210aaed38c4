package main

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

// What the commands use of the service, one small interface per capability,
// declared here where they are used. Open points each at the service; a
// command reaches only what its capability's interface offers, never the
// service's stores or vault. (Main.Svc stays the whole service: Main is the
// composition root that hands it to the API and the delivery runner.)
type (
	accessCommands interface {
		CreateWorkspace(ctx context.Context, name string) (ledger.Workspace, error)
		Workspace(ctx context.Context, name string) (ledger.Workspace, error)
		Workspaces(ctx context.Context) ([]ledger.Workspace, error)
		CreateToken(ctx context.Context, workspace string, role kernel.Role, label string) (string, ledger.Token, error)
		FindToken(ctx context.Context, idOrSecret string) (ledger.Token, error)
		RevokeToken(ctx context.Context, id string) error
		Tokens(ctx context.Context, workspace string) ([]ledger.Token, error)
		RotateKeys(ctx context.Context, store ledger.KeyRewrapper, progress func(done int)) (rewrapped int, removed int, err error)
		ExpireSessions(ctx context.Context, times ledger.SessionTimes) (int, error)
	}
	auditCommands interface {
		AuditLog(ctx context.Context, q ledger.LogQuery, emit func([]kernel.Record) error) error
		Trail(ctx context.Context, workspace string, id contact.ID, asOf time.Time, version uint64) (ledger.Trail, error)
		VerifyChains(ctx context.Context, scope ledger.VerifyScope, progress func(events int)) (ledger.VerifyReport, error)
		ErasureReceipt(ctx context.Context, workspace string, id contact.ID) ([]byte, error)
		SigningPublicKey(ctx context.Context) (ed25519.PublicKey, error)
		ExistingSigningPublicKey(ctx context.Context) (ed25519.PublicKey, error)
		Reapply(ctx context.Context, rc ledger.Receipt, correlation string) (ledger.Reapplied, error)
	}
	jobCommands interface {
		StartRestoreJob(ctx context.Context, workspace string, meta ledger.Meta, f ledger.RestoreFilter) (*job.Job, error)
		PreviewRestoreJob(ctx context.Context, workspace string, meta ledger.Meta, f ledger.RestoreFilter) (ledger.RestorePreview, error)
		RunRestoreJob(ctx context.Context, workspace string, id string, o ledger.JobOptions) (*job.Job, error)
		RunRestoreJobs(ctx context.Context, o ledger.JobOptions) error
	}
	importCommands interface {
		Import(ctx context.Context, workspace string, meta ledger.Meta, source string, rows ledger.RowReader, emit func(ledger.RowResult) error) (ledger.ImportTotals, error)
	}
	retentionCommands interface {
		SweepRetention(ctx context.Context, only string) ([]ledger.SweepReport, error)
		RunRetention(ctx context.Context, interval time.Duration, lease ledger.Lease) error
	}
	webhookCommands interface {
		Webhooks(ctx context.Context, workspace string) ([]ledger.Webhook, error)
		WebhookStatus(ctx context.Context, workspace string, id string) (ledger.WebhookStatus, error)
		WebhookStatuses(ctx context.Context) ([]ledger.WebhookStatus, error)
		ReplayWebhook(ctx context.Context, workspace string, id string, after kernel.Position, since time.Time) error
		TestWebhook(ctx context.Context, workspace string, id string) (ledger.DeliveryAttempt, error)
	}
	feedCommands interface {
		Feed(ctx context.Context, q ledger.FeedQuery) (ledger.FeedPage, error)
		WatchLog(ctx context.Context) error
	}
)

// capabilities are the commands' views of the service (see above).
type capabilities struct {
	access    accessCommands
	audit     auditCommands
	jobs      jobCommands
	imports   importCommands
	retention retentionCommands
	webhooks  webhookCommands
	feed      feedCommands
}

func capabilitiesOf(svc *ledger.Service) capabilities {
	return capabilities{
		access: svc.Access, audit: svc.Audit, jobs: svc.Jobs, imports: svc.Imports,
		retention: svc.Retention, webhooks: svc.Subscriptions, feed: svc.ChangeFeed,
	}
}
