package httpapi

import (
	"net/http"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
)

// command runs a command on the contact named in the path with the request's metadata.
func (s *Server) command(c echo.Context, run func(id contact.ID, m ledger.Meta) (ledger.Result, error)) error {
	id, err := contactID(c)
	if err != nil {
		return err
	}
	m, err := meta(c)
	if err != nil {
		return err
	}
	res, err := run(id, m)
	if err != nil {
		return err
	}
	return commandResult(c, http.StatusOK, res)
}

type tagsRequest struct {
	Add    []string `json:"add"`
	Remove []string `json:"remove"`
}

func (s *Server) changeTags(c echo.Context) error {
	var r tagsRequest
	if err := decode(c, &r, false); err != nil {
		return err
	}
	return s.command(c, func(id contact.ID, m ledger.Meta) (ledger.Result, error) {
		return s.svc.ChangeTags(c.Request().Context(), principal(c).Workspace, id, m, r.Add, r.Remove)
	})
}

type noteRequest struct {
	Text string `json:"text"`
}

// NoteJSON is a note as the API shows it.
type NoteJSON struct {
	ID       string    `json:"id"`
	Text     string    `json:"text"`
	At       time.Time `json:"at"`
	By       string    `json:"by"`
	Shredded bool      `json:"shredded,omitempty"`
}

func noteJSON(n contact.Note) NoteJSON {
	return NoteJSON{ID: n.ID, Text: n.Text, At: n.At, By: n.By.Principal, Shredded: n.Shredded}
}

func (s *Server) addNote(c echo.Context) error {
	id, err := contactID(c)
	if err != nil {
		return err
	}
	var r noteRequest
	if err := decode(c, &r, false); err != nil {
		return err
	}
	m, err := meta(c)
	if err != nil {
		return err
	}
	res, noteID, err := s.svc.AddNote(c.Request().Context(), principal(c).Workspace, id, m, r.Text)
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag(res.Version))
	c.Response().Header().Set("Location", "/v1/contacts/"+id.String()+"/notes")
	return ok(c, http.StatusCreated, map[string]any{"id": noteID, "contact_id": id.String(), "version": res.Version, "position": res.Position.String()})
}

func (s *Server) listNotes(c echo.Context) error {
	id, err := contactID(c)
	if err != nil {
		return err
	}
	notes, err := s.svc.Notes(c.Request().Context(), principal(c).Workspace, id)
	if err != nil {
		return err
	}
	out := make([]NoteJSON, 0, len(notes))
	for _, n := range notes {
		out = append(out, noteJSON(n))
	}
	return ok(c, http.StatusOK, map[string]any{"items": out})
}

type listRequest struct {
	Status string `json:"status"`
}

func (s *Server) setList(c echo.Context) error {
	var r listRequest
	if err := decode(c, &r, false); err != nil {
		return err
	}
	st, err := contact.ParseListStatus(r.Status)
	if err != nil {
		return err
	}
	return s.command(c, func(id contact.ID, m ledger.Meta) (ledger.Result, error) {
		return s.svc.SetList(c.Request().Context(), principal(c).Workspace, id, m, c.Param("list"), st)
	})
}

func (s *Server) removeList(c echo.Context) error {
	return s.command(c, func(id contact.ID, m ledger.Meta) (ledger.Result, error) {
		return s.svc.RemoveList(c.Request().Context(), principal(c).Workspace, id, m, c.Param("list"))
	})
}

type linkRequest struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

func (s *Server) addLink(c echo.Context) error {
	var r linkRequest
	if err := decode(c, &r, false); err != nil {
		return err
	}
	return s.command(c, func(id contact.ID, m ledger.Meta) (ledger.Result, error) {
		return s.svc.AddLink(c.Request().Context(), principal(c).Workspace, id, m, contact.Link{Kind: r.Kind, Ref: r.ID})
	})
}

func (s *Server) removeLink(c echo.Context) error {
	return s.command(c, func(id contact.ID, m ledger.Meta) (ledger.Result, error) {
		return s.svc.RemoveLink(c.Request().Context(), principal(c).Workspace, id, m, contact.Link{Kind: c.Param("kind"), Ref: c.Param("ref")})
	})
}

type reasonRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) spam(mark bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		var r reasonRequest
		if err := decode(c, &r, true); err != nil {
			return err
		}
		return s.command(c, func(id contact.ID, m ledger.Meta) (ledger.Result, error) {
			if mark {
				return s.svc.MarkSpam(c.Request().Context(), principal(c).Workspace, id, m, r.Reason)
			}
			return s.svc.UnmarkSpam(c.Request().Context(), principal(c).Workspace, id, m, r.Reason)
		})
	}
}

func (s *Server) getPolicy(c echo.Context) error {
	w, err := s.svc.Workspace(c.Request().Context(), principal(c).Workspace)
	if err != nil {
		return err
	}
	return ok(c, http.StatusOK, w.Policy.Settings())
}

// policyRequest is the body of PUT /v1/workspace/policy: every setting,
// since a PUT replaces the whole policy and a forgotten field must not
// silently turn retention off.
type policyRequest struct {
	RetentionDays             *int         `json:"retention_days"`
	RequireArchiveBeforeTrash *bool        `json:"require_archive_before_trash"`
	RestoreRole               *kernel.Role `json:"restore_role"`
	PurgeAllowed              *bool        `json:"purge_allowed"`
	ProtectedSources          []string     `json:"protected_sources"`
	// IdentityUniqueness is the one setting a PUT may leave out (it came
	// after the others): absent, it is the default, until_purged.
	IdentityUniqueness contact.Uniqueness `json:"identity_uniqueness"`
}

func (s *Server) putPolicy(c echo.Context) error {
	var r policyRequest
	if err := decode(c, &r, false); err != nil {
		return err
	}
	var missing []kernel.FieldError
	for _, f := range []struct {
		name string
		set  bool
	}{{"retention_days", r.RetentionDays != nil}, {"require_archive_before_trash", r.RequireArchiveBeforeTrash != nil},
		{"restore_role", r.RestoreRole != nil}, {"purge_allowed", r.PurgeAllowed != nil}, {"protected_sources", r.ProtectedSources != nil}} {
		if !f.set {
			missing = append(missing, kernel.FieldError{Field: f.name, Message: "is required (PUT replaces the whole policy)"})
		}
	}
	if len(missing) > 0 {
		return kernel.Invalid(missing...)
	}
	ps := contact.PolicySettings{RetentionDays: *r.RetentionDays, RequireArchiveBeforeTrash: *r.RequireArchiveBeforeTrash,
		RestoreRole: *r.RestoreRole, PurgeAllowed: *r.PurgeAllowed, ProtectedSources: r.ProtectedSources, IdentityUniqueness: r.IdentityUniqueness}
	if err := s.svc.Recheck(c.Request().Context(), principal(c)); err != nil {
		return err
	}
	p, err := s.svc.SetPolicy(c.Request().Context(), principal(c).Workspace, ps)
	if err != nil {
		return err
	}
	return ok(c, http.StatusOK, p.Settings())
}
