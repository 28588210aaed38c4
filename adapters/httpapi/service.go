package httpapi

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/hold"
	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

// What the API uses of the service, one small interface per capability,
// declared here where it is used (the ledger's capability types are wider).
// The handlers of each group of routes reach only their capability's
// methods; Service is their sum, which *ledger.Service satisfies.
type (
	// contactsAPI is what the contact routes (/v1/contacts..., bulk, idempotent answers) use.
	contactsAPI interface {
		Create(ctx context.Context, workspace string, meta ledger.Meta, d contact.Draft) (res ledger.Result, err error)
		Update(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, p contact.Patch) (res ledger.Result, err error)
		Get(ctx context.Context, workspace string, id contact.ID) (ledger.View, error)
		List(ctx context.Context, q ledger.ListQuery, minPos kernel.Position, email string, phone string) (ledger.Page, error)
		Transition(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, t ledger.Transition, in ledger.TransitionInput) (res ledger.Result, err error)
		Bulk(ctx context.Context, workspace string, meta ledger.Meta, r ledger.BulkRequest) ([]ledger.BulkItem, error)
		Erasure(ctx context.Context, workspace string, id contact.ID) (*ledger.ErasedError, error)
		ChangeTags(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, add []string, remove []string) (ledger.Result, error)
		AddNote(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, text string) (ledger.Result, string, error)
		Notes(ctx context.Context, workspace string, id contact.ID) ([]contact.Note, error)
		SetList(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, list string, status contact.ListStatus) (ledger.Result, error)
		RemoveList(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, list string) (ledger.Result, error)
		AddLink(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, link contact.Link) (ledger.Result, error)
		RemoveLink(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, link contact.Link) (ledger.Result, error)
		MarkSpam(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, reason string) (ledger.Result, error)
		UnmarkSpam(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, reason string) (ledger.Result, error)
		SealAnswer(ctx context.Context, rec ledger.Idempotency, id contact.ID) ([]byte, error)
		OpenAnswer(ctx context.Context, rec ledger.Idempotency, id contact.ID) ([]byte, error)
	}
	// accessAPI is what authentication, the workspace policy and token routes use.
	accessAPI interface {
		Authenticate(ctx context.Context, bearer string) (ledger.Principal, error)
		Recheck(ctx context.Context, p ledger.Principal) error
		Workspace(ctx context.Context, name string) (ledger.Workspace, error)
		SetPolicy(ctx context.Context, workspace string, ps contact.PolicySettings) (contact.Policy, error)
		CreateToken(ctx context.Context, workspace string, role kernel.Role, label string) (string, ledger.Token, error)
		Tokens(ctx context.Context, workspace string) ([]ledger.Token, error)
		RevokeWorkspaceToken(ctx context.Context, workspace string, id string) (ledger.Token, error)
	}
	// auditAPI is what the history, audit-log and receipt routes use.
	auditAPI interface {
		Trail(ctx context.Context, workspace string, id contact.ID, asOf time.Time, version uint64) (ledger.Trail, error)
		AuditLog(ctx context.Context, q ledger.LogQuery, emit func([]kernel.Record) error) error
		ErasureReceipt(ctx context.Context, workspace string, id contact.ID) ([]byte, error)
		SigningPublicKey(ctx context.Context) (ed25519.PublicKey, error)
	}
	// jobsAPI is what the restore-job routes use.
	jobsAPI interface {
		StartRestoreJob(ctx context.Context, workspace string, meta ledger.Meta, f ledger.RestoreFilter) (*job.Job, error)
		PreviewRestoreJob(ctx context.Context, workspace string, meta ledger.Meta, f ledger.RestoreFilter) (ledger.RestorePreview, error)
		CancelRestoreJob(ctx context.Context, workspace string, id string, meta ledger.Meta) (*job.Job, error)
		RestoreJob(ctx context.Context, workspace string, id string) (*job.Job, error)
	}
	// importsAPI is what the import route use.
	importsAPI interface {
		Import(ctx context.Context, workspace string, meta ledger.Meta, source string, rows ledger.RowReader, emit func(ledger.RowResult) error) (ledger.ImportTotals, error)
	}
	// holdsAPI is what the legal-hold routes use.
	holdsAPI interface {
		PlaceHold(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, caseRef string, reason string) (ledger.Result, string, error)
		ReleaseHold(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, reason string) (ledger.Result, error)
		Holds(ctx context.Context, workspace string, after string, limit int) (*hold.Hold, []contact.Snapshot, error)
		PlaceWorkspaceHold(ctx context.Context, workspace string, meta ledger.Meta, caseRef string, reason string) (*hold.Hold, error)
		ReleaseWorkspaceHold(ctx context.Context, workspace string, meta ledger.Meta, reason string) (*hold.Hold, error)
	}
	// webhooksAPI is what the webhook routes use.
	webhooksAPI interface {
		CreateWebhook(ctx context.Context, workspace string, by kernel.Actor, in ledger.WebhookInput) (ledger.Webhook, string, error)
		Webhooks(ctx context.Context, workspace string) ([]ledger.Webhook, error)
		UpdateWebhook(ctx context.Context, workspace string, id string, by kernel.Actor, in ledger.WebhookInput) (ledger.Webhook, error)
		DeleteWebhook(ctx context.Context, workspace string, id string) error
		RotateWebhookSecret(ctx context.Context, workspace string, id string, overlap time.Duration) (ledger.Webhook, string, error)
		WebhookStatus(ctx context.Context, workspace string, id string) (ledger.WebhookStatus, error)
		WebhookDeliveries(ctx context.Context, workspace string, id string, q ledger.AttemptQuery) ([]ledger.DeliveryAttempt, error)
		ReplayWebhook(ctx context.Context, workspace string, id string, after kernel.Position, since time.Time) error
		TestWebhook(ctx context.Context, workspace string, id string) (ledger.DeliveryAttempt, error)
	}
	// feedAPI is what the change-feed routes (/v1/events...) use.
	feedAPI interface {
		Feed(ctx context.Context, q ledger.FeedQuery) (ledger.FeedPage, error)
		FeedHead(ctx context.Context) (kernel.Position, error)
		FeedNow(ctx context.Context, q ledger.FeedQuery) (ledger.FeedPage, error)
		LogChanged() <-chan struct{}
	}
)

// Service is everything the API needs of the service.
type Service interface {
	contactsAPI
	accessAPI
	auditAPI
	jobsAPI
	importsAPI
	holdsAPI
	webhooksAPI
	feedAPI
}
