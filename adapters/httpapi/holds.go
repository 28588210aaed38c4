package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/hold"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
)

type holdRequest struct {
	Case   string `json:"case"`
	Reason string `json:"reason"`
}

// placeHold is POST /v1/contacts/{id}/hold: the contact with its hold.
func (s *Server) placeHold(c echo.Context) error {
	var r holdRequest
	if err := decode(c, &r, true); err != nil {
		return err
	}
	return s.command(c, func(id contact.ID, m ledger.Meta) (ledger.Result, error) {
		res, _, err := s.svc.PlaceHold(c.Request().Context(), principal(c).Workspace, id, m, r.Case, r.Reason)
		return res, err
	})
}

// releaseHold is DELETE /v1/contacts/{id}/hold, with an optional reason.
func (s *Server) releaseHold(c echo.Context) error {
	var r reasonRequest
	if err := decode(c, &r, true); err != nil {
		return err
	}
	return s.command(c, func(id contact.ID, m ledger.Meta) (ledger.Result, error) {
		return s.svc.ReleaseHold(c.Request().Context(), principal(c).Workspace, id, m, r.Reason)
	})
}

// WorkspaceHoldJSON is the workspace's legal hold as the API shows it.
type WorkspaceHoldJSON struct {
	ID     string       `json:"id"`
	Case   string       `json:"case,omitempty"`
	Reason string       `json:"reason,omitempty"`
	At     time.Time    `json:"at"`
	By     kernel.Actor `json:"by"`
}

func workspaceHoldJSON(h *hold.Hold) *WorkspaceHoldJSON {
	if h == nil {
		return nil
	}
	return &WorkspaceHoldJSON{ID: h.ID, Case: h.Case, Reason: h.Reason, At: h.At, By: h.By}
}

// HeldContactJSON is one contact of the holds listing.
type HeldContactJSON struct {
	ContactID string        `json:"contact_id"`
	State     contact.State `json:"state"`
	Hold      contact.Hold  `json:"hold"`
}

var holdsParams = map[string]bool{"limit": true, "after": true}

// listHolds is GET /v1/holds: the workspace's hold and its held contacts,
// a page at a time (after: the last contact_id of the previous page).
func (s *Server) listHolds(c echo.Context) error {
	qs, err := strictQuery(c, holdsParams)
	if err != nil {
		return err
	}
	limit := 100
	var errs []kernel.FieldError
	if v := qs.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > ledger.MaxHoldsPage {
			errs = append(errs, kernel.FieldError{Field: "limit", Message: "must be a whole number from 1 to " + strconv.Itoa(ledger.MaxHoldsPage)})
		}
		limit = n
	}
	after := qs.Get("after")
	if after != "" {
		id, err := contact.ParseID(after)
		if err != nil {
			errs = append(errs, kernel.FieldError{Field: "after", Message: "must be a contact id from the previous page"})
		}
		after = id.String()
	}
	if len(errs) > 0 {
		return kernel.Invalid(errs...)
	}
	wh, held, err := s.svc.Holds(c.Request().Context(), principal(c).Workspace, after, limit+1)
	if err != nil {
		return err
	}
	out := map[string]any{"workspace_hold": workspaceHoldJSON(wh), "next_after": nil}
	if len(held) > limit {
		held = held[:limit]
		out["next_after"] = held[limit-1].ID.String()
	}
	items := make([]HeldContactJSON, 0, len(held))
	for _, h := range held {
		if h.Hold == nil {
			continue
		}
		items = append(items, HeldContactJSON{ContactID: h.ID.String(), State: h.State, Hold: *h.Hold})
	}
	out["items"] = items
	return ok(c, http.StatusOK, out)
}

// placeWorkspaceHold is POST /v1/workspace/hold: 201 with the hold.
func (s *Server) placeWorkspaceHold(c echo.Context) error {
	var r holdRequest
	if err := decode(c, &r, true); err != nil {
		return err
	}
	m, err := meta(c)
	if err != nil {
		return err
	}
	h, err := s.svc.PlaceWorkspaceHold(c.Request().Context(), principal(c).Workspace, m, r.Case, r.Reason)
	if err != nil {
		return err
	}
	return ok(c, http.StatusCreated, workspaceHoldJSON(h))
}

// releaseWorkspaceHold is DELETE /v1/workspace/hold: 200 with the hold it released.
func (s *Server) releaseWorkspaceHold(c echo.Context) error {
	var r reasonRequest
	if err := decode(c, &r, true); err != nil {
		return err
	}
	m, err := meta(c)
	if err != nil {
		return err
	}
	h, err := s.svc.ReleaseWorkspaceHold(c.Request().Context(), principal(c).Workspace, m, r.Reason)
	if err != nil {
		return err
	}
	return ok(c, http.StatusOK, workspaceHoldJSON(h))
}
