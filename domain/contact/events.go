package contact

import (
	"encoding/json"
	"fmt"
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

// Archived moves an active contact out of sight without deleting it.
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
type Restored struct {
	Reason string `json:"reason,omitempty"`
	To     State  `json:"to"`
}

// Trigger says what caused an erasure.
type Trigger string

// The triggers of an erasure.
const (
	TriggerRequest   Trigger = "request"   // a person with the right role asked for it
	TriggerRetention Trigger = "retention" // the workspace's retention policy
)

// Erasure describes a crypto-shredding: why, under what, and what was erased.
// It holds no personal data, so it stays readable forever.
type Erasure struct {
	Reason  string  `json:"reason,omitempty"`
	Trigger Trigger `json:"trigger"`
	// Request is an optional reference to the request that asked for the
	// erasure, such as a ticket number of a data subject request.
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

func (e Created) personalPart() any    { return e.Personal }
func (e *Created) personalTarget() any { return &e.Personal }
func (e *Created) shred()              { e.Personal = Personal{}; e.Shredded = true }
func (e Updated) personalPart() any    { return e.Values }
func (e *Updated) personalTarget() any { return &e.Values }
func (e *Updated) shred()              { e.Values = Personal{}; e.Shredded = true }

// eventKind is what the codec knows of one event type.
type eventKind struct {
	schema int
	new    func() Event
	// upcast turns the clear payload of an older schema into the next one.
	upcast map[int]func(json.RawMessage) (json.RawMessage, error)
}

var kinds = map[string]eventKind{
	TypeCreated:    {schema: 1, new: func() Event { return &Created{} }},
	TypeUpdated:    {schema: 1, new: func() Event { return &Updated{} }},
	TypeArchived:   {schema: 1, new: func() Event { return &Archived{} }},
	TypeUnarchived: {schema: 1, new: func() Event { return &Unarchived{} }},
	TypeTrashed:    {schema: 1, new: func() Event { return &Trashed{} }},
	TypeRestored:   {schema: 1, new: func() Event { return &Restored{} }},
	TypePurged:     {schema: 1, new: func() Event { return &Purged{} }},
	TypeAnonymized: {schema: 1, new: func() Event { return &Anonymized{} }},

	TypeTagsChanged:           {schema: 1, new: func() Event { return &TagsChanged{} }},
	TypeNoteAdded:             {schema: 1, new: func() Event { return &NoteAdded{} }},
	TypeListMembershipChanged: {schema: 1, new: func() Event { return &ListMembershipChanged{} }},
	TypeListMembershipRemoved: {schema: 1, new: func() Event { return &ListMembershipRemoved{} }},
	TypeLinked:                {schema: 1, new: func() Event { return &Linked{} }},
	TypeUnlinked:              {schema: 1, new: func() Event { return &Unlinked{} }},
	TypeMarkedSpam:            {schema: 1, new: func() Event { return &MarkedSpam{} }},
	TypeUnmarkedSpam:          {schema: 1, new: func() Event { return &UnmarkedSpam{} }},
}

// Encoded is an event split for storage: the clear payload, and the personal
// part still to be sealed (nil when the event has none).
type Encoded struct {
	Type     string
	Schema   int
	Data     []byte
	Personal []byte
}

// Encode splits e into its clear payload and its personal part.
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
	}
	return out, nil
}

// ErrCorruptEvent means a stored event cannot be decoded.
var ErrCorruptEvent = &Error{Code: "", Reason: "corrupt-event", Message: "a stored event cannot be decoded"}

// Decode rebuilds an event from its stored parts, upcasting older schemas.
// When shredded is true the personal part is gone and the event's personal
// fields read as shredded.
func Decode(typ string, schema int, data, personal []byte, shredded bool) (Event, error) {
	k, ok := kinds[typ]
	if !ok {
		return nil, Errorf(ErrCorruptEvent, "unknown event type %q", typ)
	}
	if schema < 1 || schema > k.schema {
		return nil, Errorf(ErrCorruptEvent, "%s: unsupported schema version %d", typ, schema)
	}
	for v := schema; v < k.schema; v++ {
		up := k.upcast[v]
		if up == nil {
			return nil, Errorf(ErrCorruptEvent, "%s: no upcaster from schema %d", typ, v)
		}
		var err error
		if data, err = up(data); err != nil {
			return nil, fmt.Errorf("upcast %s from schema %d: %w", typ, v, err)
		}
	}
	e := k.new()
	if err := json.Unmarshal(data, e); err != nil {
		return nil, Errorf(ErrCorruptEvent, "%s: payload: %v", typ, err)
	}
	if s, ok := e.(unsealed); ok {
		switch {
		case shredded:
			s.shred()
		case personal == nil:
			return nil, Errorf(ErrCorruptEvent, "%s: personal part missing", typ)
		default:
			if err := json.Unmarshal(personal, s.personalTarget()); err != nil {
				return nil, Errorf(ErrCorruptEvent, "%s: personal part: %v", typ, err)
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
	}
	return e
}

// HasPersonal reports whether events of type typ carry a sealed personal part.
func HasPersonal(typ string) bool {
	k, ok := kinds[typ]
	if !ok {
		return false
	}
	_, ok = k.new().(unsealed)
	return ok
}

// KnownType reports whether typ is the wire name of an event type.
func KnownType(typ string) bool {
	_, ok := kinds[typ]
	return ok
}
