package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
)

// RetryAfterSeconds is the Retry-After of every 503 answer.
const RetryAfterSeconds = 5

// ProblemBase prefixes the type of every problem this API answers with.
const ProblemBase = "https://contactledger.dev/problems/"

// Problem is an RFC 9457 problem detail.
type Problem struct {
	Type      string              `json:"type"`
	Title     string              `json:"title"`
	Status    int                 `json:"status"`
	Detail    string              `json:"detail,omitempty"`
	Code      string              `json:"code"`
	Instance  string              `json:"instance,omitempty"`
	RequestID string              `json:"request_id,omitempty"`
	Errors    []kernel.FieldError `json:"errors,omitempty"`
	// Extra members of some problems.
	TombstoneEventID string `json:"tombstone_event_id,omitempty"`
	ErasedAt         string `json:"erased_at,omitempty"`
	CurrentVersion   uint64 `json:"current_version,omitempty"`
	RunningJobID     string `json:"running_job_id,omitempty"`
	// HoldID names the legal hold that refused an erasure.
	HoldID string `json:"hold_id,omitempty"`
	// HolderID, HolderState and Identity name the contact that holds an
	// email or phone a command wanted (never the value).
	HolderID    string `json:"holder_id,omitempty"`
	HolderState string `json:"holder_state,omitempty"`
	Identity    string `json:"identity,omitempty"`
}

// unsupportedMedia is the 415 of a body of a media type the operation does not take.
func unsupportedMedia(msg string) *kernel.Error {
	return &kernel.Error{Code: kernel.CodeMediaType, Reason: "unsupported-media-type", Message: msg}
}

func badRequest(reason, msg string) *kernel.Error {
	return &kernel.Error{Code: kernel.CodeBadRequest, Reason: reason, Message: msg}
}

// errorHandler answers every error as application/problem+json. Application
// errors carry their code and safe message; echo's own errors (no route,
// wrong method, body too large) are translated; anything else is a 500 whose
// details are logged, never sent.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	p := s.problem(c, err)
	if p.Status == http.StatusServiceUnavailable {
		// A projection catching up, the log unreachable, a timeout: each is
		// worth a retry, after a pause.
		c.Response().Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
	}
	if c.Request().Method == http.MethodHead {
		c.NoContent(p.Status)
		return
	}
	if err := writeJSON(c, p.Status, "application/problem+json", p); err != nil {
		s.log.Warn("writing a problem failed", "request_id", p.RequestID, "err", err)
	}
}

// problem turns an error into its problem details, logging internal errors.
func (s *Server) problem(c echo.Context, err error) Problem {
	p := Problem{RequestID: requestID(c), Instance: safePath(c)}
	var (
		appErr  *kernel.Error
		echoErr *echo.HTTPError
	)
	switch {
	case errors.As(err, &appErr):
		p.Status = wire.HTTPStatus(appErr.Code)
		if p.Status == 0 {
			p.Status = http.StatusInternalServerError
		}
		if appErr.Code == kernel.CodeConcurrency && c.Request().Header.Get("If-Match") != "" {
			p.Status = http.StatusPreconditionFailed
		}
		p.Code, p.Detail, p.Errors = appErr.Reason, appErr.Message, appErr.Fields
		if appErr.Code == kernel.CodeUnauthorized {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="contact-ledger"`)
		}
	case errors.As(err, &echoErr):
		p.Status = echoErr.Code
		switch echoErr.Code {
		case http.StatusNotFound:
			p.Code, p.Detail = "route-not-found", "no such endpoint; see /openapi.json"
		case http.StatusMethodNotAllowed:
			p.Code, p.Detail = "method-not-allowed", "this endpoint does not accept the method"
		case http.StatusRequestEntityTooLarge:
			p.Code, p.Detail = "body-too-large", "the request body is over the limit of 1 MiB"
		case http.StatusUnsupportedMediaType:
			p.Code, p.Detail = "unsupported-media-type", "the body is of a media type this endpoint does not take"
		case http.StatusServiceUnavailable:
			p.Code, p.Detail = "timeout", "the request took too long"
		default:
			p.Code = "http-error"
		}
	case errors.Is(err, context.DeadlineExceeded):
		p.Status, p.Code, p.Detail = http.StatusServiceUnavailable, "timeout", "the request took too long"
	case errors.Is(err, context.Canceled):
		p.Status, p.Code, p.Detail = 499, "client-closed-request", "the client went away"
	default:
		p.Status = http.StatusInternalServerError
	}
	if p.Status == http.StatusInternalServerError {
		p.Code, p.Detail, p.Errors = "internal", "an internal error occurred; quote the request id to support", nil
		s.log.ErrorContext(c.Request().Context(), "request failed", "request_id", p.RequestID, "route", c.Path(), "err", err)
	}
	if p.Code == "" {
		p.Code = "error"
	}
	p.Type = ProblemBase + p.Code
	p.Title = http.StatusText(p.Status)
	if p.Title == "" {
		p.Title = "Error"
	}
	var g *goneError
	if errors.As(err, &g) {
		p.TombstoneEventID, p.ErasedAt = g.eventID, g.at
	}
	var erased *ledger.ErasedError
	if errors.As(err, &erased) {
		p.TombstoneEventID = erased.Tombstone
		if !erased.At.IsZero() {
			p.ErasedAt = erased.At.Format(time.RFC3339Nano)
		}
	}
	var running *ledger.JobRunningError
	if errors.As(err, &running) {
		p.RunningJobID = running.Job
	}
	var held *contact.HeldError
	if errors.As(err, &held) {
		p.HoldID = held.Hold
	}
	var taken *ledger.IdentityTakenError
	if errors.As(err, &taken) {
		p.HolderID, p.HolderState, p.Identity = taken.Holder.String(), string(taken.State), taken.Field
		if taken.State == "" {
			p.HolderState = "pending"
		}
	}
	return p
}

// goneError is the 410 of a purged contact, with its tombstone.
type goneError struct {
	err         *kernel.Error
	eventID, at string
}

func (g *goneError) Error() string { return g.err.Error() }
func (g *goneError) Unwrap() error { return g.err }
