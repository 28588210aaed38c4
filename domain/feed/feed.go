// Package feed is the public event schema: what systems outside the ledger
// (webhook receivers, change-feed readers) see of each change to a contact.
// It is a contract of its own, versioned and documented, apart from the
// internal encoding of the log: internal events map onto public types here
// (a restore is contact.restored, never contact.created), each names the
// operation that caused it and its origin, and personal fields appear only
// when the reader may receive them and the contact's key still exists.
//
// Events travel in the CloudEvents 1.0 JSON format (structured mode), built
// with the CloudEvents SDK. The package does no I/O: the ledger reads the
// log and the keys and hands each stored event over.
package feed

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
)

// SchemaVersion is the version of the public schema: every event carries it
// in data.schema_version, and DataSchema names it. A change that removes or
// renames a field, or changes its meaning, makes a new version; adding a
// field or a type does not.
const SchemaVersion = 1

// DataSchema is the URI of this version of the schema (the CloudEvents
// dataschema attribute).
const DataSchema = "https://contactledger.dev/schemas/events/v1"

// ContentType is the media type of one event in the CloudEvents JSON format.
const ContentType = "application/cloudevents+json"

// The public event types.
const (
	TypeCreated               = "contact.created"
	TypeUpdated               = "contact.updated"
	TypeArchived              = "contact.archived"
	TypeUnarchived            = "contact.unarchived"
	TypeTrashed               = "contact.trashed"
	TypeRestored              = "contact.restored"
	TypePurged                = "contact.purged"
	TypeAnonymized            = "contact.anonymized"
	TypeSpamMarked            = "contact.spam_marked"
	TypeSpamUnmarked          = "contact.spam_unmarked"
	TypeTagsChanged           = "contact.tags_changed"
	TypeNoteAdded             = "contact.note_added"
	TypeListMembershipChanged = "contact.list_membership_changed"
	TypeListMembershipRemoved = "contact.list_membership_removed"
	TypeLinked                = "contact.linked"
	TypeUnlinked              = "contact.unlinked"
	// TypeTest is a webhook's test message (`ledger webhooks test-send`),
	// never an event of the log.
	TypeTest = "webhook.test"
)

// publicTypes maps each internal event type to its public type.
var publicTypes = map[string]string{
	contact.TypeCreated:               TypeCreated,
	contact.TypeUpdated:               TypeUpdated,
	contact.TypeArchived:              TypeArchived,
	contact.TypeUnarchived:            TypeUnarchived,
	contact.TypeTrashed:               TypeTrashed,
	contact.TypeRestored:              TypeRestored,
	contact.TypePurged:                TypePurged,
	contact.TypeAnonymized:            TypeAnonymized,
	contact.TypeMarkedSpam:            TypeSpamMarked,
	contact.TypeUnmarkedSpam:          TypeSpamUnmarked,
	contact.TypeTagsChanged:           TypeTagsChanged,
	contact.TypeNoteAdded:             TypeNoteAdded,
	contact.TypeListMembershipChanged: TypeListMembershipChanged,
	contact.TypeListMembershipRemoved: TypeListMembershipRemoved,
	contact.TypeLinked:                TypeLinked,
	contact.TypeUnlinked:              TypeUnlinked,
}

// Types lists every public event type of the log, sorted.
func Types() []string {
	out := make([]string, 0, len(publicTypes))
	for _, t := range publicTypes {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// PublicType returns the public type of an internal event type.
func PublicType(internal string) (string, bool) {
	t, ok := publicTypes[internal]
	return t, ok
}

// InternalTypes returns the internal event types behind public types, for
// filtering the log. Errors: a kernel.CodeInvalid error naming field when
// a type is unknown.
func InternalTypes(field string, public []string) ([]string, error) {
	var out []string
	for _, p := range public {
		found := false
		for in, pub := range publicTypes {
			if pub == p {
				out, found = append(out, in), true
			}
		}
		if !found {
			return nil, kernel.Invalid(kernel.FieldError{Field: field, Message: "must be event types such as contact.created, separated by commas"})
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ErasureTypes are the internal types of erasure notices: every webhook
// subscription receives them, whatever its type filter, so that every
// recipient of a person's data is told to delete its copies (GDPR Art. 17(2), 19).
var ErasureTypes = []string{contact.TypePurged, contact.TypeAnonymized}

// IsErasure reports whether an internal event type is an erasure notice.
func IsErasure(internal string) bool { return slices.Contains(ErasureTypes, internal) }

// The origins of an event: what kind of operation caused it.
const (
	OriginUser       = "user"        // a single request of a person or a client
	OriginBulk       = "bulk"        // a bulk request (POST /v1/contacts/bulk)
	OriginRestoreJob = "restore_job" // a background restore job
	OriginImport     = "import"      // an import or sync of a file
	OriginRetention  = "retention"   // the workspace's retention policy
	OriginErasure    = "erasure"     // a single request to purge or anonymize
)

// The prefixes of operation ids, as ledger.Meta.Operation writes them into
// the causation id.
const (
	opBulk      = "bulk:"
	opImport    = "import:"
	opJob       = "job:"
	opRetention = "retention:"
)

// Origin derives an event's origin from its causation id (its operation),
// actor and type. legacyJob says the causation id is the bare id of a
// restore job: restore jobs wrote that before operation ids had prefixes.
func Origin(r kernel.Record, legacyJob bool) string {
	c := r.CausationID
	switch {
	case strings.HasPrefix(c, opBulk):
		return OriginBulk
	case strings.HasPrefix(c, opImport):
		return OriginImport
	case strings.HasPrefix(c, opJob), legacyJob:
		return OriginRestoreJob
	case strings.HasPrefix(c, opRetention), r.Actor.Principal == kernel.System("retention").Principal:
		return OriginRetention
	case IsErasure(r.Type):
		return OriginErasure
	}
	return OriginUser
}

// Event is the data of one public event.
type Event struct {
	SchemaVersion int    `json:"schema_version"`
	Type          string `json:"type"`
	ContactID     string `json:"contact_id"`
	Workspace     string `json:"workspace"`
	// Version is the contact's version after the event (1 for its creation).
	Version uint64 `json:"version"`
	// Position is the event's place in the log: an opaque, ordered token to
	// resume the change feed after (GET /v1/events?after=).
	Position   string       `json:"position"`
	OccurredAt time.Time    `json:"occurred_at"`
	Actor      kernel.Actor `json:"actor"`
	Operation  Operation    `json:"operation"`
	// Change holds the event's non-personal details.
	Change Change `json:"change"`
	// PersonalStatus says whether Personal is there: included, withheld
	// (the reader may not receive personal fields) or erased (the
	// contact's key is destroyed: nothing personal exists any more).
	PersonalStatus string `json:"personal_status"`
	// Personal holds the event's personal values; null unless included.
	Personal *Personal `json:"personal"`
}

// The values of Event.PersonalStatus.
const (
	PersonalIncluded = "included"
	PersonalWithheld = "withheld"
	PersonalErased   = "erased"
)

// Operation is what caused an event.
type Operation struct {
	// ID is the operation: the request id of a single request, or
	// bulk:<request id>, import:<import id>, job:<restore job id>,
	// retention:<sweep id>.
	ID     string `json:"id"`
	Origin string `json:"origin"`
	// RequestID is the request (or job) that wrote the event.
	RequestID string `json:"request_id"`
}

// Change is the non-personal part of an event; each type fills its own fields.
type Change struct {
	// Source is the system a created contact came from.
	Source string `json:"source,omitempty"`
	// Fields names the fields an update changed (custom fields as custom_fields.<key>).
	Fields []string `json:"fields,omitempty"`
	// From is the state a trashed contact left; To the state a restored one returns to.
	From contact.State `json:"from,omitempty"`
	To   contact.State `json:"to,omitempty"`
	// NoteID names an added note.
	NoteID string `json:"note_id,omitempty"`
	// ListStatus is a contact's new status on a list.
	ListStatus contact.ListStatus `json:"list_status,omitempty"`
	// LinkKind is the kind of record a contact was linked to or unlinked from.
	LinkKind string `json:"link_kind,omitempty"`
	// Erasure describes a purge or an anonymization.
	Erasure *Erasure `json:"erasure,omitempty"`
}

// Erasure is the notice of a purge or an anonymization: the receiver must
// delete every copy it keeps of the contact's personal data.
type Erasure struct {
	Notice        string          `json:"notice"`
	Trigger       contact.Trigger `json:"trigger"`
	Request       string          `json:"request,omitempty"`
	RetentionDays int             `json:"retention_days,omitempty"`
	// Erased names the personal fields that no longer exist anywhere in the ledger.
	Erased []string `json:"erased"`
}

// ErasureNotice is the text every erasure notice carries.
const ErasureNotice = "The contact's personal data was erased from the ledger; delete every copy you keep of it."

// Personal holds the personal values of an event. Free text that can name
// a person (reasons, tags, list names, link references, notes) is personal
// here too.
type Personal struct {
	Name         string            `json:"name,omitempty"`
	Email        string            `json:"email,omitempty"`
	Phone        string            `json:"phone,omitempty"`
	JobTitle     string            `json:"job_title,omitempty"`
	Address      string            `json:"address,omitempty"`
	CustomFields map[string]string `json:"custom_fields,omitempty"`
	ExternalID   string            `json:"external_id,omitempty"`
	// Tags are a created contact's tags.
	Tags        []string `json:"tags,omitempty"`
	TagsAdded   []string `json:"tags_added,omitempty"`
	TagsRemoved []string `json:"tags_removed,omitempty"`
	Reason      string   `json:"reason,omitempty"`
	NoteText    string   `json:"note_text,omitempty"`
	List        string   `json:"list,omitempty"`
	LinkRef     string   `json:"link_ref,omitempty"`
}

// Stored is one event of the log as the mapping needs it.
type Stored struct {
	Record kernel.Record
	// Event is the record decoded: with its personal part when Readable.
	Event contact.Event
	// Readable says the contact's key exists, so its personal values may be shown.
	Readable bool
	// Personal says the reader may receive personal fields.
	Personal bool
	// LegacyJob says the record's causation id is the bare id of a restore job.
	LegacyJob bool
}

// Map turns one stored event into its public form.
func Map(s Stored) (Event, error) {
	r := s.Record
	typ, ok := PublicType(r.Type)
	if !ok {
		return Event{}, fmt.Errorf("feed: no public type for %q", r.Type)
	}
	id, ok := contact.IDFromStream(r.Stream)
	if !ok {
		return Event{}, fmt.Errorf("feed: %s is not a contact stream", r.Stream)
	}
	e := Event{
		SchemaVersion: SchemaVersion, Type: typ, ContactID: id.String(), Workspace: r.Workspace, Version: r.Version,
		Position: r.Position.String(), OccurredAt: r.Time, Actor: r.Actor,
		Operation: Operation{ID: r.CausationID, Origin: Origin(r, s.LegacyJob), RequestID: r.CorrelationID},
	}
	var p Personal
	switch ev := s.Event.(type) {
	case contact.Created:
		e.Change.Source = ev.Source
		p = fromContact(ev.Personal)
		p.Tags = ev.Tags
	case contact.Updated:
		e.Change.Fields = ev.Fields
		p = fromContact(ev.Values)
	case contact.Archived:
		p.Reason = ev.Reason
	case contact.Unarchived:
		p.Reason = ev.Reason
	case contact.Trashed:
		e.Change.From, p.Reason = ev.From, ev.Reason
	case contact.Restored:
		e.Change.To, p.Reason = ev.To, ev.Reason
	case contact.Purged:
		e.Change.Erasure, p.Reason = erasure(ev.Erasure), ev.Reason
	case contact.Anonymized:
		e.Change.Erasure, p.Reason = erasure(ev.Erasure), ev.Reason
	case contact.MarkedSpam:
		p.Reason = ev.Reason
	case contact.UnmarkedSpam:
		p.Reason = ev.Reason
	case contact.TagsChanged:
		p.TagsAdded, p.TagsRemoved = ev.Added, ev.Removed
	case contact.NoteAdded:
		e.Change.NoteID, p.NoteText = ev.NoteID, ev.Text
	case contact.ListMembershipChanged:
		e.Change.ListStatus, p.List = ev.Status, ev.List
	case contact.ListMembershipRemoved:
		p.List = ev.List
	case contact.Linked:
		e.Change.LinkKind, p.LinkRef = ev.Kind, ev.Ref
	case contact.Unlinked:
		e.Change.LinkKind, p.LinkRef = ev.Kind, ev.Ref
	default:
		return Event{}, fmt.Errorf("feed: no mapping for %T", s.Event)
	}
	switch {
	case !s.Readable || IsErasure(r.Type):
		// An erasure destroys the key: nothing personal of it ever leaves.
		e.PersonalStatus = PersonalErased
	case !s.Personal:
		e.PersonalStatus = PersonalWithheld
	default:
		e.PersonalStatus, e.Personal = PersonalIncluded, &p
	}
	return e, nil
}

func fromContact(c contact.Personal) Personal {
	return Personal{Name: c.Name, Email: c.Email, Phone: c.Phone, JobTitle: c.JobTitle, Address: c.Address,
		CustomFields: c.CustomFields, ExternalID: c.ExternalID}
}

func erasure(er contact.Erasure) *Erasure {
	out := &Erasure{Notice: ErasureNotice, Trigger: er.Trigger, Request: er.Request, RetentionDays: er.RetentionDays, Erased: er.Erased}
	if out.Erased == nil {
		out.Erased = []string{}
	}
	return out
}

// Source returns the CloudEvents source of a workspace's events.
func Source(workspace string) string { return "/workspaces/" + url.PathEscape(workspace) }

// CloudEvent wraps e in a CloudEvents 1.0 envelope: id is the event's id
// (the same on every delivery and in the change feed, so receivers can
// drop repeats), subject the contact's id.
func CloudEvent(id string, e Event) (event.Event, error) {
	return envelope(id, e.Workspace, e.Type, e.ContactID, e.OccurredAt, e)
}

// envelope builds and validates a CloudEvent of the ledger.
func envelope(id, workspace, typ, subject string, at time.Time, data any) (event.Event, error) {
	ce := event.New(event.CloudEventsVersionV1)
	ce.SetID(id)
	ce.SetSource(Source(workspace))
	ce.SetType(typ)
	if subject != "" {
		ce.SetSubject(subject)
	}
	ce.SetTime(at)
	ce.SetDataSchema(DataSchema)
	if err := ce.SetData(event.ApplicationJSON, data); err != nil {
		return event.Event{}, fmt.Errorf("feed: event data: %w", err)
	}
	if err := ce.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("feed: %w", err)
	}
	return ce, nil
}

// Marshal encodes e as one CloudEvent in the JSON format.
func Marshal(id string, e Event) ([]byte, error) {
	ce, err := CloudEvent(id, e)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ce)
}

// Test is the data of a test message.
type Test struct {
	SchemaVersion  int       `json:"schema_version"`
	Type           string    `json:"type"`
	Workspace      string    `json:"workspace"`
	SubscriptionID string    `json:"subscription_id"`
	SentAt         time.Time `json:"sent_at"`
}

// MarshalTest encodes a test message for a subscription as a CloudEvent.
func MarshalTest(id, workspace, subscription string, at time.Time) ([]byte, error) {
	ce, err := envelope(id, workspace, TypeTest, "", at, Test{SchemaVersion: SchemaVersion, Type: TypeTest, Workspace: workspace, SubscriptionID: subscription, SentAt: at})
	if err != nil {
		return nil, err
	}
	return json.Marshal(ce)
}
