package httpapi

import (
	"net/http"
	"slices"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
)

type bulkRequest struct {
	Action        string   `json:"action"`
	IDs           []string `json:"ids"`
	ExpectedCount *int     `json:"expected_count"`
	Reason        string   `json:"reason"`
	DryRun        bool     `json:"dry_run"`
	OnConflict    string   `json:"on_conflict"`
}

// BulkItemJSON is the result of one contact of a bulk request.
type BulkItemJSON struct {
	ID       string        `json:"id"`
	Status   string        `json:"status"`
	State    contact.State `json:"state,omitempty"`
	Version  uint64        `json:"version,omitempty"`
	Position string        `json:"position,omitempty"`
	Problem  *Problem      `json:"problem,omitempty"`
	// Effect is what the action did to the contact, or in a dry run would do.
	Effect *EffectJSON `json:"effect,omitempty"`
}

func (s *Server) bulk(c echo.Context) error {
	var r bulkRequest
	if err := decode(c, &r, false); err != nil {
		return err
	}
	if r.ExpectedCount == nil {
		return kernel.Invalid(kernel.FieldError{Field: "expected_count", Message: "is required: the number of contacts the user confirmed"})
	}
	t := ledger.Transition(r.Action)
	if slices.Contains(ledger.Transitions, t) && !slices.Contains(Permissions["contacts."+r.Action], principal(c).Role) {
		return kernel.Errorf(kernel.ErrRoleNotAllowed, "the %s role may not %s contacts", principal(c).Role, r.Action)
	}
	keepBoth, err := onConflict(t, r.OnConflict)
	if err != nil {
		return err
	}
	m, err := meta(c)
	if err != nil {
		return err
	}
	if m.IfMatch != nil {
		return badRequest("if-match-not-supported", "If-Match names one contact's version; bulk requests do not take it")
	}
	m.DryRun = r.DryRun
	items, err := s.svc.Bulk(c.Request().Context(), principal(c).Workspace, m, ledger.BulkRequest{
		Action: t, IDs: r.IDs, ExpectedCount: *r.ExpectedCount, Input: ledger.TransitionInput{Reason: r.Reason, KeepBoth: keepBoth},
	})
	if err != nil {
		return err
	}
	out := s.bulkItemsJSON(c, items)
	okCount := 0
	for _, it := range out {
		if it.Status == "ok" {
			okCount++
		}
	}
	return ok(c, http.StatusOK, map[string]any{
		"action":    r.Action,
		"operation": ledger.OperationBulk + m.CorrelationID,
		"dry_run":   r.DryRun,
		"results":   out,
		"totals":    map[string]int{"requested": len(items), "ok": okCount, "failed": len(items) - okCount},
	})
}

// bulkItemsJSON renders the results of many contacts: each its own
// outcome, what the action did (or would do), or its problem.
func (s *Server) bulkItemsJSON(c echo.Context, items []ledger.BulkItem) []BulkItemJSON {
	out := make([]BulkItemJSON, len(items))
	for i, it := range items {
		out[i] = BulkItemJSON{ID: it.ID, Status: "ok"}
		if it.Err != nil {
			p := s.problem(c, it.Err)
			p.RequestID, p.Instance = "", "/v1/contacts/"+it.ID
			out[i].Status, out[i].Problem = "error", &p
			continue
		}
		out[i].State, out[i].Version, out[i].Effect = it.Result.Contact.State, it.Result.Version, effectJSON(it.Result.Effect)
		if !it.Result.DryRun {
			out[i].Position = it.Result.Position.String()
		}
	}
	return out
}
