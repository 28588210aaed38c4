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
	version     uint64
}

// TestServiceProperties runs random sequences of commands through the
// service of a real ledger (the real wiring and stores, projections
// running), on random contacts, by members and admins, with and without
// If-Match. After each command: it was accepted exactly when the lifecycle,
// the policy and If-Match allow it; an accepted one moved the contact
// along an edge of the lifecycle and appended one event at the next
// version; a refused one is a coded error and appended nothing. After
// each sequence: replaying every contact's history (as compliance reads
// it) gives the state the service shows, and the projections equal the
// fold of the log.
func TestServiceProperties(t *testing.T) { eachStore(t, testServiceProperties) }

func testServiceProperties(t *testing.T, store string) {
	rapidChecks(t, 8)
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
		var contacts []*model
		meta := func(role contact.Role, ifMatch *uint64) ledger.Meta {
			req++
			return ledger.Meta{Actor: contact.Actor{Principal: "tok_prop", Role: role}, CorrelationID: fmt.Sprintf("prop-%d", req), IfMatch: ifMatch}
		}
		create := func(rt *rapid.T) {
			src := rapid.SampledFrom([]string{"", "web", "crm"}).Draw(rt, "source")
			d := contact.Draft{Personal: contact.Personal{Name: fmt.Sprintf("Prop %d", req), Email: fmt.Sprintf("prop.%d.%d@example.com", len(contacts), req)}, Source: src}
			res, err := svc.Create(ctx, ws, meta(contact.RoleMember, nil), d)
			if err != nil {
				rt.Fatalf("create: %v", err)
			}
			contacts = append(contacts, &model{id: res.Contact.ID, state: contact.StateActive, source: src, version: 1})
		}
		create(rt)
		rt.Repeat(map[string]func(*rapid.T){
			"create": create,
			"command": func(rt *rapid.T) {
				m := rapid.SampledFrom(contacts).Draw(rt, "contact")
				role := rapid.SampledFrom([]contact.Role{contact.RoleMember, contact.RoleAdmin}).Draw(rt, "role")
				var ifMatch *uint64
				stale := false
				if rapid.Bool().Draw(rt, "ifMatch") {
					v := m.version
					if stale = rapid.IntRange(0, 3).Draw(rt, "stale") == 0 && v > 1; stale {
						v--
					}
					ifMatch = &v
				}
				op := rapid.SampledFrom([]string{"update", "tags", "note", "list", "link", "spam", "archive", "unarchive", "trash", "restore", "purge", "anonymize"}).Draw(rt, "op")
				run(rt, svc, ws, m, op, meta(role, ifMatch), stale)
			},
		})
		// History replay equals the state; projections equal the fold of the log.
		for _, m := range contacts {
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
			if v.State != m.state || v.Version != m.version {
				rt.Fatalf("%s is %s v%d, the model says %s v%d", m.id, v.State, v.Version, m.state, m.version)
			}
		}
		checkConsistent(rt, l.Main, ws)
	})
}

// run runs one command on m and checks its outcome against the model.
func run(rt *rapid.T, svc *ledger.Service, ws string, m *model, op string, meta ledger.Meta, stale bool) {
	ctx := context.Background()
	head, err := svc.Events().Head(ctx)
	if err != nil {
		rt.Fatal(err)
	}
	st := m.state
	erased := st == contact.StatePurged || st == contact.StateAnonymized
	var (
		res     ledger.Result
		allowed bool
		to      = st
	)
	n := meta.CorrelationID
	switch op {
	case "update":
		res, err = svc.Update(ctx, ws, m.id, meta, contact.Patch{JobTitle: &n})
		allowed = st == contact.StateActive
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
		res, err = svc.Transition(ctx, ws, m.id, meta, ledger.Transition(op), ledger.TransitionInput{Reason: "property"})
		switch op {
		case "archive":
			allowed, to = st == contact.StateActive, contact.StateArchived
		case "unarchive":
			allowed, to = st == contact.StateArchived, contact.StateActive
		case "trash":
			allowed, to = (st == contact.StateActive || st == contact.StateArchived) && m.source != "crm", contact.StateTrashed
		case "restore":
			allowed, to = st == contact.StateTrashed, m.trashedFrom
		case "purge":
			allowed, to = st == contact.StateTrashed, contact.StatePurged
		case "anonymize":
			allowed, to = st == contact.StateTrashed, contact.StateAnonymized
		}
	}
	if stale {
		allowed = false
	}
	if err != nil {
		var ce *contact.Error
		if !errors.As(err, &ce) || ce.Code == "" {
			rt.Fatalf("%s on a %s contact: an uncoded error: %v", op, st, err)
		}
		if allowed {
			rt.Fatalf("%s on a %s contact (source %q, If-Match %v) was refused: %v", op, st, m.source, meta.IfMatch != nil, err)
		}
		if stale && !errors.Is(err, contact.ErrConcurrency) {
			rt.Fatalf("%s with a stale If-Match: got %v, want a concurrency error", op, err)
		}
		if after, _ := svc.Events().Head(ctx); after != head {
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
	recs, err := svc.Events().ReadStream(ctx, ws, m.id.Stream())
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
	if to == contact.StatePurged {
		m.spam = false
	}
	m.state, m.version = to, res.Version
}
