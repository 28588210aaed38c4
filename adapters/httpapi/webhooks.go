package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
	"github.com/oklog/ulid/v2"
)

// webhookID checks the :id of a webhook route.
func webhookID(c echo.Context) (string, error) {
	id := c.Param("id")
	rest, ok := strings.CutPrefix(id, "wh_")
	if _, err := ulid.ParseStrict(rest); !ok || err != nil {
		return "", badRequest("invalid-id", "not a valid webhook id (wh_ and a 26-character ULID)")
	}
	return id, nil
}

// webhookRequest is the body of a create or an update: absent fields are
// left as they are (JSON merge patch).
type webhookRequest struct {
	URL             *string   `json:"url"`
	Description     *string   `json:"description"`
	Types           *[]string `json:"types"`
	IncludePersonal *bool     `json:"include_personal"`
	Enabled         *bool     `json:"enabled"`
}

func (r webhookRequest) input(c echo.Context) (ledger.WebhookInput, error) {
	if r.IncludePersonal != nil && *r.IncludePersonal {
		if err := mayReceivePersonal(c); err != nil {
			return ledger.WebhookInput{}, err
		}
	}
	if r.Types != nil && *r.Types == nil {
		return ledger.WebhookInput{}, kernel.Invalid(kernel.FieldError{Field: "types", Message: "must be an array ([] for every type)"})
	}
	return ledger.WebhookInput{URL: r.URL, Description: r.Description, Types: r.Types, IncludePersonal: r.IncludePersonal, Enabled: r.Enabled}, nil
}

func (s *Server) createWebhook(c echo.Context) error {
	var r webhookRequest
	if err := decode(c, &r, false); err != nil {
		return err
	}
	in, err := r.input(c)
	if err != nil {
		return err
	}
	w, secret, err := s.svc.CreateWebhook(c.Request().Context(), principal(c).Workspace, principal(c).Actor(), in)
	if err != nil {
		return err
	}
	s.kick()
	c.Set(secretAnswer, true)
	out := wire.WebhookOf(w)
	out.Secret = secret
	c.Response().Header().Set("Location", "/v1/webhooks/"+w.ID)
	return ok(c, http.StatusCreated, out)
}

func (s *Server) listWebhooks(c echo.Context) error {
	list, err := s.svc.Webhooks(c.Request().Context(), principal(c).Workspace)
	if err != nil {
		return err
	}
	items := make([]wire.WebhookJSON, 0, len(list))
	for _, w := range list {
		items = append(items, wire.WebhookOf(w))
	}
	return ok(c, http.StatusOK, map[string]any{"items": items})
}

func (s *Server) getWebhook(c echo.Context) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	st, err := s.svc.WebhookStatus(c.Request().Context(), principal(c).Workspace, id)
	if err != nil {
		return err
	}
	return ok(c, http.StatusOK, wire.WebhookStatusOf(st))
}

func (s *Server) updateWebhook(c echo.Context) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	var r webhookRequest
	if err := decode(c, &r, false); err != nil {
		return err
	}
	in, err := r.input(c)
	if err != nil {
		return err
	}
	w, err := s.svc.UpdateWebhook(c.Request().Context(), principal(c).Workspace, id, principal(c).Actor(), in)
	if err != nil {
		return err
	}
	s.kick()
	return ok(c, http.StatusOK, wire.WebhookOf(w))
}

func (s *Server) deleteWebhook(c echo.Context) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	if err := s.svc.DeleteWebhook(c.Request().Context(), principal(c).Workspace, id); err != nil {
		return err
	}
	s.kick()
	return c.NoContent(http.StatusNoContent)
}

type rotateRequest struct {
	// OverlapSeconds is how long the previous secret keeps signing (24 h by default).
	OverlapSeconds *int64 `json:"overlap_seconds"`
}

func (s *Server) rotateWebhookSecret(c echo.Context) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	var r rotateRequest
	if err := decode(c, &r, true); err != nil {
		return err
	}
	overlap := ledger.DefaultSecretOverlap
	if r.OverlapSeconds != nil {
		if *r.OverlapSeconds < 0 || *r.OverlapSeconds > int64(ledger.MaxSecretOverlap/time.Second) {
			return kernel.Invalid(kernel.FieldError{Field: "overlap_seconds", Message: "must be from 0 to 604800 (7 days)"})
		}
		overlap = time.Duration(*r.OverlapSeconds) * time.Second
	}
	w, secret, err := s.svc.RotateWebhookSecret(c.Request().Context(), principal(c).Workspace, id, overlap)
	if err != nil {
		return err
	}
	s.kick()
	c.Set(secretAnswer, true)
	out := wire.WebhookOf(w)
	out.Secret = secret
	return ok(c, http.StatusOK, out)
}

// AttemptJSON is one delivery attempt.
type AttemptJSON struct {
	ID        string    `json:"id"`
	EventID   string    `json:"event_id"`
	EventType string    `json:"event_type"`
	ContactID string    `json:"contact_id,omitempty"`
	Position  string    `json:"position,omitempty"`
	Attempt   int       `json:"attempt"`
	At        time.Time `json:"at"`
	// Status is the receiver's HTTP status (0: it did not answer).
	Status    int     `json:"status"`
	Outcome   string  `json:"outcome"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

func attemptJSON(a ledger.DeliveryAttempt) AttemptJSON {
	out := AttemptJSON{ID: a.ID, EventID: a.EventID, EventType: a.EventType, ContactID: a.ContactID, Attempt: a.Attempt, At: a.At,
		Status: a.Status, Outcome: a.Outcome, LatencyMS: float64(a.Latency.Microseconds()) / 1000, Error: a.Error}
	if !a.Position.IsZero() {
		out.Position = a.Position.String()
	}
	return out
}

var deliveryParams = map[string]bool{"before": true, "event_id": true, "limit": true}

// webhookDeliveries answers a page of a subscription's attempts, newest
// first; next_before continues.
func (s *Server) webhookDeliveries(c echo.Context) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	qs, err := strictQuery(c, deliveryParams)
	if err != nil {
		return err
	}
	q := ledger.AttemptQuery{Limit: 50}
	var errs []kernel.FieldError
	if v := qs.Get("before"); v != "" {
		if _, err := ulid.ParseStrict(v); err != nil {
			errs = append(errs, kernel.FieldError{Field: "before", Message: "must be the id of an attempt"})
		}
		q.Before = v
	}
	if v := qs.Get("event_id"); v != "" {
		if len(v) > 64 || !requestIDPattern.MatchString(v) {
			errs = append(errs, kernel.FieldError{Field: "event_id", Message: "must be an event id"})
		}
		q.EventID = v
	}
	if v := qs.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			errs = append(errs, kernel.FieldError{Field: "limit", Message: "must be a whole number from 1 to 200"})
		}
		q.Limit = n
	}
	if len(errs) > 0 {
		return kernel.Invalid(errs...)
	}
	list, err := s.svc.WebhookDeliveries(c.Request().Context(), principal(c).Workspace, id, ledger.AttemptQuery{Before: q.Before, EventID: q.EventID, Limit: q.Limit + 1})
	if err != nil {
		return err
	}
	out := map[string]any{}
	if len(list) > q.Limit {
		list = list[:q.Limit]
		out["next_before"] = list[len(list)-1].ID
	}
	items := make([]AttemptJSON, len(list))
	for i, a := range list {
		items[i] = attemptJSON(a)
	}
	out["items"] = items
	return ok(c, http.StatusOK, out)
}

// replayRequest takes its time as a string, so that a bad one is a 422
// naming since, as a restore job's times are.
type replayRequest struct {
	After *string `json:"after"`
	Since *string `json:"since"`
}

// replayWebhook delivers again every event after a position, or from a time on.
func (s *Server) replayWebhook(c echo.Context) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	var r replayRequest
	if err := decode(c, &r, false); err != nil {
		return err
	}
	if (r.After == nil) == (r.Since == nil) {
		return kernel.Invalid(kernel.FieldError{Field: "after", Message: "give either after (a position) or since (a time)"})
	}
	var after kernel.Position
	var since time.Time
	if r.After != nil {
		if after, err = kernel.ParsePosition(*r.After); err != nil {
			return kernel.Invalid(kernel.FieldError{Field: "after", Message: "is not a position returned by this service"})
		}
	} else {
		var ferr *kernel.FieldError
		if since, ferr = wire.ParseTime("since", *r.Since); ferr != nil || since.IsZero() {
			return kernel.Invalid(kernel.FieldError{Field: "since", Message: "must be a time in RFC 3339 form, such as 2026-01-31T00:00:00Z"})
		}
	}
	if err := s.svc.ReplayWebhook(c.Request().Context(), principal(c).Workspace, id, after, since); err != nil {
		return err
	}
	s.kick()
	return s.getWebhook(c)
}

// testWebhook sends a test message now and answers the attempt.
func (s *Server) testWebhook(c echo.Context) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	if err := decode(c, &struct{}{}, true); err != nil {
		return err
	}
	a, err := s.svc.TestWebhook(c.Request().Context(), principal(c).Workspace, id)
	if err != nil {
		return err
	}
	return ok(c, http.StatusOK, attemptJSON(a))
}
