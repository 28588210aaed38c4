package contact_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"pgregory.net/rapid"
)

// lifecycleEdges are the transitions of the lifecycle (DESIGN.md): from
// each state, the states a command may lead to. Anything else is a
// forbidden state change.
var lifecycleEdges = map[contact.State][]contact.State{
	contact.StateActive:   {contact.StateActive, contact.StateArchived, contact.StateTrashed},
	contact.StateArchived: {contact.StateArchived, contact.StateActive, contact.StateTrashed},
	contact.StateTrashed:  {contact.StateTrashed, contact.StateActive, contact.StateArchived, contact.StatePurged, contact.StateAnonymized},
	// Erased contacts are final.
	contact.StatePurged:     {contact.StatePurged},
	contact.StateAnonymized: {contact.StateAnonymized},
}

// domainMachine drives one contact through random commands, under a random
// policy and by random actors, and keeps a model of where the lifecycle
// must be: the state, the state it was trashed from and the spam mark.
type domainMachine struct {
	c      *contact.Contact
	policy contact.Policy
	now    time.Time

	state       contact.State
	trashedFrom contact.State
	spam        bool
	held        bool
	events      int // events the commands recorded
}

var (
	roles   = []kernel.Role{kernel.RoleMember, kernel.RoleAdmin, kernel.RoleOperator, kernel.RoleSystem}
	sources = []string{"", "web", "crm"}
	words   = []string{"", "Ada", "Grace Hopper", "ada@example.com", "+44 20 7946 0018", "Analyst", "not an email"}
)

func newDomainMachine(t *rapid.T) *domainMachine {
	s := contact.PolicySettings{
		RetentionDays:             rapid.IntRange(0, 60).Draw(t, "retention"),
		RequireArchiveBeforeTrash: rapid.Bool().Draw(t, "archiveFirst"),
		RestoreRole:               rapid.SampledFrom([]kernel.Role{kernel.RoleMember, kernel.RoleAdmin}).Draw(t, "restoreRole"),
		PurgeAllowed:              rapid.Bool().Draw(t, "purgeAllowed"),
		ProtectedSources:          rapid.SliceOfDistinct(rapid.SampledFrom([]string{"crm", "erp"}), rapid.ID).Draw(t, "protected"),
	}
	p, err := s.Policy()
	if err != nil {
		t.Fatalf("policy %+v: %v", s, err)
	}
	m := &domainMachine{policy: p, now: t0}
	d := contact.Draft{
		Personal: contact.Personal{
			Name:  rapid.SampledFrom([]string{"Ada", "Grace Hopper"}).Draw(t, "name"),
			Email: rapid.SampledFrom([]string{"", "ada@example.com"}).Draw(t, "email"),
		},
		Source: rapid.SampledFrom(sources).Draw(t, "source"),
		Tags:   rapid.SliceOfN(rapid.SampledFrom([]string{"vip", "lead", "b2b"}), 0, 3).Draw(t, "tags"),
	}
	c, err := contact.Create(contact.NewID(), "ws", d, m.actor(t), m.tick())
	if err != nil {
		t.Fatalf("create %+v: %v", d, err)
	}
	m.c, m.state, m.events = c, contact.StateActive, 1
	return m
}

func (m *domainMachine) tick() time.Time { m.now = m.now.Add(time.Minute); return m.now }

func (m *domainMachine) actor(t *rapid.T) kernel.Actor {
	return kernel.Actor{Principal: "tok_x", Role: rapid.SampledFrom(roles).Draw(t, "role")}
}

func (m *domainMachine) live() bool {
	return m.state != contact.StatePurged && m.state != contact.StateAnonymized
}

// run runs one command and checks its outcome against the model: ok says
// whether the command must be accepted (nil: either, for commands whose
// acceptance depends on values the model does not follow), wantErr the
// error a refusal must carry, next the state an accepted command leads to.
func (m *domainMachine) run(t *rapid.T, name string, ok *bool, wantErr error, next contact.State, cmd func() error) {
	before, pending := m.c.Snapshot(), len(m.c.Changes())
	err := cmd()
	after := m.c.Snapshot()
	if err != nil {
		// A refused command records nothing and changes nothing.
		if n := len(m.c.Changes()); n != pending {
			t.Fatalf("%s was refused (%v) but recorded %d events", name, err, n-pending)
		}
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("%s was refused (%v) but changed the contact:\nbefore %+v\nafter  %+v", name, err, before, after)
		}
		var ce *kernel.Error
		if !errors.As(err, &ce) {
			t.Fatalf("%s refused with an uncoded error: %v", name, err)
		}
		if ok != nil && *ok {
			t.Fatalf("%s in state %s: refused with %v, want it accepted", name, m.state, err)
		}
		if wantErr != nil && !errors.Is(err, wantErr) {
			t.Fatalf("%s in state %s: got %v, want %v", name, m.state, err, wantErr)
		}
		return
	}
	if ok != nil && !*ok {
		t.Fatalf("%s in state %s was accepted; want it refused with %v", name, m.state, wantErr)
	}
	recorded := len(m.c.Changes()) - pending
	if recorded > 1 {
		t.Fatalf("%s recorded %d events, want at most one", name, recorded)
	}
	m.events += recorded
	if recorded == 0 && !reflect.DeepEqual(before, after) {
		t.Fatalf("%s recorded nothing but changed the contact", name)
	}
	if next != "" {
		if recorded != 1 {
			t.Fatalf("%s moved nothing: no event recorded", name)
		}
		if m.state == contact.StateTrashed && next == contact.StateTrashed {
			t.Fatalf("model bug: trash from trash")
		}
		if next == contact.StateTrashed {
			m.trashedFrom = m.state
		}
		m.state = next
	}
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }
func when(b bool) *bool {
	if b {
		return yes()
	}
	return no()
}

func (m *domainMachine) Update(t *rapid.T) {
	p := contact.Patch{}
	if rapid.Bool().Draw(t, "setName") {
		p.Name = str(rapid.SampledFrom(words).Draw(t, "newName"))
	}
	if rapid.Bool().Draw(t, "setEmail") {
		p.Email = str(rapid.SampledFrom(words).Draw(t, "newEmail"))
	}
	if rapid.Bool().Draw(t, "setJob") {
		p.JobTitle = str(rapid.SampledFrom(words).Draw(t, "newJob"))
	}
	var ok *bool
	var wantErr error = contact.ErrNotEditable
	switch {
	case m.state == contact.StatePurged:
		ok, wantErr = no(), contact.ErrPurged
	case m.state != contact.StateActive:
		ok = no()
	default:
		wantErr = kernel.ErrInvalid // the values may be invalid
	}
	m.run(t, "update", ok, wantErr, "", func() error { return m.c.Update(p, m.actor(t), m.tick()) })
}

func (m *domainMachine) Archive(t *rapid.T) {
	m.lifecycle(t, "archive", m.state == contact.StateActive, contact.StateArchived, func(by kernel.Actor) error {
		return m.c.Archive("tidy up", by, m.tick())
	})
}

func (m *domainMachine) Unarchive(t *rapid.T) {
	m.lifecycle(t, "unarchive", m.state == contact.StateArchived, contact.StateActive, func(by kernel.Actor) error {
		return m.c.Unarchive("", by, m.tick())
	})
}

func (m *domainMachine) Trash(t *rapid.T) {
	st := m.state
	allowed := (st == contact.StateActive || st == contact.StateArchived) && !m.policy.Protects(m.c.Source()) &&
		!(m.policy.Settings().RequireArchiveBeforeTrash && st == contact.StateActive)
	var wantErr error
	switch {
	case !m.live() || (st != contact.StateActive && st != contact.StateArchived):
	case m.policy.Protects(m.c.Source()):
		wantErr = contact.ErrProtectedSource
	case !allowed:
		wantErr = contact.ErrArchiveFirst
	}
	m.lifecycleErr(t, "trash", allowed, wantErr, contact.StateTrashed, func(by kernel.Actor) error {
		return m.c.Trash("duplicate", m.policy, by, m.tick())
	})
}

func (m *domainMachine) Restore(t *rapid.T) {
	by := m.actor(t)
	allowed := m.state == contact.StateTrashed && m.policy.MayRestore(by.Role)
	var wantErr error
	if m.state == contact.StateTrashed && !allowed {
		wantErr = kernel.ErrRoleNotAllowed
	}
	m.runAs(t, "restore", allowed, wantErr, m.trashedFrom, func() error { return m.c.Restore("", m.policy, by, m.tick()) })
}

func (m *domainMachine) Purge(t *rapid.T) {
	m.erase(t, "purge", contact.StatePurged, func(er contact.Erasure, by kernel.Actor) error {
		return m.c.Purge(er, m.policy, by, m.tick())
	})
}

func (m *domainMachine) Anonymize(t *rapid.T) {
	m.erase(t, "anonymize", contact.StateAnonymized, func(er contact.Erasure, by kernel.Actor) error {
		return m.c.Anonymize(er, m.policy, by, m.tick())
	})
}

func (m *domainMachine) erase(t *rapid.T, name string, to contact.State, cmd func(contact.Erasure, kernel.Actor) error) {
	allowed := m.state == contact.StateTrashed && m.policy.Settings().PurgeAllowed && !m.held
	var wantErr error
	switch {
	case m.state == contact.StateTrashed && m.held:
		// A legal hold refuses every erasure, whatever the policy.
		wantErr = contact.ErrHeld
	case m.state == contact.StateTrashed && !allowed:
		wantErr = contact.ErrPurgeDisabled
	}
	by := m.actor(t)
	m.runAs(t, name, allowed, wantErr, to, func() error { return cmd(erasure(), by) })
}

func (m *domainMachine) lifecycle(t *rapid.T, name string, allowed bool, to contact.State, cmd func(kernel.Actor) error) {
	m.lifecycleErr(t, name, allowed, nil, to, cmd)
}

func (m *domainMachine) lifecycleErr(t *rapid.T, name string, allowed bool, wantErr error, to contact.State, cmd func(kernel.Actor) error) {
	by := m.actor(t)
	m.runAs(t, name, allowed, wantErr, to, func() error { return cmd(by) })
}

// runAs runs a lifecycle command whose outcome the model decides: when it
// is refused without a more specific reason, the error is the lifecycle's
// (or "purged" for a purged contact).
func (m *domainMachine) runAs(t *rapid.T, name string, allowed bool, wantErr error, to contact.State, cmd func() error) {
	if !allowed && wantErr == nil {
		wantErr = contact.ErrTransition
		if m.state == contact.StatePurged {
			wantErr = contact.ErrPurged
		}
	}
	next := contact.State("")
	if allowed {
		next = to
	}
	m.run(t, name, when(allowed), wantErr, next, cmd)
}

// association runs an association command: only active contacts take them.
func (m *domainMachine) association(t *rapid.T, name string, cmd func(by kernel.Actor) error) {
	var ok *bool
	var wantErr error
	switch m.state {
	case contact.StateActive:
		// Accepted, or refused for its values (an unknown list or link).
	case contact.StatePurged:
		ok, wantErr = no(), contact.ErrPurged
	default:
		ok, wantErr = no(), contact.ErrNotEditable
	}
	by := m.actor(t)
	m.run(t, name, ok, wantErr, "", func() error { return cmd(by) })
}

func (m *domainMachine) Tags(t *rapid.T) {
	tags := rapid.SliceOfN(rapid.SampledFrom([]string{"vip", "lead", "b2b", "churned"}), 0, 2)
	add, remove := tags.Draw(t, "add"), tags.Draw(t, "remove")
	m.association(t, "tags", func(by kernel.Actor) error { return m.c.ChangeTags(add, remove, by, m.tick()) })
}

func (m *domainMachine) Note(t *rapid.T) {
	text := rapid.SampledFrom([]string{"called back", "prefers email", " "}).Draw(t, "note")
	m.association(t, "note", func(by kernel.Actor) error { _, err := m.c.AddNote(text, by, m.tick()); return err })
}

func (m *domainMachine) List(t *rapid.T) {
	list := rapid.SampledFrom([]string{"newsletter", "events"}).Draw(t, "list")
	if rapid.Bool().Draw(t, "removeList") {
		m.association(t, "unlist", func(by kernel.Actor) error { return m.c.RemoveList(list, by, m.tick()) })
		return
	}
	st := rapid.SampledFrom([]contact.ListStatus{contact.ListSubscribed, contact.ListBounced}).Draw(t, "status")
	m.association(t, "list", func(by kernel.Actor) error { return m.c.SetList(list, st, by, m.tick()) })
}

func (m *domainMachine) Link(t *rapid.T) {
	l := contact.Link{Kind: rapid.SampledFrom(contact.LinkKinds).Draw(t, "kind"), Ref: rapid.SampledFrom([]string{"D-1", "D-2"}).Draw(t, "ref")}
	if rapid.Bool().Draw(t, "unlink") {
		m.association(t, "unlink", func(by kernel.Actor) error { return m.c.RemoveLink(l, by, m.tick()) })
		return
	}
	m.association(t, "link", func(by kernel.Actor) error { return m.c.AddLink(l, by, m.tick()) })
}

func (m *domainMachine) Spam(t *rapid.T) {
	mark := rapid.Bool().Draw(t, "mark")
	allowed := m.live() && m.spam != mark
	wantErr := error(contact.ErrTransition)
	if m.state == contact.StatePurged {
		wantErr = contact.ErrPurged
	}
	by := m.actor(t)
	cmd := func() error { return m.c.UnmarkSpam("", by, m.tick()) }
	if mark {
		cmd = func() error { return m.c.MarkSpam("bot", by, m.tick()) }
	}
	m.run(t, "spam", when(allowed), wantErr, "", cmd)
	if allowed {
		m.spam = mark
	}
}

// Hold places a legal hold: on any live contact without one.
func (m *domainMachine) Hold(t *rapid.T) {
	caseRef := rapid.SampledFrom([]string{"", "Doe v. Acme", "ada@example.com"}).Draw(t, "case")
	by := m.actor(t)
	var wantErr error
	switch {
	case m.state == contact.StatePurged:
		wantErr = contact.ErrPurged
	case !m.live():
		wantErr = contact.ErrTransition
	case m.held:
		wantErr = contact.ErrAlreadyHeld
	}
	m.run(t, "hold", when(wantErr == nil), wantErr, "", func() error { _, err := m.c.PlaceHold(caseRef, "preserve", by, m.tick()); return err })
	if wantErr == nil {
		m.held = true
	}
}

// Release lifts it.
func (m *domainMachine) Release(t *rapid.T) {
	by := m.actor(t)
	var wantErr error
	switch {
	case m.state == contact.StatePurged:
		wantErr = contact.ErrPurged
	case !m.live():
		wantErr = contact.ErrTransition
	case !m.held:
		wantErr = contact.ErrNotHeld
	}
	m.run(t, "release", when(wantErr == nil), wantErr, "", func() error { return m.c.ReleaseHold("", by, m.tick()) })
	if wantErr == nil {
		m.held = false
	}
}

// Check holds after every command: the contact is in a state the lifecycle
// allows, reached along its edges, with the fields that state implies, and
// folding the events its commands recorded (through the codec, as the log
// stores them) gives the same contact.
func (m *domainMachine) Check(t *rapid.T) {
	s := m.c.Snapshot()
	if s.State != m.state {
		t.Fatalf("state %s, the model says %s", s.State, m.state)
	}
	if s.Version != uint64(m.events) || len(m.c.Changes()) != m.events {
		t.Fatalf("version %d with %d changes, want %d", s.Version, len(m.c.Changes()), m.events)
	}
	checkSnapshot(t, s)
	if s.State == contact.StateTrashed && s.TrashedFrom != m.trashedFrom {
		t.Fatalf("trashed from %s, the model says %s", s.TrashedFrom, m.trashedFrom)
	}
	if s.Spam != m.spam && m.live() {
		t.Fatalf("spam %v, the model says %v", s.Spam, m.spam)
	}
	if (s.Hold != nil) != (m.held && m.live()) {
		t.Fatalf("hold %+v, the model says held=%v in %s", s.Hold, m.held, m.state)
	}
	// Each event moves the state along an edge of the lifecycle.
	var prev contact.State
	for i, ch := range m.c.Changes() {
		to, decides := contact.EntersState(ch.Event)
		if i == 0 {
			if _, ok := ch.Event.(contact.Created); !ok {
				t.Fatalf("the first event is %s", ch.Event.EventType())
			}
			prev = to
			continue
		}
		if !decides {
			continue
		}
		if !slices.Contains(lifecycleEdges[prev], to) {
			t.Fatalf("event %d (%s) moves %s to %s, which the lifecycle forbids", i+1, ch.Event.EventType(), prev, to)
		}
		prev = to
	}
	for _, shredded := range []bool{false, true} {
		if shredded && m.live() {
			continue // only an erased contact's events read as shredded
		}
		r, err := contact.Replay(m.c.ID(), history(t, m.c, shredded))
		if err != nil {
			t.Fatalf("replay (shredded %v): %v", shredded, err)
		}
		if got := r.Snapshot(); !reflect.DeepEqual(got, s) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(s)
			t.Fatalf("replaying the recorded events (shredded %v) gives\n%s\nwant\n%s", shredded, g, w)
		}
	}
}

// history turns the recorded changes into stored envelopes, through the
// codec; shredded reads them as after the key is destroyed.
func history(t *rapid.T, c *contact.Contact, shredded bool) []contact.Envelope {
	var out []contact.Envelope
	for i, ch := range c.Changes() {
		enc, err := contact.Encode(ch.Event)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := contact.Decode(enc.Type, enc.Schema, enc.Data, enc.Personal, shredded && enc.Personal != nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, contact.Envelope{Version: uint64(i + 1), At: ch.At, By: ch.By, Workspace: "ws", Event: ev})
	}
	return out
}

// checkSnapshot checks what a state implies of the other fields.
func checkSnapshot(t *rapid.T, s contact.Snapshot) {
	erased := s.State == contact.StatePurged || s.State == contact.StateAnonymized
	switch {
	case !slices.Contains(lifecycleEdges[contact.StateTrashed], s.State):
		t.Fatalf("unknown state %q", s.State)
	case (s.State == contact.StateTrashed) != (s.TrashedAt != nil && s.TrashedBy != nil):
		t.Fatalf("state %s with trashed_at %v", s.State, s.TrashedAt)
	case (s.State == contact.StateTrashed) != (s.TrashedFrom == contact.StateActive || s.TrashedFrom == contact.StateArchived):
		t.Fatalf("state %s trashed from %q", s.State, s.TrashedFrom)
	case s.State == contact.StateArchived && s.ArchivedAt == nil:
		t.Fatal("archived without archived_at")
	case erased != (s.Tombstone != nil), erased != s.Shredded:
		t.Fatalf("state %s with tombstone %v, shredded %v", s.State, s.Tombstone, s.Shredded)
	case s.Spam != (s.SpamAt != nil):
		t.Fatalf("spam %v at %v", s.Spam, s.SpamAt)
	case erased && (s.NoteCount != 0 || len(s.Lists) != 0):
		t.Fatalf("%s contact keeps %d notes and lists %v", s.State, s.NoteCount, s.Lists)
	case s.State == contact.StatePurged && (!reflect.DeepEqual(s.Personal, contact.Personal{}) || len(s.Tags)+len(s.Links) != 0 || s.Spam):
		t.Fatalf("purged contact keeps %+v", s)
	case s.State == contact.StateAnonymized && !reflect.DeepEqual(s.Personal, contact.Personal{Name: contact.AnonymizedName}):
		t.Fatalf("anonymized contact shows %+v", s.Personal)
	}
}

// TestLifecycleProperties runs random sequences of commands on a contact
// under random policies and roles: the state machine never reaches a
// forbidden state, a refused command records nothing, and replaying the
// recorded events gives the contact's state.
func TestLifecycleProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := newDomainMachine(t)
		t.Repeat(rapid.StateMachineActions(m))
	})
}
