package contact

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// Hold is a legal hold on a contact: while it stands, the contact cannot be
// purged or anonymized (by a request, a bulk action or retention), whatever
// the policy says. Trash, restore and edits still work. Its case and reason
// are free text about the contact, so they are sealed under its key like
// every other free text; its id is not, and is what refusals name.
type Hold struct {
	ID     string       `json:"id"`
	Case   string       `json:"case,omitempty"`
	Reason string       `json:"reason,omitempty"`
	At     time.Time    `json:"at"`
	By     kernel.Actor `json:"by"`
}

// MaxCaseLen bounds a hold's case reference.
const MaxCaseLen = 200

// HoldPrefix starts every hold id.
const HoldPrefix = "hold_"

// Held places a legal hold on the contact. The hold's id is in clear; its
// case and reason are sealed (schema 1 on: the type is new).
type Held struct {
	HoldID string `json:"hold_id"`
	Case   string `json:"-"`
	Reason string `json:"-"`
}

// HoldReleased lifts the contact's legal hold; its reason is sealed.
type HoldReleased struct {
	HoldID string `json:"hold_id"`
	Reason string `json:"-"`
}

// The wire names of the hold events.
const (
	TypeHeld         = "ContactHeld"
	TypeHoldReleased = "ContactHoldReleased"
)

func (Held) EventType() string         { return TypeHeld }
func (HoldReleased) EventType() string { return TypeHoldReleased }

// heldPart is the sealed part of ContactHeld.
type heldPart struct {
	Case   string `json:"case,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (e Held) personalPart() any    { return heldPart{Case: e.Case, Reason: e.Reason} }
func (e *Held) personalTarget() any { return (*heldTarget)(e) }
func (e *Held) shred()              { e.Case, e.Reason = "", "" }

// heldTarget decodes a sealed heldPart into a Held.
type heldTarget Held

func (t *heldTarget) UnmarshalJSON(b []byte) error {
	var p heldPart
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	t.Case, t.Reason = p.Case, p.Reason
	return nil
}

func (e HoldReleased) personalPart() any    { return reasonPart{e.Reason} }
func (e *HoldReleased) personalTarget() any { return &reasonTarget{&e.Reason} }
func (e *HoldReleased) shred()              { e.Reason = "" }

// ErrHeld is the reason of a HeldError.
var ErrHeld = &kernel.Error{Code: kernel.CodeConflict, Reason: "contact-held", Message: "the contact is under legal hold"}

// ErrAlreadyHeld refuses a second hold on a held contact.
var ErrAlreadyHeld = &kernel.Error{Code: kernel.CodeConflict, Reason: "already-held", Message: "the contact is already under legal hold"}

// ErrNotHeld refuses to release a hold that is not there.
var ErrNotHeld = &kernel.Error{Code: kernel.CodeConflict, Reason: "not-held", Message: "the contact is not under legal hold"}

// HeldError refuses to erase a contact under legal hold. It names the hold
// by its id and when it was placed, never by its case or reason (free text
// about the contact, which a refusal must not carry).
type HeldError struct {
	Hold  string
	Since time.Time
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("the contact is under legal hold %s (placed %s); release the hold before erasing it", e.Hold, e.Since.UTC().Format(time.RFC3339))
}

// Unwrap makes a HeldError an ErrHeld for errors.Is and the HTTP adapter.
func (e *HeldError) Unwrap() error { return kernel.Errorf(ErrHeld, "%s", e.Error()) }

// PlaceHold puts a live contact (active, archived or in trash) under legal
// hold and returns the hold's id. Errors: ErrAlreadyHeld (naming the hold
// that stands), ErrInvalid for a case or reason that is too long.
func (c *Contact) PlaceHold(caseRef, reason string, by kernel.Actor, now time.Time) (string, error) {
	if err := c.check("held", reason); err != nil {
		return "", err
	}
	var v validator
	v.text("case", caseRef, MaxCaseLen, false)
	if err := v.err(); err != nil {
		return "", err
	}
	if c.hold != nil {
		return "", kernel.Errorf(ErrAlreadyHeld, "the contact is already under legal hold %s; release it first to place another", c.hold.ID)
	}
	id := HoldPrefix + ulid.Make().String()
	c.record(Held{HoldID: id, Case: caseRef, Reason: reason}, by, now)
	return id, nil
}

// ReleaseHold lifts a contact's legal hold. Errors: ErrNotHeld.
func (c *Contact) ReleaseHold(reason string, by kernel.Actor, now time.Time) error {
	if err := c.check("released", reason); err != nil {
		return err
	}
	if c.hold == nil {
		return kernel.Errorf(ErrNotHeld, "the contact is not under legal hold")
	}
	c.record(HoldReleased{HoldID: c.hold.ID, Reason: reason}, by, now)
	return nil
}

// heldCheck refuses to erase a contact under legal hold.
func (c *Contact) heldCheck() error {
	if c.hold != nil {
		return &HeldError{Hold: c.hold.ID, Since: c.hold.At}
	}
	return nil
}

// CurrentHold returns the contact's legal hold, or nil.
func (c *Contact) CurrentHold() *Hold {
	if c.hold == nil {
		return nil
	}
	h := *c.hold
	return &h
}

func (c *Contact) applyHold(e Envelope) bool {
	switch ev := e.Event.(type) {
	case Held:
		c.hold = &Hold{ID: ev.HoldID, Case: ev.Case, Reason: ev.Reason, At: e.At, By: e.By}
	case HoldReleased:
		c.hold = nil
	default:
		return false
	}
	return true
}
