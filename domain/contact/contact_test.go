package contact_test

import (
	"errors"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
)

var (
	t0     = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	member = kernel.Actor{Principal: "tok_member", Role: kernel.RoleMember}
	admin  = kernel.Actor{Principal: "tok_admin", Role: kernel.RoleAdmin}
)

func str(s string) *string { return &s }

func erasure() contact.Erasure {
	return contact.Erasure{Trigger: contact.TriggerRequest, KeyID: "dk_1", Reason: "user asked"}
}

// reach builds a contact in the named starting state through commands only.
func reach(t *testing.T, start string) *contact.Contact {
	t.Helper()
	c, err := contact.Create(contact.NewID(), "ws", contact.Draft{Personal: contact.Personal{Name: "Ada Lovelace", Email: "ada@example.com"}}, member, t0)
	if err != nil {
		t.Fatal(err)
	}
	p := contact.DefaultPolicy()
	steps := map[string][]func() error{
		"active":                  nil,
		"archived":                {func() error { return c.Archive("", member, t0) }},
		"trashed (from active)":   {func() error { return c.Trash("", p, member, t0) }},
		"trashed (from archived)": {func() error { return c.Archive("", member, t0) }, func() error { return c.Trash("", p, member, t0) }},
		"purged":                  {func() error { return c.Trash("", p, member, t0) }, func() error { return c.Purge(erasure(), p, admin, t0) }},
		"anonymized":              {func() error { return c.Trash("", p, member, t0) }, func() error { return c.Anonymize(erasure(), p, admin, t0) }},
	}
	fs, ok := steps[start]
	if !ok {
		t.Fatalf("unknown start state %q", start)
	}
	for _, f := range fs {
		if err := f(); err != nil {
			t.Fatalf("reach %s: %v", start, err)
		}
	}
	return c
}

var commands = map[string]func(c *contact.Contact) error{
	"update":    func(c *contact.Contact) error { return c.Update(contact.Patch{JobTitle: str("Analyst")}, member, t0) },
	"archive":   func(c *contact.Contact) error { return c.Archive("", member, t0) },
	"unarchive": func(c *contact.Contact) error { return c.Unarchive("", member, t0) },
	"trash":     func(c *contact.Contact) error { return c.Trash("", contact.DefaultPolicy(), member, t0) },
	"restore":   func(c *contact.Contact) error { return c.Restore("", contact.DefaultPolicy(), member, t0) },
	"purge":     func(c *contact.Contact) error { return c.Purge(erasure(), contact.DefaultPolicy(), admin, t0) },
	"anonymize": func(c *contact.Contact) error { return c.Anonymize(erasure(), contact.DefaultPolicy(), admin, t0) },
}

// TestLifecycle covers every pair of (state, command): the state it leads
// to, or the typed error that forbids it.
func TestLifecycle(t *testing.T) {
	type want struct {
		state contact.State
		err   error
	}
	ok := func(s contact.State) want { return want{state: s} }
	no := func(err error) want { return want{err: err} }
	table := map[string]map[string]want{
		"active": {
			"update": ok(contact.StateActive), "archive": ok(contact.StateArchived), "unarchive": no(contact.ErrTransition),
			"trash": ok(contact.StateTrashed), "restore": no(contact.ErrTransition), "purge": no(contact.ErrTransition), "anonymize": no(contact.ErrTransition),
		},
		"archived": {
			"update": no(contact.ErrNotEditable), "archive": no(contact.ErrTransition), "unarchive": ok(contact.StateActive),
			"trash": ok(contact.StateTrashed), "restore": no(contact.ErrTransition), "purge": no(contact.ErrTransition), "anonymize": no(contact.ErrTransition),
		},
		"trashed (from active)": {
			"update": no(contact.ErrNotEditable), "archive": no(contact.ErrTransition), "unarchive": no(contact.ErrTransition),
			"trash": no(contact.ErrTransition), "restore": ok(contact.StateActive), "purge": ok(contact.StatePurged), "anonymize": ok(contact.StateAnonymized),
		},
		"trashed (from archived)": {
			"update": no(contact.ErrNotEditable), "archive": no(contact.ErrTransition), "unarchive": no(contact.ErrTransition),
			"trash": no(contact.ErrTransition), "restore": ok(contact.StateArchived), "purge": ok(contact.StatePurged), "anonymize": ok(contact.StateAnonymized),
		},
		"purged": {
			"update": no(contact.ErrPurged), "archive": no(contact.ErrPurged), "unarchive": no(contact.ErrPurged),
			"trash": no(contact.ErrPurged), "restore": no(contact.ErrPurged), "purge": no(contact.ErrPurged), "anonymize": no(contact.ErrPurged),
		},
		"anonymized": {
			"update": no(contact.ErrNotEditable), "archive": no(contact.ErrTransition), "unarchive": no(contact.ErrTransition),
			"trash": no(contact.ErrTransition), "restore": no(contact.ErrTransition), "purge": no(contact.ErrTransition), "anonymize": no(contact.ErrTransition),
		},
	}
	for start, row := range table {
		if len(row) != len(commands) {
			t.Fatalf("%s: table has %d commands, want %d", start, len(row), len(commands))
		}
		for name, w := range row {
			t.Run(start+"/"+name, func(t *testing.T) {
				c := reach(t, start)
				before, changes := c.Version(), len(c.Changes())
				err := commands[name](c)
				if w.err != nil {
					if !errors.Is(err, w.err) {
						t.Fatalf("got error %v, want %v", err, w.err)
					}
					if c.Version() != before || len(c.Changes()) != changes {
						t.Fatalf("a refused command recorded events: version %d -> %d", before, c.Version())
					}
					return
				}
				if err != nil {
					t.Fatalf("got error %v, want state %s", err, w.state)
				}
				if c.State() != w.state {
					t.Fatalf("got state %s, want %s", c.State(), w.state)
				}
				if c.Version() != before+1 {
					t.Fatalf("got version %d, want %d", c.Version(), before+1)
				}
			})
		}
	}
}

func TestPolicyRules(t *testing.T) {
	mustPolicy := func(s contact.PolicySettings) contact.Policy {
		t.Helper()
		p, err := s.Policy()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := contact.DefaultPolicy().Settings()

	t.Run("protected source cannot be trashed", func(t *testing.T) {
		c, err := contact.Create(contact.NewID(), "ws", contact.Draft{Personal: contact.Personal{Name: "X", ExternalID: "42"}, Source: "crm"}, member, t0)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Trash("", contact.DefaultPolicy(), member, t0); !errors.Is(err, contact.ErrProtectedSource) {
			t.Fatalf("got %v, want ErrProtectedSource", err)
		}
		open := base
		open.ProtectedSources = nil
		if err := c.Trash("", mustPolicy(open), member, t0); err != nil {
			t.Fatalf("got %v, want trash allowed once the source is no longer protected", err)
		}
	})
	t.Run("archive required before trash", func(t *testing.T) {
		s := base
		s.RequireArchiveBeforeTrash = true
		p := mustPolicy(s)
		c := reach(t, "active")
		if err := c.Trash("", p, member, t0); !errors.Is(err, contact.ErrArchiveFirst) {
			t.Fatalf("got %v, want ErrArchiveFirst", err)
		}
		if err := c.Archive("", member, t0); err != nil {
			t.Fatal(err)
		}
		if err := c.Trash("", p, member, t0); err != nil {
			t.Fatalf("got %v, want trash from archive allowed", err)
		}
	})
	t.Run("restore role", func(t *testing.T) {
		s := base
		s.RestoreRole = kernel.RoleAdmin
		p := mustPolicy(s)
		c := reach(t, "trashed (from active)")
		for _, r := range []kernel.Role{kernel.RoleMember, kernel.RoleAuditor, kernel.RoleOperator} {
			if err := c.Restore("", p, kernel.Actor{Principal: "x", Role: r}, t0); !errors.Is(err, kernel.ErrRoleNotAllowed) {
				t.Fatalf("%s: got %v, want ErrRoleNotAllowed", r, err)
			}
		}
		if err := c.Restore("", p, admin, t0); err != nil {
			t.Fatalf("admin: got %v, want restore allowed", err)
		}
	})
	t.Run("purge disabled", func(t *testing.T) {
		s := base
		s.PurgeAllowed = false
		p := mustPolicy(s)
		c := reach(t, "trashed (from active)")
		if err := c.Purge(erasure(), p, admin, t0); !errors.Is(err, contact.ErrPurgeDisabled) {
			t.Fatalf("purge: got %v, want ErrPurgeDisabled", err)
		}
		if err := c.Anonymize(erasure(), p, admin, t0); !errors.Is(err, contact.ErrPurgeDisabled) {
			t.Fatalf("anonymize: got %v, want ErrPurgeDisabled", err)
		}
	})
	t.Run("invalid settings", func(t *testing.T) {
		for name, s := range map[string]contact.PolicySettings{
			"negative retention": {RetentionDays: -1, RestoreRole: kernel.RoleMember},
			"huge retention":     {RetentionDays: contact.MaxRetentionDays + 1, RestoreRole: kernel.RoleMember},
			"auditor restores":   {RetentionDays: 30, RestoreRole: kernel.RoleAuditor},
			"bad source":         {RetentionDays: 30, RestoreRole: kernel.RoleMember, ProtectedSources: []string{"Bad Source"}},
		} {
			if _, err := s.Policy(); !errors.Is(err, kernel.ErrInvalid) {
				t.Errorf("%s: got %v, want ErrInvalid", name, err)
			}
		}
	})
	t.Run("defaults", func(t *testing.T) {
		s := contact.DefaultPolicy().Settings()
		if s.RetentionDays != 30 || s.RequireArchiveBeforeTrash || s.RestoreRole != kernel.RoleMember || !s.PurgeAllowed || len(s.ProtectedSources) != 1 || s.ProtectedSources[0] != "crm" {
			t.Fatalf("got %+v, want 30 days, no archive step, member restores, purge allowed, crm protected", s)
		}
	})
}

func TestRestoreReturnsToPreviousStateWithData(t *testing.T) {
	c := reach(t, "trashed (from archived)")
	before := c.Snapshot()
	if err := c.Restore("mistake", contact.DefaultPolicy(), member, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	after := c.Snapshot()
	if after.State != contact.StateArchived || after.Personal.Email != before.Personal.Email || !after.CreatedAt.Equal(before.CreatedAt) {
		t.Fatalf("got %+v, want archived with the same data and creation date", after)
	}
	if after.TrashedAt != nil || after.TrashedBy != nil {
		t.Fatalf("got trash marks %v %v after restore, want none", after.TrashedAt, after.TrashedBy)
	}
}

func TestValidation(t *testing.T) {
	long := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := map[string]struct {
		draft contact.Draft
		field string
	}{
		"no identity":          {contact.Draft{Personal: contact.Personal{JobTitle: "CEO"}}, "name"},
		"bad email":            {contact.Draft{Personal: contact.Personal{Email: "not-an-email"}}, "email"},
		"email with name":      {contact.Draft{Personal: contact.Personal{Email: "Ada <ada@example.com>"}}, "email"},
		"email without domain": {contact.Draft{Personal: contact.Personal{Email: "ada@localhost"}}, "email"},
		"bad phone":            {contact.Draft{Personal: contact.Personal{Phone: "call me"}}, "phone"},
		"short phone":          {contact.Draft{Personal: contact.Personal{Phone: "123"}}, "phone"},
		"long name":            {contact.Draft{Personal: contact.Personal{Name: long(contact.MaxNameLen + 1)}}, "name"},
		"control char":         {contact.Draft{Personal: contact.Personal{Name: "a\x00b"}}, "name"},
		"bad utf8":             {contact.Draft{Personal: contact.Personal{Name: "a\xffb"}}, "name"},
		"bad custom key":       {contact.Draft{Personal: contact.Personal{Name: "a", CustomFields: map[string]string{"1x": "v"}}}, "custom_fields"},
		"empty tag":            {contact.Draft{Personal: contact.Personal{Name: "a"}, Tags: []string{" "}}, "tags"},
		"bad source":           {contact.Draft{Personal: contact.Personal{Name: "a"}, Source: "Not OK"}, "source.system"},
		"external id alone":    {contact.Draft{Personal: contact.Personal{Name: "a", ExternalID: "1"}}, "source.system"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := contact.Create(contact.NewID(), "ws", tc.draft, member, t0)
			var e *kernel.Error
			if !errors.As(err, &e) || !errors.Is(err, kernel.ErrInvalid) {
				t.Fatalf("got %v, want a validation error", err)
			}
			found := false
			for _, f := range e.Fields {
				found = found || f.Field == tc.field
			}
			if !found {
				t.Fatalf("got fields %+v, want one for %s", e.Fields, tc.field)
			}
		})
	}
	t.Run("update cannot remove the last identity field", func(t *testing.T) {
		c, err := contact.Create(contact.NewID(), "ws", contact.Draft{Personal: contact.Personal{Email: "a@example.com"}}, member, t0)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Update(contact.Patch{Email: str("")}, member, t0); !errors.Is(err, kernel.ErrInvalid) {
			t.Fatalf("got %v, want ErrInvalid", err)
		}
	})
	t.Run("unchanged update records nothing", func(t *testing.T) {
		c := reach(t, "active")
		if err := c.Update(contact.Patch{Name: str("Ada Lovelace")}, member, t0); err != nil {
			t.Fatal(err)
		}
		if got := len(c.Changes()); got != 1 {
			t.Fatalf("got %d changes, want 1 (the creation only)", got)
		}
	})
}

// TestReplayEqualsCommands checks that folding the recorded events gives the
// state the commands produced, including after an erasure.
func TestReplayEqualsCommands(t *testing.T) {
	for _, start := range []string{"active", "archived", "trashed (from archived)", "purged", "anonymized"} {
		t.Run(start, func(t *testing.T) {
			c := reach(t, start)
			var history []contact.Envelope
			for i, ch := range c.Changes() {
				enc, err := contact.Encode(ch.Event)
				if err != nil {
					t.Fatal(err)
				}
				shredded := c.Shredded()
				ev, err := contact.Decode(enc.Type, enc.Schema, enc.Data, enc.Personal, shredded && enc.Personal != nil)
				if err != nil {
					t.Fatal(err)
				}
				history = append(history, contact.Envelope{Version: uint64(i + 1), At: ch.At, By: ch.By, Workspace: "ws", Event: ev})
			}
			r, err := contact.Replay(c.ID(), history)
			if err != nil {
				t.Fatal(err)
			}
			got, want := r.Snapshot(), c.Snapshot()
			if got.State != want.State || got.Version != want.Version || got.Personal.Name != want.Personal.Name || got.Shredded != want.Shredded {
				t.Fatalf("got %+v, want %+v", got, want)
			}
			if start == "purged" && (got.Personal.Email != "" || got.Tombstone == nil) {
				t.Fatalf("got %+v, want no personal data and a tombstone", got)
			}
			f := contact.FromSnapshot(got)
			if s := f.Snapshot(); s.State != got.State || s.Version != got.Version || s.Personal.Name != got.Personal.Name {
				t.Fatalf("snapshot round trip: got %+v, want %+v", s, got)
			}
		})
	}
}

func TestReplayRejectsGapsAndEventsAfterTombstone(t *testing.T) {
	id := contact.NewID()
	created := contact.Envelope{Version: 1, At: t0, Event: contact.Created{Personal: contact.Personal{Name: "a"}}}
	if _, err := contact.Replay(id, []contact.Envelope{created, {Version: 3, At: t0, Event: contact.Archived{}}}); err == nil {
		t.Fatal("got no error for a version gap, want one")
	}
	purged := contact.Envelope{Version: 2, At: t0, Event: contact.Purged{contact.Erasure{Trigger: contact.TriggerRequest, KeyID: "k"}}}
	if _, err := contact.Replay(id, []contact.Envelope{created, purged, {Version: 3, At: t0, Event: contact.Archived{}}}); err == nil {
		t.Fatal("got no error for an event after the tombstone, want one")
	}
	if _, err := contact.Replay(id, nil); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("got %v for an empty history, want ErrNotFound", err)
	}
}
