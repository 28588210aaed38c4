package contact

import (
	"encoding/json"
	"fmt"

	"github.com/contactledger/ledger/domain/kernel"
)

// Event is something that happened to a contact. Its clear fields are
// non-personal; personal values travel in a separate part that is sealed.
type Event interface {
	// EventType returns the wire name, in the past tense.
	EventType() string
}

// The wire names of the events.
const (
	TypeCreated    = "ContactCreated"
	TypeUpdated    = "ContactUpdated"
	TypeArchived   = "ContactArchived"
	TypeUnarchived = "ContactUnarchived"
	TypeTrashed    = "ContactTrashed"
	TypeRestored   = "ContactRestored"
	TypePurged     = "ContactPurged"
	TypeAnonymized = "ContactAnonymized"
)

// Created starts a contact's stream.
type Created struct {
	Source   string   `json:"source,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	Personal Personal `json:"-"`
	// Shredded is set when the event was read after the contact's key was destroyed.
	Shredded bool `json:"-"`
}

// Updated changes personal fields. Fields names what changed (custom fields as
// custom_fields.<key>); a listed field without a value in Values was cleared.
type Updated struct {
	Fields   []string `json:"fields"`
	Values   Personal `json:"-"`
	Shredded bool     `json:"-"`
}

// Archived moves an active contact out of sight without deleting it. Its
// reason is free text, so personal: from schema 2 on it is sealed (schema 1
// events keep it in their clear payload).
type Archived struct {
	Reason string `json:"reason,omitempty"`
}

// Unarchived brings an archived contact back to active.
type Unarchived struct {
	Reason string `json:"reason,omitempty"`
}

// Trashed moves a contact into trash; From is where it came from.
type Trashed struct {
	Reason string `json:"reason,omitempty"`
	From   State  `json:"from"`
}

// Restored brings a contact back from trash to the state it left.
// KeepBoth records that the restore was asked to go ahead although a live
// contact holds its email or phone now (on_conflict: keep_both); events
// written before identity uniqueness lack it, which reads as false.
type Restored struct {
	Reason   string `json:"reason,omitempty"`
	To       State  `json:"to"`
	KeepBoth bool   `json:"keep_both,omitempty"`
}

// Trigger says what caused an erasure.
type Trigger string

// The triggers of an erasure.
const (
	TriggerRequest   Trigger = "request"   // a person with the right role asked for it
	TriggerRetention Trigger = "retention" // the workspace's retention policy
)

// Erasure describes a crypto-shredding: why, under what, and what was erased.
// Its reason is free text: from schema 2 on it is sealed under the very key
// the erasure destroys, so nobody reads it afterwards; the rest holds no
// personal data and stays readable forever.
type Erasure struct {
	Reason  string  `json:"reason,omitempty"`
	Trigger Trigger `json:"trigger"`
	// Request is an optional reference to the request that asked for the
	// erasure, such as a ticket number of a data subject request. It stays
	// in clear (receipts name it), so it refuses email addresses and phone
	// numbers (ValidateClearText).
	Request string `json:"request,omitempty"`
	// RetentionDays is the policy's retention when the trigger is retention.
	RetentionDays int `json:"retention_days,omitempty"`
	// KeyID names the data key that was destroyed.
	KeyID string `json:"key_id"`
	// Erased lists the personal fields that became unreadable.
	Erased []string `json:"erased"`
}

// Purged is the tombstone: the contact is gone from every view and its key is destroyed.
type Purged struct{ Erasure }

// Anonymized destroys the key but keeps a non-personal shell in place.
type Anonymized struct{ Erasure }

func (Created) EventType() string    { return TypeCreated }
func (Updated) EventType() string    { return TypeUpdated }
func (Archived) EventType() string   { return TypeArchived }
func (Unarchived) EventType() string { return TypeUnarchived }
func (Trashed) EventType() string    { return TypeTrashed }
func (Restored) EventType() string   { return TypeRestored }
func (Purged) EventType() string     { return TypePurged }
func (Anonymized) EventType() string { return TypeAnonymized }

// sealed is implemented by events with a personal part.
type sealed interface{ personalPart() any }

// unsealed is implemented by pointers to events with a personal part, for decoding.
type unsealed interface {
	personalTarget() any
	shred()
}

// createdPersonal is the sealed part of ContactCreated: the personal fields
// and, from schema 2 on, the tags (free text: users write names into them).
type createdPersonal struct {
	Personal
	Tags []string `json:"tags,omitempty"`
}

func (e Created) personalPart() any    { return createdPersonal{Personal: e.Personal, Tags: e.Tags} }
func (e *Created) personalTarget() any { return (*createdTarget)(e) }
func (e *Created) shred()              { e.Personal = Personal{}; e.Shredded = true }

// MarshalJSON writes the clear payload of the current schema: the tags are sealed.
func (e Created) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Source string `json:"source,omitempty"`
	}{e.Source})
}

// createdTarget decodes a sealed part into a Created: the personal fields,
// and the tags when the part has them (schema 1 keeps them in clear).
type createdTarget Created

func (t *createdTarget) UnmarshalJSON(b []byte) error {
	var p struct {
		Personal
		Tags *[]string `json:"tags"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	t.Personal = p.Personal
	if p.Tags != nil {
		t.Tags = *p.Tags
	}
	return nil
}

func (e Updated) personalPart() any    { return e.Values }
func (e *Updated) personalTarget() any { return &e.Values }
func (e *Updated) shred()              { e.Values = Personal{}; e.Shredded = true }

// reasonPart is the sealed part of the events whose only free text is a reason.
type reasonPart struct {
	Reason string `json:"reason,omitempty"`
}

// reasonTarget decodes a sealed reasonPart into an event's reason.
type reasonTarget struct{ reason *string }

func (t *reasonTarget) UnmarshalJSON(b []byte) error {
	var p reasonPart
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*t.reason = p.Reason
	return nil
}

func (e Archived) personalPart() any            { return reasonPart(e) }
func (e *Archived) personalTarget() any         { return &reasonTarget{&e.Reason} }
func (e *Archived) shred()                      { e.Reason = "" }
func (e Archived) MarshalJSON() ([]byte, error) { return []byte("{}"), nil }

func (e Unarchived) personalPart() any            { return reasonPart(e) }
func (e *Unarchived) personalTarget() any         { return &reasonTarget{&e.Reason} }
func (e *Unarchived) shred()                      { e.Reason = "" }
func (e Unarchived) MarshalJSON() ([]byte, error) { return []byte("{}"), nil }

func (e Trashed) personalPart() any    { return reasonPart{e.Reason} }
func (e *Trashed) personalTarget() any { return &reasonTarget{&e.Reason} }
func (e *Trashed) shred()              { e.Reason = "" }

// MarshalJSON writes the clear payload of the current schema: the reason is sealed.
func (e Trashed) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		From State `json:"from"`
	}{e.From})
}

func (e Restored) personalPart() any    { return reasonPart{e.Reason} }
func (e *Restored) personalTarget() any { return &reasonTarget{&e.Reason} }
func (e *Restored) shred()              { e.Reason = "" }

// MarshalJSON writes the clear payload of the current schema: the reason is sealed.
func (e Restored) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		To       State `json:"to"`
		KeepBoth bool  `json:"keep_both,omitempty"`
	}{e.To, e.KeepBoth})
}

// erasureClear is the clear payload of a tombstone of schema 2: all but the reason.
type erasureClear struct {
	Trigger       Trigger  `json:"trigger"`
	Request       string   `json:"request,omitempty"`
	RetentionDays int      `json:"retention_days,omitempty"`
	KeyID         string   `json:"key_id"`
	Erased        []string `json:"erased"`
}

func clearErasure(er Erasure) ([]byte, error) {
	return json.Marshal(erasureClear{Trigger: er.Trigger, Request: er.Request, RetentionDays: er.RetentionDays, KeyID: er.KeyID, Erased: er.Erased})
}

func (e Purged) personalPart() any                { return reasonPart{e.Reason} }
func (e *Purged) personalTarget() any             { return &reasonTarget{&e.Reason} }
func (e *Purged) shred()                          { e.Reason = "" }
func (e Purged) MarshalJSON() ([]byte, error)     { return clearErasure(e.Erasure) }
func (e Anonymized) personalPart() any            { return reasonPart{e.Reason} }
func (e *Anonymized) personalTarget() any         { return &reasonTarget{&e.Reason} }
func (e *Anonymized) shred()                      { e.Reason = "" }
func (e Anonymized) MarshalJSON() ([]byte, error) { return clearErasure(e.Erasure) }

// eventKind is what the codec knows of one event type.
type eventKind struct {
	schema int
	new    func() Event
	// upcast turns the clear payload of an older schema into the next one.
	upcast map[int]func(json.RawMessage) (json.RawMessage, error)
	// sealedFrom is the first schema whose events carry a personal part (0:
	// never). Older events of the type keep their free text in clear.
	sealedFrom int
	// optional: an event with nothing personal to seal (no reason given)
	// has no personal part at all, and none is expected when reading it.
	optional bool
}

// same is the upcaster of a schema whose clear payload kept its shape and
// lost fields to the sealed part: the event's decoder reads what an older
// payload still has in clear (a schema 1 reason, tags, list, link id).
func same(b json.RawMessage) (json.RawMessage, error) { return b, nil }

var fromSchema1 = map[int]func(json.RawMessage) (json.RawMessage, error){1: same}

// sealedFree is the kind of an event type whose free text moved to a
// sealed part in schema 2.
func sealedFree(new func() Event) eventKind {
	return eventKind{schema: 2, new: new, upcast: fromSchema1, sealedFrom: 2, optional: true}
}

var kinds = map[string]eventKind{
	TypeCreated:    {schema: 2, new: func() Event { return &Created{} }, upcast: fromSchema1, sealedFrom: 1},
	TypeUpdated:    {schema: 1, new: func() Event { return &Updated{} }, sealedFrom: 1},
	TypeArchived:   sealedFree(func() Event { return &Archived{} }),
	TypeUnarchived: sealedFree(func() Event { return &Unarchived{} }),
	TypeTrashed:    sealedFree(func() Event { return &Trashed{} }),
	TypeRestored:   sealedFree(func() Event { return &Restored{} }),
	TypePurged:     sealedFree(func() Event { return &Purged{} }),
	TypeAnonymized: sealedFree(func() Event { return &Anonymized{} }),

	TypeTagsChanged:           sealedFree(func() Event { return &TagsChanged{} }),
	TypeNoteAdded:             {schema: 1, new: func() Event { return &NoteAdded{} }, sealedFrom: 1},
	TypeListMembershipChanged: sealedFree(func() Event { return &ListMembershipChanged{} }),
	TypeListMembershipRemoved: sealedFree(func() Event { return &ListMembershipRemoved{} }),
	TypeLinked:                sealedFree(func() Event { return &Linked{} }),
	TypeUnlinked:              sealedFree(func() Event { return &Unlinked{} }),
	TypeMarkedSpam:            sealedFree(func() Event { return &MarkedSpam{} }),
	TypeUnmarkedSpam:          sealedFree(func() Event { return &UnmarkedSpam{} }),

	// Holds are new: their free text is sealed from their first schema.
	TypeHeld:         {schema: 1, new: func() Event { return &Held{} }, sealedFrom: 1, optional: true},
	TypeHoldReleased: {schema: 1, new: func() Event { return &HoldReleased{} }, sealedFrom: 1, optional: true},
}

// Encoded is an event split for storage: the clear payload, and the personal
// part still to be sealed (nil when the event has none).
type Encoded struct {
	Type     string
	Schema   int
	Data     []byte
	Personal []byte
}

// Encode splits e into its clear payload and its personal part, in the
// current schema of its type.
func Encode(e Event) (Encoded, error) {
	k, ok := kinds[e.EventType()]
	if !ok {
		return Encoded{}, fmt.Errorf("encode: unknown event type %q", e.EventType())
	}
	data, err := json.Marshal(e)
	if err != nil {
		return Encoded{}, fmt.Errorf("encode %s: %w", e.EventType(), err)
	}
	out := Encoded{Type: e.EventType(), Schema: k.schema, Data: data}
	if s, ok := e.(sealed); ok {
		if out.Personal, err = json.Marshal(s.personalPart()); err != nil {
			return Encoded{}, fmt.Errorf("encode %s: %w", e.EventType(), err)
		}
		if k.optional && string(out.Personal) == "{}" {
			out.Personal = nil
		}
	}
	return out, nil
}

// ErrCorruptEvent means a stored event cannot be decoded.
var ErrCorruptEvent = &kernel.Error{Code: "", Reason: "corrupt-event", Message: "a stored event cannot be decoded"}

// Decode rebuilds an event from its stored parts, upcasting older schemas.
// When shredded is true the personal part is gone and the event's personal
// fields read as shredded (events of a schema that kept them in clear keep them).
func Decode(typ string, schema int, data, personal []byte, shredded bool) (Event, error) {
	k, ok := kinds[typ]
	if !ok {
		return nil, kernel.Errorf(ErrCorruptEvent, "unknown event type %q", typ)
	}
	if schema < 1 || schema > k.schema {
		return nil, kernel.Errorf(ErrCorruptEvent, "%s: unsupported schema version %d", typ, schema)
	}
	sealedSchema := k.sealedFrom > 0 && schema >= k.sealedFrom
	for v := schema; v < k.schema; v++ {
		up := k.upcast[v]
		if up == nil {
			return nil, kernel.Errorf(ErrCorruptEvent, "%s: no upcaster from schema %d", typ, v)
		}
		var err error
		if data, err = up(data); err != nil {
			return nil, fmt.Errorf("upcast %s from schema %d: %w", typ, v, err)
		}
	}
	e := k.new()
	if err := json.Unmarshal(data, e); err != nil {
		return nil, kernel.Errorf(ErrCorruptEvent, "%s: payload: %v", typ, err)
	}
	if s, ok := e.(unsealed); ok && sealedSchema {
		switch {
		case shredded:
			s.shred()
		case personal == nil:
			if !k.optional {
				return nil, kernel.Errorf(ErrCorruptEvent, "%s: personal part missing", typ)
			}
		default:
			if err := json.Unmarshal(personal, s.personalTarget()); err != nil {
				return nil, kernel.Errorf(ErrCorruptEvent, "%s: personal part: %v", typ, err)
			}
		}
	}
	return deref(e), nil
}

// deref returns the value an event pointer points to, so that callers switch on value types.
func deref(e Event) Event {
	switch v := e.(type) {
	case *Created:
		return *v
	case *Updated:
		return *v
	case *Archived:
		return *v
	case *Unarchived:
		return *v
	case *Trashed:
		return *v
	case *Restored:
		return *v
	case *Purged:
		return *v
	case *Anonymized:
		return *v
	case *TagsChanged:
		return *v
	case *NoteAdded:
		return *v
	case *ListMembershipChanged:
		return *v
	case *ListMembershipRemoved:
		return *v
	case *Linked:
		return *v
	case *Unlinked:
		return *v
	case *MarkedSpam:
		return *v
	case *UnmarkedSpam:
		return *v
	case *Held:
		return *v
	case *HoldReleased:
		return *v
	}
	return e
}

// HasPersonal reports whether events of type typ may carry a sealed
// personal part (in some schema).
func HasPersonal(typ string) bool {
	k, ok := kinds[typ]
	return ok && k.sealedFrom > 0
}

// RequiresPersonal reports whether every event of type typ and schema
// carries a sealed personal part (others have one only when they hold free text).
func RequiresPersonal(typ string, schema int) bool {
	k, ok := kinds[typ]
	return ok && k.sealedFrom > 0 && schema >= k.sealedFrom && !k.optional
}

// Schemas returns the current schema version of every event type, by wire
// name: the version Encode writes. A log may hold every version from 1 up
// to it, and Decode reads them all (the golden events in testdata/events
// prove it for each).
func Schemas() map[string]int {
	out := make(map[string]int, len(kinds))
	for typ, k := range kinds {
		out[typ] = k.schema
	}
	return out
}

// KnownType reports whether typ is the wire name of an event type.
func KnownType(typ string) bool {
	_, ok := kinds[typ]
	return ok
}
