// Package projections builds the read models from the log: one projection
// per view (active, archived, trash, anonymized), each with its own
// checkpoint committed in the same transaction as its rows, and the erasure
// projection, which makes sure every tombstone's data key is destroyed.
package projections

import (
	"context"
	"slices"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

// Version is the version of the projections' code. Changing how rows are
// built means bumping it, and stores rebuild their views on start.
// 2: a view's tag column holds the tags' blind indexes, not the tags.
// 3: a view's row says which operation moved its contact to trash.
const Version = 3

// Erasure is the name of the projection that destroys the data keys of erased contacts.
const Erasure = "erasure"

// Identities is the name of the projection that indexes every live contact
// (active, archived or in trash) by the blind indexes of its email, phone
// and source identity, with its spam mark: imports match contacts through
// it, and create and import refuse spam-marked identities through it.
const Identities = "identities"

// Row is one contact of a view.
type Row struct {
	Contact contact.Snapshot
	// SortAt orders the view, newest first: when the contact entered it
	// (created, archived, trashed or anonymized).
	SortAt     time.Time
	EmailIndex string
	PhoneIndex string
	// ExtIndex is the blind index of the contact's (source system, external id).
	ExtIndex string
	// TagIndexes are the blind indexes of its tags (ledger.TagIndex): what
	// a view's tag column holds, so that no index of it holds a tag in clear.
	TagIndexes []string
	// Position is the position of the last event applied to the row.
	Position kernel.Position
}

// Ref names a contact in its workspace.
type Ref struct {
	Workspace string
	ID        contact.ID
}

// Batch is what one projection commits at once.
type Batch struct {
	Projection  string
	From, To    kernel.Position
	Upserts     []Row
	Deletes     []Ref
	DestroyKeys []Ref
	// Tombstones names the tombstone event of each contact of DestroyKeys:
	// the store strips its stored idempotent answers down to ids naming it.
	Tombstones map[contact.ID]string
	// Erased names the contacts erased by this batch's events: after
	// committing, the store reaches its own copies of their deleted bytes.
	Erased []Ref
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

// View describes the projection that keeps one view: the contacts in State,
// or in any of States when it is set.
type View struct {
	Name   string
	State  contact.State
	States []contact.State
}

func (v View) holds(s contact.State) bool {
	if len(v.States) > 0 {
		return slices.Contains(v.States, s)
	}
	return s == v.State
}

// IdentityView is the projection of the identity index.
func IdentityView() View {
	return View{Name: Identities, States: []contact.State{contact.StateActive, contact.StateArchived, contact.StateTrashed}}
}

// Views returns the view projections, one per view of the API.
func Views() []View {
	out := make([]View, 0, len(ledger.ViewNames))
	for _, n := range ledger.ViewNames {
		out = append(out, View{Name: n, State: ledger.Views[n]})
	}
	return out
}

// Names lists every projection: the views, the identity index, then the erasure projection.
func Names() []string {
	return append(append([]string(nil), ledger.ViewNames...), Identities, Erasure)
}

// SortAt returns when the contact entered the view it is in.
func SortAt(s contact.Snapshot) time.Time {
	switch s.State {
	case contact.StateArchived:
		if s.ArchivedAt != nil {
			return *s.ArchivedAt
		}
	case contact.StateTrashed:
		if s.TrashedAt != nil {
			return *s.TrashedAt
		}
	case contact.StateAnonymized:
		if s.Tombstone != nil {
			return s.Tombstone.At
		}
	}
	return s.CreatedAt
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
