package contact

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// State is where a contact is in its lifecycle.
type State string

// The states of the lifecycle. A contact that does not exist yet has state "".
const (
	StateActive     State = "active"
	StateArchived   State = "archived"
	StateTrashed    State = "trashed"
	StatePurged     State = "purged"
	StateAnonymized State = "anonymized"
)

// AnonymizedName is what an anonymized contact shows instead of its name.
const AnonymizedName = "Deleted contact"

// Change is an event recorded by a command and not yet saved.
type Change struct {
	Event Event
	At    time.Time
	By    kernel.Actor
}

// Envelope is a stored event as the aggregate needs it to rebuild its state.
type Envelope struct {
	EventID   ulid.ULID
	Version   uint64
	At        time.Time
	By        kernel.Actor
	Workspace string
	Event     Event
	// Operation is the operation the event was part of: its causation id
	// (a bulk request, an import, a restore job, a retention sweep, or the
	// single request that caused it).
	Operation string
}

// Tombstone says who erased a contact, when and why.
type Tombstone struct {
	EventID string       `json:"event_id,omitempty"`
	Type    string       `json:"type"`
	At      time.Time    `json:"at"`
	By      kernel.Actor `json:"by"`
	Erasure Erasure      `json:"erasure"`
}

// Contact is the aggregate: it rebuilds its state from its events with one
// apply per event type, and its commands validate and then record events.
type Contact struct {
	id          ID
	workspace   string
	state       State
	trashedFrom State
	version     uint64
	saved       uint64
	createdAt   time.Time
	updatedAt   time.Time
	archivedAt  time.Time
	trashedAt   time.Time
	trashedBy   kernel.Actor
	trashReason string
	// trashedOp is the operation that moved the contact into trash.
	trashedOp string
	hold      *Hold
	personal  Personal
	shredded  bool
	source    string
	tags      []string
	lists     map[string]ListStatus
	links     []Link
	notes     []Note
	spam      bool
	spamAt    time.Time
	tombstone *Tombstone
	pending   []Change
	// op is the operation the commands now running are part of, recorded
	// in the envelopes they apply (see Within).
	op string
}

// Create starts a new contact in the active state.
func Create(id ID, workspace string, d Draft, by kernel.Actor, now time.Time) (*Contact, error) {
	var v validator
	v.personal(d.Personal)
	if !d.Personal.hasIdentity() {
		v.fail("name", "a contact needs at least one of name, email or phone")
	}
	if d.Source != "" && !sourcePattern.MatchString(d.Source) {
		v.fail("source.system", "is 1-32 characters of a-z, 0-9, '_', '.', '-'")
	}
	if d.Personal.ExternalID != "" && d.Source == "" {
		v.fail("source.system", "is required with an external_id")
	}
	tags := v.tags("tags", d.Tags)
	if err := v.err(); err != nil {
		return nil, err
	}
	c := &Contact{id: id, workspace: workspace}
	c.record(Created{Source: d.Source, Tags: tags, Personal: d.Personal.Clone()}, by, now)
	return c, nil
}

// Replay rebuilds a contact from its history, which must start at version 1
// and have no gaps.
func Replay(id ID, history []Envelope) (*Contact, error) {
	c := &Contact{id: id}
	for _, e := range history {
		if e.Version != c.version+1 {
			return nil, fmt.Errorf("replay %s: event version %d after %d", id, e.Version, c.version)
		}
		if err := c.apply(e); err != nil {
			return nil, fmt.Errorf("replay %s: %w", id, err)
		}
	}
	if c.version == 0 {
		return nil, kernel.ErrNotFound
	}
	c.saved = c.version
	return c, nil
}

// Apply applies one more stored event to a contact rebuilt earlier (by
// Replay or FromSnapshot); projections use it to keep their rows current.
func (c *Contact) Apply(e Envelope) error {
	if e.Version != c.version+1 {
		return fmt.Errorf("apply to %s: event version %d after %d", c.id, e.Version, c.version)
	}
	if err := c.apply(e); err != nil {
		return err
	}
	c.saved = c.version
	return nil
}

func (c *Contact) apply(e Envelope) error {
	if c.state == StatePurged {
		return fmt.Errorf("%s after the tombstone", e.Event.EventType())
	}
	if _, ok := e.Event.(Created); !ok && c.state == "" {
		return fmt.Errorf("%s before ContactCreated", e.Event.EventType())
	}
	switch ev := e.Event.(type) {
	case Created:
		if c.state != "" {
			return fmt.Errorf("ContactCreated twice")
		}
		c.state, c.workspace, c.createdAt = StateActive, e.Workspace, e.At
		c.source, c.tags = ev.Source, slices.Clone(ev.Tags)
		c.personal, c.shredded = ev.Personal.Clone(), ev.Shredded
	case Updated:
		if ev.Shredded {
			c.shredded = true
		} else if !c.shredded {
			c.personal.apply(ev.Fields, ev.Values)
		}
	case Archived:
		c.state, c.archivedAt = StateArchived, e.At
	case Unarchived:
		c.state, c.archivedAt = StateActive, time.Time{}
	case Trashed:
		c.trashedFrom, c.state = c.state, StateTrashed
		c.trashedAt, c.trashedBy, c.trashReason, c.trashedOp = e.At, e.By, ev.Reason, e.Operation
	case Restored:
		c.state = ev.To
		c.trashedFrom, c.trashedAt, c.trashedBy, c.trashReason, c.trashedOp = "", time.Time{}, kernel.Actor{}, "", ""
	case Purged:
		c.erase(StatePurged, e, ev.Erasure)
	case Anonymized:
		c.erase(StateAnonymized, e, ev.Erasure)
	default:
		if c.applyHold(e) {
			break
		}
		if ok, err := c.applyAssociation(e); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("unknown event %T", e.Event)
		}
	}
	c.version = e.Version
	c.updatedAt = e.At
	return nil
}

func (c *Contact) erase(s State, e Envelope, er Erasure) {
	c.state = s
	c.personal, c.shredded = Personal{}, true
	c.trashedFrom, c.trashedAt, c.trashedBy, c.trashReason, c.trashedOp = "", time.Time{}, kernel.Actor{}, "", ""
	// A hold ends with the contact (only a re-applied erasure reaches a held one).
	c.hold = nil
	// Notes, tags, list names and link ids are free text, so personal: an
	// erasure leaves none of them readable, in a purge and in an anonymized
	// shell alike (the shell keeps its id, dates, source and spam mark, so
	// reports keep their counts). The erasure's own reason is free text too:
	// it is sealed under the key the erasure destroys, and no state shows it.
	c.notes, c.lists, c.tags, c.links = nil, nil, nil, nil
	if s == StatePurged {
		c.spam, c.spamAt = false, time.Time{}
	}
	er.Reason = ""
	c.tombstone = &Tombstone{Type: e.Event.EventType(), At: e.At, By: e.By, Erasure: er}
	if e.EventID != (ulid.ULID{}) {
		c.tombstone.EventID = e.EventID.String()
	}
}

func (c *Contact) record(e Event, by kernel.Actor, now time.Time) {
	c.pending = append(c.pending, Change{Event: e, At: now, By: by})
	// apply cannot fail here: commands only record events their checks allow.
	if err := c.apply(Envelope{Version: c.version + 1, At: now, By: by, Workspace: c.workspace, Event: e, Operation: c.op}); err != nil {
		panic("contact: command recorded an event it cannot apply: " + err.Error())
	}
}

// EntersState returns the state a contact is in after event e, when e
// decides it on its own (ContactUpdated, for one, leaves the state as it was).
func EntersState(e Event) (State, bool) {
	switch ev := e.(type) {
	case Created, Unarchived:
		return StateActive, true
	case Archived:
		return StateArchived, true
	case Trashed:
		return StateTrashed, true
	case Restored:
		return ev.To, true
	case Purged:
		return StatePurged, true
	case Anonymized:
		return StateAnonymized, true
	}
	return "", false
}

// Within names the operation the next commands are part of, as the log
// will record it (their events' causation id), so the state they leave
// says which operation trashed the contact.
func (c *Contact) Within(op string) { c.op = op }

// Changes returns the events recorded since the contact was loaded.
func (c *Contact) Changes() []Change { return slices.Clone(c.pending) }

// Saved returns the version the contact had when it was loaded: the expected
// version for appending its changes (0 for a new contact).
func (c *Contact) Saved() uint64 { return c.saved }

func (c *Contact) mustBeLive(verb string) error {
	switch c.state {
	case StatePurged:
		return kernel.Errorf(ErrPurged, "contact was permanently deleted; it cannot be %s", verb)
	case StateAnonymized:
		return kernel.Errorf(ErrTransition, "contact was anonymized; it cannot be %s", verb)
	}
	return nil
}

// Update changes personal fields of an active contact.
func (c *Contact) Update(p Patch, by kernel.Actor, now time.Time) error {
	if err := c.mustBeLive("edited"); err != nil {
		if c.state == StateAnonymized {
			return kernel.Errorf(ErrNotEditable, "contact was anonymized; it cannot be edited")
		}
		return err
	}
	if c.state != StateActive {
		return kernel.Errorf(ErrNotEditable, "contact is %s; only active contacts can be edited", c.state)
	}
	return c.update(p, by, now)
}

// update records the changes of a patch, if any; the caller has checked the state.
func (c *Contact) update(p Patch, by kernel.Actor, now time.Time) error {
	var v validator
	next := c.personal.Clone()
	var values Personal
	var fields []string
	set := func(name string, ptr *string, cur *string, dst *string) {
		if ptr != nil && *ptr != *cur {
			fields = append(fields, name)
			*dst = *ptr
			*cur = *ptr
		}
	}
	set("name", p.Name, &next.Name, &values.Name)
	set("email", p.Email, &next.Email, &values.Email)
	set("phone", p.Phone, &next.Phone, &values.Phone)
	set("job_title", p.JobTitle, &next.JobTitle, &values.JobTitle)
	set("address", p.Address, &next.Address, &values.Address)
	keys := make([]string, 0, len(p.CustomFields))
	for k := range p.CustomFields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v.customKey("custom_fields", k)
		val := p.CustomFields[k]
		old, had := next.CustomFields[k]
		switch {
		case val == nil && had:
			delete(next.CustomFields, k)
		case val != nil && (!had || old != *val):
			if next.CustomFields == nil {
				next.CustomFields = map[string]string{}
			}
			next.CustomFields[k] = *val
			if values.CustomFields == nil {
				values.CustomFields = map[string]string{}
			}
			values.CustomFields[k] = *val
		default:
			continue
		}
		fields = append(fields, "custom_fields."+k)
	}
	v.personal(next)
	if !next.hasIdentity() {
		v.fail("name", "a contact needs at least one of name, email or phone")
	}
	if err := v.err(); err != nil {
		return err
	}
	if len(fields) == 0 {
		return nil
	}
	c.record(Updated{Fields: fields, Values: values}, by, now)
	return nil
}

// Archive moves an active contact to the archive.
func (c *Contact) Archive(reason string, by kernel.Actor, now time.Time) error {
	if err := c.check("archived", reason); err != nil {
		return err
	}
	if c.state != StateActive {
		return kernel.Errorf(ErrTransition, "contact is %s; only active contacts can be archived", c.state)
	}
	c.record(Archived{Reason: reason}, by, now)
	return nil
}

// Unarchive brings an archived contact back to active.
func (c *Contact) Unarchive(reason string, by kernel.Actor, now time.Time) error {
	if err := c.check("unarchived", reason); err != nil {
		return err
	}
	if c.state != StateArchived {
		return kernel.Errorf(ErrTransition, "contact is %s; only archived contacts can be unarchived", c.state)
	}
	c.record(Unarchived{Reason: reason}, by, now)
	return nil
}

// Trash moves an active or archived contact into trash, as the policy allows.
func (c *Contact) Trash(reason string, p Policy, by kernel.Actor, now time.Time) error {
	if err := c.check("trashed", reason); err != nil {
		return err
	}
	switch {
	case c.state == StateTrashed:
		return kernel.Errorf(ErrTransition, "contact is already in trash")
	case c.state != StateActive && c.state != StateArchived:
		return kernel.Errorf(ErrTransition, "contact is %s; only active or archived contacts can be trashed", c.state)
	case p.Protects(c.source):
		return kernel.Errorf(ErrProtectedSource, "contact is synced from %q, a protected source of this workspace; delete it there", c.source)
	case p.s.RequireArchiveBeforeTrash && c.state == StateActive:
		return kernel.Errorf(ErrArchiveFirst, "the workspace policy requires archiving a contact before moving it to trash")
	}
	c.record(Trashed{Reason: reason, From: c.state}, by, now)
	return nil
}

// Restore brings a trashed contact back to the state it was trashed from,
// with its whole history, if the policy lets the actor's role restore.
func (c *Contact) Restore(reason string, p Policy, by kernel.Actor, now time.Time) error {
	return c.restore(reason, false, p, by, now)
}

// RestoreKeepingBoth restores like Restore and records that the caller
// chose to keep both this contact and a live one that holds its email or
// phone now (on_conflict: keep_both), so no identity conflict refuses it.
func (c *Contact) RestoreKeepingBoth(reason string, p Policy, by kernel.Actor, now time.Time) error {
	return c.restore(reason, true, p, by, now)
}

func (c *Contact) restore(reason string, keepBoth bool, p Policy, by kernel.Actor, now time.Time) error {
	if err := c.check("restored", reason); err != nil {
		return err
	}
	if c.state != StateTrashed {
		return kernel.Errorf(ErrTransition, "contact is %s; only contacts in trash can be restored", c.state)
	}
	if !p.MayRestore(by.Role) {
		return kernel.Errorf(kernel.ErrRoleNotAllowed, "the workspace policy lets only admins restore contacts")
	}
	c.record(Restored{Reason: reason, To: c.trashedFrom, KeepBoth: keepBoth}, by, now)
	return nil
}

// Purge permanently deletes a trashed contact: the tombstone stays in the
// stream, and the caller must destroy the data key named keyID.
func (c *Contact) Purge(er Erasure, p Policy, by kernel.Actor, now time.Time) error {
	if err := c.eraseCheck("purged", er, p); err != nil {
		return err
	}
	if er.Trigger == TriggerRetention {
		if days := p.RetentionDays(); days == 0 || now.Before(c.PurgeDue(p)) {
			return kernel.Errorf(ErrTransition, "contact is not past the workspace's retention of %d days in trash", days)
		}
		er.RetentionDays = p.RetentionDays()
	}
	er.Erased = c.erasedFields()
	c.record(Purged{er}, by, now)
	return nil
}

// Anonymize destroys a trashed contact's personal data but keeps a
// non-personal shell, so that reports and related records keep their counts.
func (c *Contact) Anonymize(er Erasure, p Policy, by kernel.Actor, now time.Time) error {
	if err := c.eraseCheck("anonymized", er, p); err != nil {
		return err
	}
	er.Erased = c.erasedFields()
	c.record(Anonymized{er}, by, now)
	return nil
}

func (c *Contact) eraseCheck(verb string, er Erasure, p Policy) error {
	if err := c.check(verb, er.Reason); err != nil {
		return err
	}
	var v validator
	v.clearText("request", er.Request)
	if er.Trigger != TriggerRequest && er.Trigger != TriggerRetention {
		v.fail("trigger", "must be request or retention")
	}
	if er.KeyID == "" {
		v.fail("key_id", "is required")
	}
	if err := v.err(); err != nil {
		return err
	}
	if c.state != StateTrashed {
		return kernel.Errorf(ErrTransition, "contact is %s; only contacts in trash can be %s (move it to trash first)", c.state, verb)
	}
	if err := c.heldCheck(); err != nil {
		return err
	}
	if !p.s.PurgeAllowed {
		return kernel.Errorf(ErrPurgeDisabled, "the workspace policy does not allow contacts to be %s", verb)
	}
	return nil
}

// Reerase records again an erasure proven to have happened (by a signed
// receipt) that a restored backup undid: the log lost its tombstone. It is
// allowed from any state, since the erasure happened whatever the restored
// log says; a contact already erased records nothing and reports false.
// typ is TypePurged or TypeAnonymized.
func (c *Contact) Reerase(typ string, er Erasure, by kernel.Actor, now time.Time) (bool, error) {
	switch {
	case c.state == "":
		return false, kernel.ErrNotFound
	case c.state == StatePurged || c.state == StateAnonymized:
		return false, nil
	}
	var v validator
	v.clearText("request", er.Request)
	if er.Trigger != TriggerRequest && er.Trigger != TriggerRetention {
		v.fail("trigger", "must be request or retention")
	}
	if typ != TypePurged && typ != TypeAnonymized {
		v.fail("type", "must be ContactPurged or ContactAnonymized")
	}
	if err := v.err(); err != nil {
		return false, err
	}
	er.Reason = ""
	if er.Erased == nil {
		er.Erased = []string{}
	}
	if typ == TypePurged {
		c.record(Purged{er}, by, now)
	} else {
		c.record(Anonymized{er}, by, now)
	}
	return true, nil
}

// erasedFields lists the personal fields the contact had, which an erasure makes unreadable.
func (c *Contact) erasedFields() []string {
	if c.shredded {
		return []string{}
	}
	p := c.personal
	var out []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"name", p.Name != ""}, {"email", p.Email != ""}, {"phone", p.Phone != ""},
		{"job_title", p.JobTitle != ""}, {"address", p.Address != ""},
		{"custom_fields", len(p.CustomFields) > 0}, {"external_id", p.ExternalID != ""},
	} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

// check refuses any command on an erased contact and validates the reason.
func (c *Contact) check(verb, reason string) error {
	if err := c.mustBeLive(verb); err != nil {
		return err
	}
	if c.state == "" {
		return kernel.ErrNotFound
	}
	return ValidateReason(reason)
}

// ID returns the contact's id.
func (c *Contact) ID() ID { return c.id }

// Workspace returns the workspace the contact belongs to.
func (c *Contact) Workspace() string { return c.workspace }

// State returns the contact's lifecycle state.
func (c *Contact) State() State { return c.state }

// Version returns the number of events in the contact's stream, pending ones included.
func (c *Contact) Version() uint64 { return c.version }

// Source returns the system the contact came from, if any.
func (c *Contact) Source() string { return c.source }

// Personal returns a copy of the personal fields; they are empty when shredded.
func (c *Contact) Personal() Personal { return c.personal.Clone() }

// Shredded reports whether the contact's personal data has been erased.
func (c *Contact) Shredded() bool { return c.shredded }

// Tombstone returns the erasure record of a purged or anonymized contact, else nil.
func (c *Contact) Tombstone() *Tombstone { return c.tombstone }

// PurgeDue returns when retention may purge the trashed contact under
// policy p; the zero time when it is not in trash or retention is off.
func (c *Contact) PurgeDue(p Policy) time.Time {
	if c.state != StateTrashed || p.RetentionDays() == 0 {
		return time.Time{}
	}
	return c.trashedAt.AddDate(0, 0, p.RetentionDays())
}

// TrashedAt returns when the contact entered trash (zero when not trashed).
func (c *Contact) TrashedAt() time.Time { return c.trashedAt }

// Snapshot is the state of a contact as read models and the API show it.
type Snapshot struct {
	ID          ID            `json:"id"`
	Workspace   string        `json:"workspace"`
	State       State         `json:"state"`
	Version     uint64        `json:"version"`
	CreatedAt   time.Time     `json:"created_at"`
	UpdatedAt   time.Time     `json:"updated_at"`
	ArchivedAt  *time.Time    `json:"archived_at,omitempty"`
	TrashedAt   *time.Time    `json:"trashed_at,omitempty"`
	TrashedBy   *kernel.Actor `json:"trashed_by,omitempty"`
	TrashedFrom State         `json:"trashed_from,omitempty"`
	TrashReason string        `json:"trash_reason,omitempty"`
	// TrashedOperation is the operation that moved the contact into trash
	// (a bulk request, an import, a restore job or a single request).
	TrashedOperation string   `json:"trashed_operation,omitempty"`
	Personal         Personal `json:"personal"`
	Shredded         bool     `json:"shredded,omitempty"`
	Source           string   `json:"source,omitempty"`
	Tags             []string `json:"tags"`
	// Lists maps each list the contact is on to its status there.
	Lists map[string]ListStatus `json:"lists"`
	// Links are the records the contact is linked to, by kind then id.
	Links     []Link     `json:"links"`
	NoteCount int        `json:"note_count"`
	Spam      bool       `json:"spam,omitempty"`
	SpamAt    *time.Time `json:"spam_at,omitempty"`
	Tombstone *Tombstone `json:"tombstone,omitempty"`
	// Hold is the contact's legal hold, if one stands.
	Hold *Hold `json:"hold,omitempty"`
}

// Snapshot returns the contact's current state.
func (c *Contact) Snapshot() Snapshot {
	s := Snapshot{
		ID: c.id, Workspace: c.workspace, State: c.state, Version: c.version,
		CreatedAt: c.createdAt, UpdatedAt: c.updatedAt, TrashedFrom: c.trashedFrom, TrashReason: c.trashReason,
		Personal: c.personal.Clone(), Shredded: c.shredded, Source: c.source, Tags: slices.Clone(c.tags),
		Tombstone: c.tombstone, Lists: maps.Clone(c.lists), Links: slices.Clone(c.links), NoteCount: len(c.notes), Spam: c.spam,
		TrashedOperation: c.trashedOp, Hold: c.CurrentHold(),
	}
	if s.Tags == nil {
		s.Tags = []string{}
	}
	if s.Lists == nil {
		s.Lists = map[string]ListStatus{}
	}
	if s.Links == nil {
		s.Links = []Link{}
	}
	if c.spam {
		t := c.spamAt
		s.SpamAt = &t
	}
	if !c.archivedAt.IsZero() {
		t := c.archivedAt
		s.ArchivedAt = &t
	}
	if !c.trashedAt.IsZero() {
		t, by := c.trashedAt, c.trashedBy
		s.TrashedAt, s.TrashedBy = &t, &by
	}
	if c.state == StateAnonymized {
		s.Personal = Personal{Name: AnonymizedName}
	}
	return s
}

// FromSnapshot rebuilds a contact from a snapshot taken with Snapshot, so
// that later events can be applied to it.
func FromSnapshot(s Snapshot) *Contact {
	c := &Contact{
		id: s.ID, workspace: s.Workspace, state: s.State, version: s.Version, saved: s.Version,
		createdAt: s.CreatedAt, updatedAt: s.UpdatedAt, trashedFrom: s.TrashedFrom, trashReason: s.TrashReason,
		personal: s.Personal.Clone(), shredded: s.Shredded, source: s.Source, tags: slices.Clone(s.Tags),
		tombstone: s.Tombstone, lists: maps.Clone(s.Lists), links: slices.Clone(s.Links), spam: s.Spam,
		trashedOp: s.TrashedOperation,
		// Notes are not part of a snapshot: only their count, kept as placeholders.
		notes: make([]Note, s.NoteCount),
	}
	if len(c.tags) == 0 {
		c.tags = nil
	}
	if len(c.lists) == 0 {
		c.lists = nil
	}
	if len(c.links) == 0 {
		c.links = nil
	}
	if len(c.notes) == 0 {
		c.notes = nil
	}
	if s.SpamAt != nil {
		c.spamAt = *s.SpamAt
	}
	if s.Hold != nil {
		h := *s.Hold
		c.hold = &h
	}
	if s.ArchivedAt != nil {
		c.archivedAt = *s.ArchivedAt
	}
	if s.TrashedAt != nil {
		c.trashedAt = *s.TrashedAt
	}
	if s.TrashedBy != nil {
		c.trashedBy = *s.TrashedBy
	}
	if s.State == StateAnonymized {
		c.personal = Personal{}
	}
	return c
}

// HasTag reports whether the contact carries tag t.
func (s Snapshot) HasTag(t string) bool { return slices.Contains(s.Tags, strings.TrimSpace(t)) }
