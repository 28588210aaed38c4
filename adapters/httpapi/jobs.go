package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
)

// restoreJobRequest takes its times as strings, so that a bad one is a
// 422 naming its field, as the list's query parameters are.
type restoreJobRequest struct {
	DeletedAfter  string `json:"deleted_after"`
	DeletedBefore string `json:"deleted_before"`
	DeletedBy     string `json:"deleted_by"`
	Q             string `json:"q"`
	Tag           string `json:"tag"`
	Reason        string `json:"reason"`
	Operation     string `json:"operation"`
	OnConflict    string `json:"on_conflict"`
	DryRun        bool   `json:"dry_run"`
}

// RestoreJobJSON is a restore job as the API shows it.
type RestoreJobJSON struct {
	ID string `json:"id"`
	// Operation is the job's operation id, the causation id of its restores.
	Operation       string        `json:"operation"`
	KeepBoth        bool          `json:"keep_both,omitempty"`
	State           job.State     `json:"state"`
	Filter          job.Filter    `json:"filter"`
	Reason          string        `json:"reason,omitempty"`
	Total           int           `json:"total"`
	Restored        int           `json:"restored"`
	Failed          int           `json:"failed"`
	Failures        []job.Failure `json:"failures"`
	CancelRequested bool          `json:"cancel_requested"`
	Error           string        `json:"error,omitempty"`
	RequestedBy     string        `json:"requested_by"`
	CreatedAt       time.Time     `json:"created_at"`
	StartedAt       *time.Time    `json:"started_at,omitempty"`
	FinishedAt      *time.Time    `json:"finished_at,omitempty"`
}

func restoreJobJSON(j *job.Job) RestoreJobJSON {
	out := RestoreJobJSON{ID: j.ID, Operation: ledger.OperationJob + j.ID, KeepBoth: j.KeepBoth, State: j.State, Filter: j.Filter, Reason: j.Reason, Total: j.Total, Restored: j.Restored,
		Failed: len(j.Failures), Failures: j.Failures, CancelRequested: j.CancelRequested, Error: j.Error,
		RequestedBy: j.By.Principal, CreatedAt: j.CreatedAt}
	if out.Failures == nil {
		out.Failures = []job.Failure{}
	}
	if !j.StartedAt.IsZero() {
		t := j.StartedAt
		out.StartedAt = &t
	}
	if !j.FinishedAt.IsZero() {
		t := j.FinishedAt
		out.FinishedAt = &t
	}
	return out
}

func (s *Server) createRestoreJob(c echo.Context) error {
	var r restoreJobRequest
	if err := decode(c, &r, true); err != nil {
		return err
	}
	var errs []kernel.FieldError
	for _, f := range []struct {
		name, v string
		max     int
	}{{"q", r.Q, contact.MaxNameLen}, {"tag", r.Tag, contact.MaxTagLen}, {"deleted_by", r.DeletedBy, 100}} {
		if len(f.v) > f.max {
			errs = append(errs, kernel.FieldError{Field: f.name, Message: "is too long"})
		}
	}
	keepBoth, err := onConflict(ledger.Restore, r.OnConflict)
	if err != nil {
		return err
	}
	f := ledger.RestoreFilter{DeletedBy: r.DeletedBy, Q: strings.TrimSpace(r.Q), Tag: r.Tag, Reason: r.Reason, Operation: r.Operation, KeepBoth: keepBoth}
	var ferr *kernel.FieldError
	if f.DeletedAfter, ferr = wire.ParseTime("deleted_after", r.DeletedAfter); ferr != nil {
		errs = append(errs, *ferr)
	}
	if f.DeletedBefore, ferr = wire.ParseTime("deleted_before", r.DeletedBefore); ferr != nil {
		errs = append(errs, *ferr)
	}
	if len(errs) > 0 {
		return kernel.Invalid(errs...)
	}
	m, err := meta(c)
	if err != nil {
		return err
	}
	if r.DryRun {
		pv, err := s.svc.PreviewRestoreJob(c.Request().Context(), principal(c).Workspace, m, f)
		if err != nil {
			return err
		}
		return ok(c, http.StatusOK, s.restorePreviewJSON(c, pv))
	}
	j, err := s.svc.StartRestoreJob(c.Request().Context(), principal(c).Workspace, m, f)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/v1/restore-jobs/"+j.ID)
	return ok(c, http.StatusAccepted, restoreJobJSON(j))
}

func (s *Server) getRestoreJob(c echo.Context) error {
	j, err := s.svc.RestoreJob(c.Request().Context(), principal(c).Workspace, c.Param("id"))
	if err != nil {
		return err
	}
	return ok(c, http.StatusOK, restoreJobJSON(j))
}

func (s *Server) cancelRestoreJob(c echo.Context) error {
	m, err := meta(c)
	if err != nil {
		return err
	}
	j, err := s.svc.CancelRestoreJob(c.Request().Context(), principal(c).Workspace, c.Param("id"), m)
	if err != nil {
		return err
	}
	return ok(c, http.StatusAccepted, restoreJobJSON(j))
}

// restorePreviewJSON renders a restore job's dry run, each contact as a
// bulk restore shows it.
func (s *Server) restorePreviewJSON(c echo.Context, pv ledger.RestorePreview) map[string]any {
	return map[string]any{
		"dry_run":   true,
		"filter":    pv.Filter,
		"total":     pv.Total,
		"results":   s.bulkItemsJSON(c, pv.Items),
		"truncated": pv.Truncated,
		"totals":    map[string]int{"planned": pv.Total, "ok": pv.OK, "failed": pv.Failed},
	}
}
