package projections

import (
	"context"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
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

// Store is the part of the state store that projections write.
type Store interface {
	// Checkpoint returns the position up to which projection has applied the log.
	Checkpoint(ctx context.Context, projection string) (kernel.Position, error)
	// Rows returns the projection's current rows of the given contacts; absent ones are not in the view.
	Rows(ctx context.Context, projection string, refs []Ref) (map[contact.ID]Row, error)
	// Commit writes a batch and moves the projection's checkpoint from b.From
	// to b.To in one transaction. Errors: kernel.ErrConcurrency when the
	// checkpoint is no longer b.From (another runner got there first).
	Commit(ctx context.Context, b Batch) error
}

// Compacter is implemented by stores that must work to reach their own
// copies of deleted bytes (free pages, WAL, dead tuples). The runner calls it
// after committing a batch that erased contacts.
type Compacter interface {
	Compact(ctx context.Context) error
}

// StreamReader is implemented by event stores that can hand a rebuild the
// log grouped by stream, so that each contact is folded once, as a whole.
type StreamReader interface {
	// StableHead returns a position at or before which every event is
	// committed and readable, and after which every event committed later
	// comes (the zero Position for an empty log).
	StableHead(ctx context.Context) (kernel.Position, error)
	// ReadByStream returns up to limit events at or before upTo, ordered by
	// stream and version, after the event afterVersion of afterStream.
	ReadByStream(ctx context.Context, upTo kernel.Position, afterStream string, afterVersion uint64, limit int) ([]kernel.Record, error)
	// CountEvents counts the events after after, up to and including upTo.
	CountEvents(ctx context.Context, after, upTo kernel.Position) (int64, error)
}

// ShadowStore is implemented by state stores that can rebuild a view into a
// table beside the live one and switch it in atomically.
type ShadowStore interface {
	// CreateShadow creates the empty table of Shadow(view, gen), without a
	// checkpoint and with its primary key as its only index.
	CreateShadow(ctx context.Context, view, gen string) error
	// LoadShadow inserts rows into a shadow in bulk (COPY on PostgreSQL).
	LoadShadow(ctx context.Context, view, gen string, rows []Row) error
	// IndexShadow builds a loaded shadow's other indexes: one sort each,
	// where growing them row by row during the load would cost a random
	// write per row and index. It holds the live view's writers back for
	// no longer than one index build at a time.
	IndexShadow(ctx context.Context, view, gen string) error
	// DropShadows drops the shadows of view (one generation, or every
	// leftover when gen is ""), with their checkpoints. Callers hold the
	// view's rebuild lock.
	DropShadows(ctx context.Context, view, gen string) error
	// SwitchShadow makes Shadow(view, gen) the live table of view in one
	// transaction, with the view's checkpoint locked: when the live
	// checkpoint is ahead of the shadow's, catchUp must return the batch
	// that brings the shadow from its checkpoint to the live one (or fail,
	// and nothing changes); the live checkpoint ends at the shadow's
	// position, and the projection's version becomes Version. A shadow
	// switches in with every index of the view (built in the switch when
	// IndexShadow has not run). The old table
	// is dropped after the switch. Errors: kernel.ErrConcurrency when the
	// tables were too busy to switch now (nothing changed; try again).
	SwitchShadow(ctx context.Context, view, gen string, catchUp func(ctx context.Context, from, to kernel.Position) (Batch, error)) error
	// LockRebuild takes the rebuild locks of the named views, all or none,
	// without waiting; ok is false when another rebuild holds one of them.
	// The locks go with the process.
	LockRebuild(ctx context.Context, names ...string) (release func(), ok bool, err error)
	// Versions returns the code version each projection's rows were built
	// with (projections without a checkpoint are absent).
	Versions(ctx context.Context) (map[string]int, error)
	// SaveRebuild inserts or updates a rebuild's record; it returns the
	// stored record's Cancel flag (a cancellation requested meanwhile).
	SaveRebuild(ctx context.Context, j RebuildJob) (cancel bool, err error)
	// Rebuild returns a rebuild's record. Errors: kernel.ErrNotFound.
	Rebuild(ctx context.Context, id string) (RebuildJob, error)
	// Rebuilds returns the most recent rebuilds, newest first.
	Rebuilds(ctx context.Context, limit int) ([]RebuildJob, error)
	// CancelRebuild asks a running rebuild to stop. Errors: kernel.ErrNotFound.
	CancelRebuild(ctx context.Context, id string) error
}

// FailureStore is implemented by state stores that keep when a projection
// started failing, so that every process shows it; a successful Commit
// clears it.
type FailureStore interface {
	// SetFailed records that name's batches fail since the given time.
	SetFailed(ctx context.Context, name string, since time.Time) error
	// Failed returns the failing projections and since when.
	Failed(ctx context.Context) (map[string]time.Time, error)
}
