package httpapi

import (
	"net/http"
	"slices"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
)

type bulkRequest struct {
	Action        string   `json:"action"`
	IDs           []string `json:"ids"`
	ExpectedCount *int     `json:"expected_count"`
	Reason        string   `json:"reason"`
}

// BulkItemJSON is the result of one contact of a bulk request.
type BulkItemJSON struct {
	ID       string        `json:"id"`
	Status   string        `json:"status"`
	State    contact.State `json:"state,omitempty"`
	Version  uint64        `json:"version,omitempty"`
	Position string        `json:"position,omitempty"`
	Problem  *Problem      `json:"problem,omitempty"`
}

func (s *Server) bulk(c echo.Context) error {
	var r bulkRequest
	if err := decode(c, &r, false); err != nil {
		return err
	}
	if r.ExpectedCount == nil {
		return contact.Invalid(contact.FieldError{Field: "expected_count", Message: "is required: the number of contacts the user confirmed"})
	}
	t := ledger.Transition(r.Action)
	if slices.Contains(ledger.Transitions, t) && !slices.Contains(Permissions["contacts."+r.Action], principal(c).Role) {
		return contact.Errorf(contact.ErrRoleNotAllowed, "the %s role may not %s contacts", principal(c).Role, r.Action)
	}
	m, err := meta(c)
	if err != nil {
		return err
	}
	if m.IfMatch != nil {
		return badRequest("if-match-not-supported", "If-Match names one contact's version; bulk requests do not take it")
	}
	items, err := s.svc.Bulk(c.Request().Context(), principal(c).Workspace, m, ledger.BulkRequest{
		Action: t, IDs: r.IDs, ExpectedCount: *r.ExpectedCount, Input: ledger.TransitionInput{Reason: r.Reason},
	})
	if err != nil {
		return err
	}
	out := make([]BulkItemJSON, len(items))
	okCount := 0
	for i, it := range items {
		out[i] = BulkItemJSON{ID: it.ID, Status: "ok"}
		if it.Err != nil {
			p := s.problem(c, it.Err)
			p.RequestID, p.Instance = "", "/v1/contacts/"+it.ID
			out[i].Status, out[i].Problem = "error", &p
			continue
		}
		okCount++
		out[i].State, out[i].Version, out[i].Position = it.Result.Contact.State, it.Result.Version, it.Result.Position.String()
	}
	return ok(c, http.StatusOK, map[string]any{
		"action":  r.Action,
		"results": out,
		"totals":  map[string]int{"requested": len(items), "ok": okCount, "failed": len(items) - okCount},
	})
}
