package ledger

import (
	"time"

	"github.com/contactledger/ledger/domain/kernel"
)

// Webhook is a workspace's subscription to its events: where to deliver
// them, which types, and whether personal fields go along.
type Webhook struct {
	ID          string // "wh_<ULID>"
	Workspace   string
	URL         string
	Description string
	// Types are public event types (contact.created, ...); empty: every type.
	// Erasure notices (contact.purged, contact.anonymized) go to every
	// subscription whatever its types.
	Types           []string
	IncludePersonal bool
	Enabled         bool
	// DisabledReason says why delivery stopped (by hand, or failing for days).
	DisabledReason string
	DisabledAt     time.Time
	// Secrets sign deliveries, newest first. Their key material is in the
	// key vault, wrapped by the key-encryption key.
	Secrets   []WebhookSecret
	CreatedAt time.Time
	UpdatedAt time.Time
	CreatedBy string // the token (or command) that created it
	// Revision grows with every change of the subscription (its settings,
	// secrets, a replay), so deliverers know to reload it.
	Revision int64
}

// WebhookSecret is one signing secret of a subscription.
type WebhookSecret struct {
	ID        string // "whs_<ULID>"; its key-vault owner is "whsec:" + ID
	CreatedAt time.Time
	// ExpiresAt is when a secret replaced by a rotation stops signing; zero
	// for the current secret.
	ExpiresAt time.Time
}

// WebhookProgress is how far delivery to a subscription has got.
type WebhookProgress struct {
	Webhook string
	// Position is the checkpoint: every event of the workspace up to it was
	// delivered, given up on, or is pending.
	Position kernel.Position
	// Since, when set, skips events older than it (a replay from a time).
	Since time.Time
	// Generation moves with every replay, so that a deliverer's commit that
	// started before it fails.
	Generation int64
	// LastSuccessAt is the last 2xx answer; FailingSince the first failed
	// attempt after it (zero while healthy); LastError the last failure.
	LastSuccessAt time.Time
	FailingSince  time.Time
	LastError     string
	// Pending counts the events waiting for a retry or queued behind one.
	Pending   int64
	UpdatedAt time.Time
}

// PendingDelivery is an event waiting for its next attempt, or queued
// behind an earlier event of the same contact that is.
type PendingDelivery struct {
	Webhook  string
	Stream   string
	Position kernel.Position
	EventID  string
	// Attempts is how many attempts were made.
	Attempts int
	// NextAt is when to try again; zero while queued behind an earlier event of its contact.
	NextAt  time.Time
	FirstAt time.Time // the first attempt (zero while queued)
}

// The outcomes of a delivery attempt.
const (
	AttemptDelivered = "delivered" // 2xx
	AttemptRetrying  = "retrying"  // failed; another attempt is scheduled
	AttemptFailed    = "failed"    // failed for the last time: given up
)

// DeliveryAttempt is one try to deliver an event (or a test message). It
// holds no personal data: the receiver's answer body is never kept.
type DeliveryAttempt struct {
	ID        string // a ULID, in time order
	Webhook   string
	EventID   string
	EventType string // the public type
	ContactID string
	Position  kernel.Position
	Attempt   int
	At        time.Time
	// Status is the HTTP status the receiver answered (0: none).
	Status  int
	Outcome string
	Latency time.Duration
	// Error says what failed, in the ledger's words (timeout, refused
	// address, HTTP 500, ...).
	Error string
}

// ErasureAck records that a subscription was sent an erasure notice, and
// when it acknowledged it (2xx).
type ErasureAck struct {
	Webhook        string
	Workspace      string
	Contact        string
	EventID        string
	NotifiedAt     time.Time
	AcknowledgedAt time.Time // zero until a 2xx answer
}

// DeliveryBatch is what a deliverer commits at once, in one transaction.
type DeliveryBatch struct {
	Webhook    string
	Generation int64
	// From and To move the checkpoint (equal: it stays).
	From, To kernel.Position
	// ClearSince drops the replay's time filter once it has served.
	ClearSince bool
	Attempts   []DeliveryAttempt
	// Pending are upserted, by position; Done are pending events now
	// delivered or given up, deleted.
	Pending []PendingDelivery
	Done    []kernel.Position
	// Acks are upserted: NotifiedAt keeps its first value and
	// AcknowledgedAt, once set, its first value too.
	Acks []ErasureAck
	// LastSuccessAt and FailingSince replace the progress's when non-zero;
	// Healthy clears FailingSince; LastError replaces it when non-empty.
	LastSuccessAt time.Time
	FailingSince  time.Time
	Healthy       bool
	LastError     string
	// Disable, when set, disables the subscription with this reason.
	Disable string
	At      time.Time
}

// AttemptQuery selects one page of a subscription's attempts, newest first.
type AttemptQuery struct {
	// Before is the id of the last attempt of the previous page.
	Before  string
	EventID string
	Limit   int
}
