package main_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"pgregory.net/rapid"
)

// rapidChecks sets how many cases rapid.Check runs in this test, unless
// -rapid.checks or RAPID_CHECKS says otherwise: each case here drives the
// real stores, so the default of 100 is too slow for `make test`.
func rapidChecks(t *testing.T, n int) {
	if os.Getenv("RAPID_CHECKS") != "" {
		return
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if set {
		return
	}
	f := flag.Lookup("rapid.checks")
	old := f.Value.String()
	f.Value.Set(fmt.Sprint(n))
	t.Cleanup(func() { f.Value.Set(old) })
}

// edges are the lifecycle's transitions (DESIGN.md), each state to the states it may lead to.
var edges = map[contact.State][]contact.State{
	contact.StateActive:   {contact.StateArchived, contact.StateTrashed},
	contact.StateArchived: {contact.StateActive, contact.StateTrashed},
	contact.StateTrashed:  {contact.StateActive, contact.StateArchived, contact.StatePurged, contact.StateAnonymized},
}

// model is where a contact must be, as the property test follows it.
type model struct {
	id          contact.ID
	state       contact.State
	trashedFrom contact.State
	source      string
	spam        bool
	held        bool
	email       string
	version     uint64
}

// sharedEmails are the emails the property test's contacts compete for.
var sharedEmails = []string{"shared.a@example.com", "shared.b@example.com"}

// world is the property test's model of one workspace: its contacts and
// its identity policy.
type world struct {
	policy   contact.Policy
	contacts []*model
	// keptBoth are the emails a keep_both restore let two contacts hold.
	keptBoth map[string]bool
	// spamMoved are emails a spam-marked contact changed from or to: the
	// spam check reads the identity index, which learns of an email change
	// a moment later, so a create may or may not be refused as spam then
	// (the identity check, whose claims are synchronous, is exact).
	spamMoved map[string]bool
}

// live reports whether a contact is active, archived or in trash.
func (m *model) live() bool {
	return m.state == contact.StateActive || m.state == contact.StateArchived || m.state == contact.StateTrashed
}

// holds says, as the README does, whether a contact in state st keeps its
// email to itself: under live while active or archived, under until_purged
// in trash too, under off never.
func (w *world) holds(st contact.State) bool {
	switch w.policy.Uniqueness() {
	case contact.UniquenessLive:
		return st == contact.StateActive || st == contact.StateArchived
	case contact.UniquenessUntilPurged:
		return st == contact.StateActive || st == contact.StateArchived || st == contact.StateTrashed
	}
	return false
}

// holder returns another contact that holds email under the policy, if any.
func (w *world) holder(email string, not *model) *model {
	for _, o := range w.contacts {
		if o != not && o.email == email && w.holds(o.state) {
			return o
		}
	}
	return nil
}

// spamOwner reports whether a live contact marked as spam has email.
func (w *world) spamOwner(email string) bool {
	for _, o := range w.contacts {
		if o.email == email && o.spam && o.live() {
			return true
		}
	}
	return false
}

// TestServiceProperties runs random sequences of commands through the
// service of a real ledger (the real wiring and stores, projections
// running), on random contacts, by members and admins, with and without
// If-Match, under a random identity_uniqueness, with contacts competing
// for a few emails and legal holds placed and released. After each
// command: it was accepted exactly when the lifecycle, the policy, the
// holds, the emails other contacts hold and If-Match allow it; an accepted
// one moved the contact along an edge of the lifecycle and appended one
// event at the next version; a refused one is a coded error (naming the
// holder of a taken email) and appended nothing. After each sequence:
// replaying every contact's history (as compliance reads it) gives the
// state the service shows, no email is held twice but by keep_both, and
// the projections equal the fold of the log.
func TestServiceProperties(t *testing.T) { eachStore(t, testServiceProperties) }

func testServiceProperties(t *testing.T, store string) {
	rapidChecks(t, 20)
	l := start(t, store)
	ctx := context.Background()
	svc := l.Svc
	req, cases := 0, 0
	rapid.Check(t, func(rt *rapid.T) {
		// Each case has a workspace of its own, so that checking it does not
		// grow with the cases before.
		cases++
		ws := fmt.Sprintf("prop-%d", cases)
		if _, err := svc.CreateWorkspace(ctx, ws); err != nil {
			rt.Fatal(err)
		}
		ps := contact.DefaultPolicy().Settings()
		ps.IdentityUniqueness = rapid.SampledFrom([]contact.Uniqueness{contact.UniquenessOff, contact.UniquenessLive, contact.UniquenessUntilPurged}).Draw(rt, "uniqueness")
		p, err := svc.SetPolicy(ctx, ws, ps)
		if err != nil {
			rt.Fatal(err)
		}
		w := &world{policy: p, keptBoth: map[string]bool{}, spamMoved: map[string]bool{}}
		meta := func(role kernel.Role, ifMatch *uint64) ledger.Meta {
			req++
			return ledger.Meta{Actor: kernel.Actor{Principal: "tok_prop", Role: role}, CorrelationID: fmt.Sprintf("prop-%d", req), IfMatch: ifMatch}
		}
		// create makes a contact with a fresh email, a shared one, or (again)
		// the email of a contact there is, whatever its state.
		create := func(rt *rapid.T) {
			src := rapid.SampledFrom([]string{"", "web", "crm"}).Draw(rt, "source")
			emails := append([]string{fmt.Sprintf("prop.%d.%d@example.com", len(w.contacts), req)}, sharedEmails...)
			for _, o := range w.contacts {
				emails = append(emails, o.email)
			}
			email := rapid.SampledFrom(emails).Draw(rt, "email")
			d := contact.Draft{Personal: contact.Personal{Name: fmt.Sprintf("Prop %d", req), Email: email}, Source: src}
			head, _ := l.Events().Head(ctx)
			res, err := svc.Create(ctx, ws, meta(kernel.RoleMember, nil), d)
			holder := w.holder(email, nil)
			switch {
			case w.spamMoved[email] && errors.Is(err, contact.ErrSpam):
			case w.spamOwner(email) && !w.spamMoved[email]:
				if !errors.Is(err, contact.ErrSpam) {
					rt.Fatalf("create of a spam-marked email: got %v, want spam-identity", err)
				}
			case holder != nil:
				var taken *ledger.IdentityTakenError
				if !errors.As(err, &taken) || taken.Holder != holder.id || taken.State != holder.state {
					rt.Fatalf("create of an email %s holds (%s, policy %s): got %v", holder.id, holder.state, w.policy.Uniqueness(), err)
				}
			case err != nil:
				rt.Fatalf("create (policy %s): %v", w.policy.Uniqueness(), err)
			default:
				w.contacts = append(w.contacts, &model{id: res.Contact.ID, state: contact.StateActive, source: src, email: email, version: 1})
				return
			}
			if after, _ := l.Events().Head(ctx); after != head {
				rt.Fatalf("a refused create moved the log from %s to %s", head, after)
			}
		}
		for len(w.contacts) == 0 {
			create(rt)
		}
		rt.Repeat(map[string]func(*rapid.T){
			"create": create,
			"command": func(rt *rapid.T) {
				m := rapid.SampledFrom(w.contacts).Draw(rt, "contact")
				role := rapid.SampledFrom([]kernel.Role{kernel.RoleMember, kernel.RoleAdmin}).Draw(rt, "role")
				var ifMatch *uint64
				stale := false
				if rapid.Bool().Draw(rt, "ifMatch") {
					v := m.version
					if stale = rapid.IntRange(0, 3).Draw(rt, "stale") == 0 && v > 1; stale {
						v--
					}
					ifMatch = &v
				}
				op := rapid.SampledFrom([]string{"update", "email", "tags", "note", "list", "link", "spam", "hold", "archive", "unarchive", "trash",
					"restore", "restore_keep_both", "purge", "anonymize"}).Draw(rt, "op")
				email := rapid.SampledFrom(sharedEmails).Draw(rt, "newEmail")
				run(rt, svc, l.Events(), ws, w, m, op, email, meta(role, ifMatch), stale)
			},
			// Trash and undo it, which meets the emails others took meanwhile.
			"trash": func(rt *rapid.T) {
				m := rapid.SampledFrom(w.contacts).Draw(rt, "contact")
				run(rt, svc, l.Events(), ws, w, m, "trash", "", meta(kernel.RoleMember, nil), false)
			},
			"restore": func(rt *rapid.T) {
				var trashed []*model
				for _, m := range w.contacts {
					if m.state == contact.StateTrashed {
						trashed = append(trashed, m)
					}
				}
				if len(trashed) == 0 {
					rt.Skip("nothing in trash")
				}
				m := rapid.SampledFrom(trashed).Draw(rt, "trashed")
				op := rapid.SampledFrom([]string{"restore", "restore_keep_both"}).Draw(rt, "how")
				run(rt, svc, l.Events(), ws, w, m, op, "", meta(kernel.RoleAdmin, nil), false)
			},
		})
		// History replay equals the state; projections equal the fold of the log.
		holders := map[string]int{}
		for _, m := range w.contacts {
			if w.holds(m.state) {
				holders[m.email]++
			}
		}
		for email, n := range holders {
			if n > 1 && !w.keptBoth[email] {
				rt.Fatalf("%d contacts hold %s under %s, and no keep_both let them", n, email, w.policy.Uniqueness())
			}
		}
		for _, m := range w.contacts {
			v, err := svc.Get(ctx, ws, m.id)
			if err != nil {
				rt.Fatal(err)
			}
			entries, err := svc.History(ctx, ws, m.id)
			if err != nil {
				rt.Fatal(err)
			}
			var envs []contact.Envelope
			for _, e := range entries {
				r := e.Record
				ev, err := contact.Decode(r.Type, r.Schema, r.Data, e.Personal, e.Shredded)
				if err != nil {
					rt.Fatal(err)
				}
				envs = append(envs, contact.Envelope{EventID: r.ID, Version: r.Version, At: r.Time, By: r.Actor, Workspace: r.Workspace, Event: ev, Operation: r.CausationID})
			}
			replayed, err := contact.Replay(m.id, envs)
			if err != nil {
				rt.Fatal(err)
			}
			if got := replayed.Snapshot(); !reflect.DeepEqual(got, v.Snapshot) {
				rt.Fatalf("replaying the history of %s gives\n%s\nthe service shows\n%s", m.id, jsonOf(rt, got), jsonOf(rt, v.Snapshot))
			}
			if v.State != m.state || v.Version != m.version || (v.Hold != nil) != (m.held && m.live()) {
				rt.Fatalf("%s is %s v%d (hold %v), the model says %s v%d (held %v)", m.id, v.State, v.Version, v.Hold, m.state, m.version, m.held)
			}
		}
		checkConsistent(rt, l.Main, ws)
	})
}

// run runs one command on m and checks its outcome against the model.
func run(rt *rapid.T, svc *ledger.Service, events kernel.EventStore, ws string, w *world, m *model, op, email string, meta ledger.Meta, stale bool) {
	ctx := context.Background()
	head, err := events.Head(ctx)
	if err != nil {
		rt.Fatal(err)
	}
	st := m.state
	erased := st == contact.StatePurged || st == contact.StateAnonymized
	var (
		res     ledger.Result
		allowed bool
		to      = st
		// taken is the contact whose email refuses the command, if any.
		taken *model
	)
	n := meta.CorrelationID
	switch op {
	case "update":
		res, err = svc.Update(ctx, ws, m.id, meta, contact.Patch{JobTitle: &n})
		allowed = st == contact.StateActive
	case "email":
		if email == m.email {
			email = "own." + n + "@example.com" // a change, to an email nobody has
		}
		res, err = svc.Update(ctx, ws, m.id, meta, contact.Patch{Email: &email})
		if st == contact.StateActive && email != m.email {
			taken = w.holder(email, m)
		}
		allowed = st == contact.StateActive && taken == nil
	case "hold":
		if m.held {
			res, err = svc.ReleaseHold(ctx, ws, m.id, meta, "")
		} else {
			res, _, err = svc.PlaceHold(ctx, ws, m.id, meta, "PROP-1", "property")
		}
		allowed = !erased
	case "tags":
		res, err = svc.ChangeTags(ctx, ws, m.id, meta, []string{"t-" + n}, nil)
		allowed = st == contact.StateActive
	case "note":
		res, _, err = svc.AddNote(ctx, ws, m.id, meta, "note "+n)
		allowed = st == contact.StateActive
	case "list":
		res, err = svc.SetList(ctx, ws, m.id, meta, "list-"+n, contact.ListSubscribed)
		allowed = st == contact.StateActive
	case "link":
		res, err = svc.AddLink(ctx, ws, m.id, meta, contact.Link{Kind: "deal", Ref: n})
		allowed = st == contact.StateActive
	case "spam":
		if m.spam {
			res, err = svc.UnmarkSpam(ctx, ws, m.id, meta, "")
		} else {
			res, err = svc.MarkSpam(ctx, ws, m.id, meta, "bot")
		}
		allowed = !erased
	default:
		t := ledger.Transition(op)
		in := ledger.TransitionInput{Reason: "property"}
		if op == "restore_keep_both" {
			t, in.KeepBoth = ledger.Restore, true
		}
		res, err = svc.Transition(ctx, ws, m.id, meta, t, in)
		switch op {
		case "archive":
			allowed, to = st == contact.StateActive, contact.StateArchived
		case "unarchive":
			allowed, to = st == contact.StateArchived, contact.StateActive
		case "trash":
			allowed, to = (st == contact.StateActive || st == contact.StateArchived) && m.source != "crm", contact.StateTrashed
		case "restore":
			if st == contact.StateTrashed {
				taken = w.holder(m.email, m)
			}
			allowed, to = st == contact.StateTrashed && taken == nil, m.trashedFrom
		case "restore_keep_both":
			allowed, to = st == contact.StateTrashed, m.trashedFrom
		case "purge":
			allowed, to = st == contact.StateTrashed && !m.held, contact.StatePurged
		case "anonymize":
			allowed, to = st == contact.StateTrashed && !m.held, contact.StateAnonymized
		}
	}
	if stale {
		allowed = false
	}
	if err != nil {
		var ce *kernel.Error
		if !errors.As(err, &ce) || ce.Code == "" {
			rt.Fatalf("%s on a %s contact: an uncoded error: %v", op, st, err)
		}
		if allowed {
			rt.Fatalf("%s on a %s contact (source %q, If-Match %v) was refused: %v", op, st, m.source, meta.IfMatch != nil, err)
		}
		if stale && !errors.Is(err, kernel.ErrConcurrency) {
			rt.Fatalf("%s with a stale If-Match: got %v, want a concurrency error", op, err)
		}
		var te *ledger.IdentityTakenError
		if !stale && taken != nil && (!errors.As(err, &te) || te.Holder != taken.id) {
			rt.Fatalf("%s onto an email %s holds: got %v, want identity-taken naming it", op, taken.id, err)
		}
		if !stale && m.held && (op == "purge" || op == "anonymize") && st == contact.StateTrashed && !errors.Is(err, contact.ErrHeld) {
			rt.Fatalf("%s of a held contact: got %v, want contact-held", op, err)
		}
		if after, _ := events.Head(ctx); after != head {
			rt.Fatalf("refused %s moved the log from %s to %s", op, head, after)
		}
		return
	}
	if !allowed {
		rt.Fatalf("%s on a %s contact (source %q, stale If-Match %v) was accepted", op, st, m.source, stale)
	}
	if res.Version != m.version+1 || res.EventID == "" {
		rt.Fatalf("%s: version %d (event %q) after %d, want one event", op, res.Version, res.EventID, m.version)
	}
	recs, err := events.ReadStream(ctx, ws, m.id.Stream())
	if err != nil {
		rt.Fatal(err)
	}
	last := recs[len(recs)-1]
	if uint64(len(recs)) != res.Version || last.ID.String() != res.EventID || last.Position != res.Position || last.CorrelationID != meta.CorrelationID {
		rt.Fatalf("%s: the answer says v%d %s at %s, the log ends at v%d %s at %s", op, res.Version, res.EventID, res.Position, last.Version, last.ID, last.Position)
	}
	if res.Contact.State != to {
		rt.Fatalf("%s took a %s contact to %s, want %s", op, st, res.Contact.State, to)
	}
	if to != st && !slices.Contains(edges[st], to) {
		rt.Fatalf("%s moved a contact from %s to %s, which the lifecycle forbids", op, st, to)
	}
	if to == contact.StateTrashed && st != contact.StateTrashed {
		m.trashedFrom = st
	}
	if op == "spam" {
		m.spam = !m.spam
	}
	if op == "hold" {
		m.held = !m.held
	}
	if op == "email" {
		if m.spam {
			w.spamMoved[m.email], w.spamMoved[email] = true, true
		}
		m.email = email
	}
	if op == "restore_keep_both" && w.holder(m.email, m) != nil {
		w.keptBoth[m.email] = true
	}
	if to == contact.StatePurged {
		m.spam = false
	}
	m.state, m.version = to, res.Version
}
