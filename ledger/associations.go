package ledger

import (
	"context"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
)

// ChangeTags adds and removes tags of an active contact.
func (s *Contacts) ChangeTags(ctx context.Context, workspace string, id contact.ID, meta Meta, add, remove []string) (Result, error) {
	return s.execute(ctx, workspace, id, meta, func(l loaded, _ contact.Policy, now time.Time) error {
		return l.c.ChangeTags(add, remove, meta.Actor, now)
	})
}

// AddNote appends a note, sealed under the contact's key, and returns its id with the result.
func (s *Contacts) AddNote(ctx context.Context, workspace string, id contact.ID, meta Meta, text string) (Result, string, error) {
	var noteID string
	res, err := s.execute(ctx, workspace, id, meta, func(l loaded, _ contact.Policy, now time.Time) error {
		var err error
		noteID, err = l.c.AddNote(text, meta.Actor, now)
		return err
	})
	return res, noteID, err
}

// Notes returns a contact's notes, oldest first, read from its stream.
// Errors: contact.ErrPurged for a purged contact, whose notes are unreadable.
func (s *Contacts) Notes(ctx context.Context, workspace string, id contact.ID) ([]contact.Note, error) {
	l, err := s.load(ctx, workspace, id)
	if err != nil {
		return nil, err
	}
	if l.c.State() == contact.StatePurged {
		return nil, kernel.Errorf(contact.ErrPurged, "the contact was permanently deleted; its notes are unreadable")
	}
	return l.c.Notes(), nil
}

// SetList puts an active contact on a list with a status.
func (s *Contacts) SetList(ctx context.Context, workspace string, id contact.ID, meta Meta, list string, status contact.ListStatus) (Result, error) {
	return s.execute(ctx, workspace, id, meta, func(l loaded, _ contact.Policy, now time.Time) error {
		return l.c.SetList(list, status, meta.Actor, now)
	})
}

// RemoveList takes an active contact off a list.
func (s *Contacts) RemoveList(ctx context.Context, workspace string, id contact.ID, meta Meta, list string) (Result, error) {
	return s.execute(ctx, workspace, id, meta, func(l loaded, _ contact.Policy, now time.Time) error {
		return l.c.RemoveList(list, meta.Actor, now)
	})
}

// AddLink links an active contact to a record.
func (s *Contacts) AddLink(ctx context.Context, workspace string, id contact.ID, meta Meta, link contact.Link) (Result, error) {
	return s.execute(ctx, workspace, id, meta, func(l loaded, _ contact.Policy, now time.Time) error {
		return l.c.AddLink(link, meta.Actor, now)
	})
}

// RemoveLink unlinks an active contact from a record.
func (s *Contacts) RemoveLink(ctx context.Context, workspace string, id contact.ID, meta Meta, link contact.Link) (Result, error) {
	return s.execute(ctx, workspace, id, meta, func(l loaded, _ contact.Policy, now time.Time) error {
		return l.c.RemoveLink(link, meta.Actor, now)
	})
}

// MarkSpam marks a contact as spam: from then on create and import refuse
// its email and phone, until UnmarkSpam.
func (s *Contacts) MarkSpam(ctx context.Context, workspace string, id contact.ID, meta Meta, reason string) (Result, error) {
	res, err := s.execute(ctx, workspace, id, meta, func(l loaded, _ contact.Policy, now time.Time) error {
		return l.c.MarkSpam(reason, meta.Actor, now)
	})
	return s.spamApplied(ctx, res, err)
}

// spamApplied returns a spam mark's result once the identity index has
// applied it. The mark, which is rare, waits, so that creates and imports,
// which are not, need not: one that starts after the mark was answered
// (on any replica: the index is in the shared store) finds it there.
func (s *core) spamApplied(ctx context.Context, res Result, err error) (Result, error) {
	if err != nil || res.EventID == "" {
		return res, err
	}
	if err := s.progress.WaitFor(ctx, identityProjection, res.Position); err != nil {
		return res, err
	}
	return res, nil
}

// UnmarkSpam lifts a contact's spam mark.
func (s *Contacts) UnmarkSpam(ctx context.Context, workspace string, id contact.ID, meta Meta, reason string) (Result, error) {
	res, err := s.execute(ctx, workspace, id, meta, func(l loaded, _ contact.Policy, now time.Time) error {
		return l.c.UnmarkSpam(reason, meta.Actor, now)
	})
	return s.spamApplied(ctx, res, err)
}

// caughtUp waits until the named projection has applied every event
// committed so far, so that a query of it reads the caller's own writes.
func (s *core) caughtUp(ctx context.Context, projection string) error {
	head, err := s.events.Head(ctx)
	if err != nil {
		return err
	}
	return s.progress.WaitFor(ctx, projection, head)
}

// identityProjection is the name of the projection behind the Identities port.
const identityProjection = "identities"

// spamCheck refuses personal data whose email or phone belongs to a
// spam-marked contact, among ms, the identity index's matches of them.
func spamCheck(ms []IdentityMatch) error {
	for _, m := range ms {
		if m.Spam && (m.ByEmail || m.ByPhone) {
			what := "email"
			if !m.ByEmail {
				what = "phone"
			}
			return kernel.Errorf(contact.ErrSpam, "this %s belongs to contact %s, which is marked as spam; unmark it (POST /v1/contacts/%s/unspam) to allow it", what, m.ID, m.ID)
		}
	}
	return nil
}

// identityOf returns the blind indexes of personal data: its email, phone and source identity.
func (s *core) identityOf(ctx context.Context, workspace, source string, p contact.Personal) (IdentityQuery, error) {
	b, err := s.vault.BlindIndex(ctx, workspace)
	if err != nil {
		return IdentityQuery{}, err
	}
	q := IdentityQuery{
		EmailIndex: b.Of("email", contact.NormalizeEmail(p.Email)),
		PhoneIndex: b.Of("phone", contact.NormalizePhone(p.Phone)),
	}
	if source != "" && p.ExternalID != "" {
		q.ExtIndex = b.Of("ext", source+"\x00"+p.ExternalID)
	}
	return q, nil
}

// SetPolicy validates and saves a workspace's policy.
func (s *Access) SetPolicy(ctx context.Context, workspace string, ps contact.PolicySettings) (contact.Policy, error) {
	p, err := ps.Policy()
	if err != nil {
		return contact.Policy{}, err
	}
	defer s.workspaces.forget(workspace)
	if err := s.dir.SavePolicy(ctx, workspace, p); err != nil {
		return contact.Policy{}, err
	}
	return p, nil
}
