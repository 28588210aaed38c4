// Package projections builds the read models from the log: one projection
// per view (active, archived, trash, anonymized), each with its own
// checkpoint committed in the same transaction as its rows, and the erasure
// projection, which makes sure every tombstone's data key is destroyed.
package projections

import (
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
