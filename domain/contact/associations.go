package contact

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// ListStatus is a contact's status on a mailing list.
type ListStatus string

// The statuses of a list membership.
const (
	ListSubscribed   ListStatus = "subscribed"
	ListUnsubscribed ListStatus = "unsubscribed"
	ListBounced      ListStatus = "bounced"
	ListUnconfirmed  ListStatus = "unconfirmed"
)

// ParseListStatus parses one of the list statuses.
func ParseListStatus(s string) (ListStatus, error) {
	switch st := ListStatus(s); st {
	case ListSubscribed, ListUnsubscribed, ListBounced, ListUnconfirmed:
		return st, nil
	}
	return "", kernel.Invalid(kernel.FieldError{Field: "status", Message: "must be subscribed, unsubscribed, bounced or unconfirmed"})
}

// LinkKinds are the kinds of record a contact can be linked to.
var LinkKinds = []string{"deal", "account", "ticket", "task"}

// Link ties a contact to a record elsewhere (a deal, an account, a ticket,
// a task), by that record's id. It holds no personal data.
type Link struct {
	Kind string `json:"kind"`
	Ref  string `json:"id"`
}

// Note is a free-text note on a contact. Its text is personal data: it is
// sealed under the contact's key and reads as shredded after an erasure.
type Note struct {
	ID       string       `json:"id"`
	Text     string       `json:"text,omitempty"`
	At       time.Time    `json:"at"`
	By       kernel.Actor `json:"by"`
	Shredded bool         `json:"shredded,omitempty"`
}

// Limits on associations.
const (
	MaxLists = 100
	MaxLinks = 200
	MaxNotes = 1000
)

var (
	listPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	refPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
)

// ValidateList checks a list name: 1-64 characters of letters, digits, '_', '.', '-'.
func ValidateList(name string) error {
	if !listPattern.MatchString(name) {
		return kernel.Invalid(kernel.FieldError{Field: "list", Message: "is 1-64 characters of letters, digits, '_', '.' and '-'"})
	}
	return nil
}

// ValidateLink checks a link's kind and the id of the record it points to.
func ValidateLink(l Link) error {
	var v validator
	if !slices.Contains(LinkKinds, l.Kind) {
		v.fail("kind", "must be deal, account, ticket or task")
	}
	if !refPattern.MatchString(l.Ref) {
		v.fail("id", "is 1-128 characters of letters, digits, '_', '.', ':' and '-'")
	}
	return v.err()
}

// TagsChanged adds and removes tags.
type TagsChanged struct {
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// NoteAdded appends a note; its text is sealed.
type NoteAdded struct {
	NoteID   string `json:"note_id"`
	Text     string `json:"-"`
	Shredded bool   `json:"-"`
}

// ListMembershipChanged sets the contact's status on a list (joining it if needed).
type ListMembershipChanged struct {
	List   string     `json:"list"`
	Status ListStatus `json:"status"`
}

// ListMembershipRemoved takes the contact off a list.
type ListMembershipRemoved struct {
	List string `json:"list"`
}

// Linked ties the contact to a record.
type Linked struct{ Link }

// Unlinked unties the contact from a record.
type Unlinked struct{ Link }

// MarkedSpam marks the contact (and so its email and phone) as spam.
type MarkedSpam struct {
	Reason string `json:"reason,omitempty"`
}

// UnmarkedSpam lifts a spam mark.
type UnmarkedSpam struct {
	Reason string `json:"reason,omitempty"`
}

// The wire names of the association events.
const (
	TypeTagsChanged           = "ContactTagsChanged"
	TypeNoteAdded             = "ContactNoteAdded"
	TypeListMembershipChanged = "ContactListMembershipChanged"
	TypeListMembershipRemoved = "ContactListMembershipRemoved"
	TypeLinked                = "ContactLinked"
	TypeUnlinked              = "ContactUnlinked"
	TypeMarkedSpam            = "ContactMarkedSpam"
	TypeUnmarkedSpam          = "ContactUnmarkedSpam"
)

func (TagsChanged) EventType() string           { return TypeTagsChanged }
func (NoteAdded) EventType() string             { return TypeNoteAdded }
func (ListMembershipChanged) EventType() string { return TypeListMembershipChanged }
func (ListMembershipRemoved) EventType() string { return TypeListMembershipRemoved }
func (Linked) EventType() string                { return TypeLinked }
func (Unlinked) EventType() string              { return TypeUnlinked }
func (MarkedSpam) EventType() string            { return TypeMarkedSpam }
func (UnmarkedSpam) EventType() string          { return TypeUnmarkedSpam }

// From schema 2 on, the free text of the association events (tags, list
// names, link ids, spam reasons) is sealed under the contact's key; schema 1
// events keep theirs in clear. Their clear payloads keep only what is not
// free text: a list status, a link's kind.

// tagsPart is the sealed part of ContactTagsChanged.
type tagsPart struct {
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

func (e TagsChanged) personalPart() any            { return tagsPart(e) }
func (e *TagsChanged) personalTarget() any         { return (*tagsPart)(e) }
func (e *TagsChanged) shred()                      { e.Added, e.Removed = nil, nil }
func (e TagsChanged) MarshalJSON() ([]byte, error) { return []byte("{}"), nil }

// listPart is the sealed part of the list membership events.
type listPart struct {
	List string `json:"list"`
}

// listTarget decodes a sealed listPart into an event's list name.
type listTarget struct{ list *string }

func (t *listTarget) UnmarshalJSON(b []byte) error {
	var p listPart
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*t.list = p.List
	return nil
}

func (e ListMembershipChanged) personalPart() any    { return listPart{e.List} }
func (e *ListMembershipChanged) personalTarget() any { return &listTarget{&e.List} }
func (e *ListMembershipChanged) shred()              { e.List = "" }

// MarshalJSON writes the clear payload of the current schema: the list's name is sealed.
func (e ListMembershipChanged) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Status ListStatus `json:"status"`
	}{e.Status})
}

func (e ListMembershipRemoved) personalPart() any            { return listPart(e) }
func (e *ListMembershipRemoved) personalTarget() any         { return &listTarget{&e.List} }
func (e *ListMembershipRemoved) shred()                      { e.List = "" }
func (e ListMembershipRemoved) MarshalJSON() ([]byte, error) { return []byte("{}"), nil }

// linkPart is the sealed part of the link events: the id of the record.
type linkPart struct {
	Ref string `json:"id"`
}

// linkTarget decodes a sealed linkPart into an event's link.
type linkTarget struct{ ref *string }

func (t *linkTarget) UnmarshalJSON(b []byte) error {
	var p linkPart
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*t.ref = p.Ref
	return nil
}

// linkClear is the clear payload of the link events of schema 2.
func linkClear(l Link) ([]byte, error) {
	return json.Marshal(struct {
		Kind string `json:"kind"`
	}{l.Kind})
}

func (e Linked) personalPart() any              { return linkPart{e.Ref} }
func (e *Linked) personalTarget() any           { return &linkTarget{&e.Ref} }
func (e *Linked) shred()                        { e.Ref = "" }
func (e Linked) MarshalJSON() ([]byte, error)   { return linkClear(e.Link) }
func (e Unlinked) personalPart() any            { return linkPart{e.Ref} }
func (e *Unlinked) personalTarget() any         { return &linkTarget{&e.Ref} }
func (e *Unlinked) shred()                      { e.Ref = "" }
func (e Unlinked) MarshalJSON() ([]byte, error) { return linkClear(e.Link) }

func (e MarkedSpam) personalPart() any              { return reasonPart(e) }
func (e *MarkedSpam) personalTarget() any           { return &reasonTarget{&e.Reason} }
func (e *MarkedSpam) shred()                        { e.Reason = "" }
func (e MarkedSpam) MarshalJSON() ([]byte, error)   { return []byte("{}"), nil }
func (e UnmarkedSpam) personalPart() any            { return reasonPart(e) }
func (e *UnmarkedSpam) personalTarget() any         { return &reasonTarget{&e.Reason} }
func (e *UnmarkedSpam) shred()                      { e.Reason = "" }
func (e UnmarkedSpam) MarshalJSON() ([]byte, error) { return []byte("{}"), nil }

// notePersonal is the sealed part of NoteAdded.
type notePersonal struct {
	Text string `json:"text"`
}

func (e NoteAdded) personalPart() any { return notePersonal{Text: e.Text} }
func (e *NoteAdded) personalTarget() any {
	return (*notePersonalTarget)(e)
}
func (e *NoteAdded) shred() { e.Text = ""; e.Shredded = true }

// notePersonalTarget decodes the sealed part straight into a NoteAdded.
type notePersonalTarget NoteAdded

func (t *notePersonalTarget) UnmarshalJSON(b []byte) error {
	var p notePersonal
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	t.Text = p.Text
	return nil
}

// editable refuses association changes on contacts that are not active.
func (c *Contact) editable(verb string) error {
	if err := c.mustBeLive(verb); err != nil {
		if c.state == StateAnonymized {
			return kernel.Errorf(ErrNotEditable, "contact was anonymized; it cannot be %s", verb)
		}
		return err
	}
	if c.state == "" {
		return kernel.ErrNotFound
	}
	if c.state != StateActive {
		return kernel.Errorf(ErrNotEditable, "contact is %s; only active contacts can be %s", c.state, verb)
	}
	return nil
}

// ChangeTags adds and removes tags of an active contact. Adding a tag it
// has or removing one it lacks changes nothing; a call that changes nothing
// records nothing.
func (c *Contact) ChangeTags(add, remove []string, by kernel.Actor, now time.Time) error {
	if err := c.editable("tagged"); err != nil {
		return err
	}
	var v validator
	add, remove = v.tags("add", add), v.tags("remove", remove)
	for _, t := range add {
		if slices.Contains(remove, t) {
			v.fail("remove", "a tag cannot be added and removed at once")
			break
		}
	}
	if err := v.err(); err != nil {
		return err
	}
	var ev TagsChanged
	for _, t := range add {
		if !slices.Contains(c.tags, t) {
			ev.Added = append(ev.Added, t)
		}
	}
	for _, t := range remove {
		if slices.Contains(c.tags, t) {
			ev.Removed = append(ev.Removed, t)
		}
	}
	if n := len(c.tags) + len(ev.Added) - len(ev.Removed); n > MaxTags {
		return kernel.Invalid(kernel.FieldError{Field: "add", Message: "a contact has at most " + strconv.Itoa(MaxTags) + " tags"})
	}
	if len(ev.Added) == 0 && len(ev.Removed) == 0 {
		return nil
	}
	c.record(ev, by, now)
	return nil
}

// AddNote appends a note to an active contact and returns its id.
func (c *Contact) AddNote(text string, by kernel.Actor, now time.Time) (string, error) {
	if err := c.editable("annotated"); err != nil {
		return "", err
	}
	var v validator
	v.text("text", text, MaxNoteLen, true)
	if len([]rune(text)) == 0 || isBlank(text) {
		v.fail("text", "must not be empty")
	}
	if err := v.err(); err != nil {
		return "", err
	}
	if len(c.notes) >= MaxNotes {
		return "", kernel.Invalid(kernel.FieldError{Field: "text", Message: "a contact has at most " + strconv.Itoa(MaxNotes) + " notes"})
	}
	id := ulid.Make().String()
	c.record(NoteAdded{NoteID: id, Text: text}, by, now)
	return id, nil
}

func isBlank(s string) bool {
	for _, r := range s {
		if r != ' ' && r != '\n' && r != '\t' && r != '\r' {
			return false
		}
	}
	return true
}

// SetList puts an active contact on a list with a status, or changes its status there.
func (c *Contact) SetList(list string, status ListStatus, by kernel.Actor, now time.Time) error {
	if err := c.editable("added to lists"); err != nil {
		return err
	}
	if err := ValidateList(list); err != nil {
		return err
	}
	if _, err := ParseListStatus(string(status)); err != nil {
		return err
	}
	cur, had := c.lists[list]
	if had && cur == status {
		return nil
	}
	if !had && len(c.lists) >= MaxLists {
		return kernel.Invalid(kernel.FieldError{Field: "list", Message: "a contact is on at most " + strconv.Itoa(MaxLists) + " lists"})
	}
	c.record(ListMembershipChanged{List: list, Status: status}, by, now)
	return nil
}

// RemoveList takes an active contact off a list. Errors: ErrNotFound when it is not on it.
func (c *Contact) RemoveList(list string, by kernel.Actor, now time.Time) error {
	if err := c.editable("removed from lists"); err != nil {
		return err
	}
	if err := ValidateList(list); err != nil {
		return err
	}
	if _, had := c.lists[list]; !had {
		return kernel.Errorf(kernel.ErrNotFound, "the contact is not on this list")
	}
	c.record(ListMembershipRemoved{List: list}, by, now)
	return nil
}

// AddLink links an active contact to a record. Linking twice changes nothing.
func (c *Contact) AddLink(l Link, by kernel.Actor, now time.Time) error {
	if err := c.editable("linked"); err != nil {
		return err
	}
	if err := ValidateLink(l); err != nil {
		return err
	}
	if slices.Contains(c.links, l) {
		return nil
	}
	if len(c.links) >= MaxLinks {
		return kernel.Invalid(kernel.FieldError{Field: "id", Message: "a contact has at most " + strconv.Itoa(MaxLinks) + " links"})
	}
	c.record(Linked{l}, by, now)
	return nil
}

// RemoveLink unlinks an active contact from a record. Errors: ErrNotFound when it is not linked.
func (c *Contact) RemoveLink(l Link, by kernel.Actor, now time.Time) error {
	if err := c.editable("unlinked"); err != nil {
		return err
	}
	if err := ValidateLink(l); err != nil {
		return err
	}
	if !slices.Contains(c.links, l) {
		return kernel.Errorf(kernel.ErrNotFound, "the contact has no such link")
	}
	c.record(Unlinked{l}, by, now)
	return nil
}

// MarkSpam marks a contact as spam: create and import refuse its email and
// phone until it is unmarked. It is separate from deletion, so it works in
// trash and in the archive too.
func (c *Contact) MarkSpam(reason string, by kernel.Actor, now time.Time) error {
	if err := c.check("marked as spam", reason); err != nil {
		return err
	}
	if c.spam {
		return kernel.Errorf(ErrTransition, "contact is already marked as spam")
	}
	c.record(MarkedSpam{Reason: reason}, by, now)
	return nil
}

// UnmarkSpam lifts a contact's spam mark.
func (c *Contact) UnmarkSpam(reason string, by kernel.Actor, now time.Time) error {
	if err := c.check("unmarked as spam", reason); err != nil {
		return err
	}
	if !c.spam {
		return kernel.Errorf(ErrTransition, "contact is not marked as spam")
	}
	c.record(UnmarkedSpam{Reason: reason}, by, now)
	return nil
}

// Sync applies what a source system says about a contact during an import:
// changed personal fields and tags to add. Unlike Update it also reaches
// archived contacts, which stay archived; trashed ones are never synced.
func (c *Contact) Sync(p Patch, addTags []string, by kernel.Actor, now time.Time) error {
	if err := c.mustBeLive("synced"); err != nil {
		return err
	}
	if c.state != StateActive && c.state != StateArchived {
		return kernel.Errorf(ErrNotEditable, "contact is %s; imports only update active and archived contacts", c.state)
	}
	if err := c.update(p, by, now); err != nil {
		return err
	}
	var v validator
	add := v.tags("tags", addTags)
	if err := v.err(); err != nil {
		return err
	}
	var ev TagsChanged
	for _, t := range add {
		if !slices.Contains(c.tags, t) {
			ev.Added = append(ev.Added, t)
		}
	}
	if len(c.tags)+len(ev.Added) > MaxTags {
		return kernel.Invalid(kernel.FieldError{Field: "tags", Message: "a contact has at most " + strconv.Itoa(MaxTags) + " tags"})
	}
	if len(ev.Added) > 0 {
		c.record(ev, by, now)
	}
	return nil
}

func (c *Contact) applyAssociation(e Envelope) (bool, error) {
	switch ev := e.Event.(type) {
	case TagsChanged:
		tags := slices.DeleteFunc(slices.Clone(c.tags), func(t string) bool { return slices.Contains(ev.Removed, t) })
		tags = append(tags, ev.Added...)
		slices.Sort(tags)
		c.tags = slices.Compact(tags)
	case NoteAdded:
		c.notes = append(c.notes, Note{ID: ev.NoteID, Text: ev.Text, At: e.At, By: e.By, Shredded: ev.Shredded || c.shredded})
	case ListMembershipChanged:
		if ev.List == "" {
			break // shredded: nothing to show
		}
		if c.lists == nil {
			c.lists = map[string]ListStatus{}
		}
		c.lists[ev.List] = ev.Status
	case ListMembershipRemoved:
		delete(c.lists, ev.List)
	case Linked:
		if ev.Ref == "" {
			break // shredded: nothing to show
		}
		if !slices.Contains(c.links, ev.Link) {
			c.links = append(c.links, ev.Link)
			slices.SortFunc(c.links, func(a, b Link) int {
				if a.Kind != b.Kind {
					return strings.Compare(a.Kind, b.Kind)
				}
				return strings.Compare(a.Ref, b.Ref)
			})
		}
	case Unlinked:
		c.links = slices.DeleteFunc(c.links, func(l Link) bool { return l == ev.Link })
	case MarkedSpam:
		c.spam, c.spamAt = true, e.At
	case UnmarkedSpam:
		c.spam, c.spamAt = false, time.Time{}
	default:
		return false, nil
	}
	return true, nil
}

// Notes returns the contact's notes, oldest first; their text is empty and
// Shredded set once the contact's key is destroyed.
func (c *Contact) Notes() []Note { return slices.Clone(c.notes) }

// Spam reports whether the contact is marked as spam.
func (c *Contact) Spam() bool { return c.spam }
