// Package httpapi is the HTTP adapter: JSON command and query endpoints under
// /v1 with echo, bearer-token authentication, one permission table, and
// application/problem+json errors.
package httpapi

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/oklog/ulid/v2"
)

// Options configures a Server.
type Options struct {
	Logger *slog.Logger
	// Ready reports whether the service can answer (stores reachable, projections running).
	Ready func(ctx context.Context) error
	// RequestTimeout bounds every request but imports; 30s when zero.
	RequestTimeout time.Duration
	// Idempotency keeps the answers of POSTs sent with an Idempotency-Key.
	Idempotency ledger.IdempotencyStore
	// SpoolDir is where imports are spooled while they run (they hold
	// personal data: keep it private); the system's temporary directory when empty.
	SpoolDir string
	// Projections, when set, serves the projections' status and rebuilds.
	Projections Projections
	// Metrics, when set, is told of every request and served at /metrics.
	Metrics Metrics
	// StreamLifetime bounds one connection to the event stream (5 min when
	// zero): the client reconnects with Last-Event-ID. StreamHeartbeat is
	// how often an idle stream sends a comment (15 s when zero).
	StreamLifetime  time.Duration
	StreamHeartbeat time.Duration
	// Webhooks, when set, is kicked when a subscription changes, so that
	// delivery follows at once.
	Webhooks interface{ Kick() }
}

// Metrics records requests and serves the metrics. Labels are the route
// template, the method and the status: never a path with ids in it.
type Metrics interface {
	ObserveRequest(method, route string, status int, d time.Duration)
	Handler() http.Handler
}

// Server is the HTTP API.
type Server struct {
	svc     Service
	log     *slog.Logger
	ready   func(ctx context.Context) error
	proj    Projections
	metrics Metrics
	known   map[string]bool // route templates, for bounded metric labels
	echo    *echo.Echo
	idem    ledger.IdempotencyStore
	// maxIdemBody bounds how much of a repeated request's body is hashed.
	maxIdemBody int64
	// spoolDir holds import files while they are imported.
	spoolDir string
	// routes lists every route with the operation it performs, for the
	// permission table and the OpenAPI check.
	routes []Route
	// streamLifetime and heartbeat shape the event stream.
	streamLifetime, heartbeat time.Duration
	kick                      func()
}

// Route is one endpoint and the operation it performs.
type Route struct {
	Method, Path, Op string
}

// MaxBody is the largest request body accepted.
const MaxBody = 1 << 20

// New returns the API over a service.
func New(svc Service, o Options) *Server {
	s := &Server{svc: svc, log: o.Logger, ready: o.Ready, proj: o.Projections, metrics: o.Metrics, echo: echo.New(),
		idem: o.Idempotency, maxIdemBody: MaxImport, spoolDir: o.SpoolDir}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.ready == nil {
		s.ready = func(context.Context) error { return nil }
	}
	s.streamLifetime, s.heartbeat, s.kick = o.StreamLifetime, o.StreamHeartbeat, func() {}
	if s.streamLifetime == 0 {
		s.streamLifetime = 5 * time.Minute
	}
	if s.heartbeat == 0 {
		s.heartbeat = 15 * time.Second
	}
	if o.Webhooks != nil {
		s.kick = o.Webhooks.Kick
	}
	timeout := o.RequestTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.Use(s.requestIDs, s.securityHeaders, s.accessLog, s.recoverPanics)
	// Imports stream large bodies for a long time: they have their own limits.
	notImport := func(c echo.Context) bool { return c.Path() == importPath }
	e.Use(middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{Limit: "1M", Skipper: notImport}))
	e.Use(middleware.ContextTimeoutWithConfig(middleware.ContextTimeoutConfig{
		Timeout: timeout,
		// Streams bound each page's write instead of the whole request.
		Skipper: func(c echo.Context) bool { return notImport(c) || streaming[c.Path()] },
	}))

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/openapi.json", s.openapi)
	if s.metrics != nil {
		// No token: Prometheus scrapes without one, and no label or value
		// holds personal data or a tenant's name (see the README).
		e.GET("/metrics", echo.WrapHandler(s.metrics.Handler()))
	}

	s.handle(http.MethodPost, "/v1/contacts", "contacts.create", s.createContact)
	s.handle(http.MethodGet, "/v1/contacts", "contacts.list", s.listContacts)
	s.handle(http.MethodGet, "/v1/contacts/:id", "contacts.get", s.getContact)
	s.handle(http.MethodPatch, "/v1/contacts/:id", "contacts.update", s.updateContact)
	// DELETE is trash under an operation of its own: generated clients name
	// their functions by operation id, so no two operations share one.
	s.handle(http.MethodDelete, "/v1/contacts/:id", "contacts.delete", s.transition(ledger.Trash))
	for _, t := range ledger.Transitions {
		s.handle(http.MethodPost, "/v1/contacts/:id/"+string(t), "contacts."+string(t), s.transition(t))
	}
	s.handle(http.MethodGet, "/v1/contacts/:id/history", "contacts.history", s.history)
	s.handle(http.MethodGet, "/v1/audit/events", "audit.events", s.auditEvents)
	s.handle(http.MethodGet, "/v1/contacts/:id/erasure-receipt", "contacts.erasure_receipt", s.erasureReceipt)
	s.handle(http.MethodGet, "/v1/receipts/public-key", "receipts.public_key", s.receiptKey)
	s.handle(http.MethodGet, "/v1/projections", "projections.status", s.projectionStatus)
	s.handle(http.MethodPost, "/v1/projections/:name/rebuild", "projections.rebuild", s.startRebuild)
	s.handle(http.MethodGet, "/v1/projections/:name/rebuilds/:id", "projections.rebuild_status", s.rebuildStatus)
	s.handle(http.MethodDelete, "/v1/projections/:name/rebuilds/:id", "projections.rebuild_cancel", s.cancelRebuild)
	s.handle(http.MethodPost, "/v1/tokens", "tokens.create", s.createToken)
	s.handle(http.MethodGet, "/v1/tokens", "tokens.list", s.listTokens)
	s.handle(http.MethodDelete, "/v1/tokens/:id", "tokens.revoke", s.revokeToken)
	s.handle(http.MethodPost, "/v1/contacts/bulk", "contacts.bulk", s.bulk)
	s.handle(http.MethodPost, importPath, "contacts.import", s.importContacts)
	s.handle(http.MethodPost, "/v1/contacts/:id/tags", "contacts.tags", s.changeTags)
	s.handle(http.MethodPost, "/v1/contacts/:id/notes", "contacts.notes.add", s.addNote)
	s.handle(http.MethodGet, "/v1/contacts/:id/notes", "contacts.notes.list", s.listNotes)
	s.handle(http.MethodPut, "/v1/contacts/:id/lists/:list", "contacts.lists.set", s.setList)
	s.handle(http.MethodDelete, "/v1/contacts/:id/lists/:list", "contacts.lists.remove", s.removeList)
	s.handle(http.MethodPost, "/v1/contacts/:id/links", "contacts.links.add", s.addLink)
	s.handle(http.MethodDelete, "/v1/contacts/:id/links/:kind/:ref", "contacts.links.remove", s.removeLink)
	s.handle(http.MethodPost, "/v1/contacts/:id/spam", "contacts.spam", s.spam(true))
	s.handle(http.MethodPost, "/v1/contacts/:id/unspam", "contacts.unspam", s.spam(false))
	s.handle(http.MethodPost, "/v1/restore-jobs", "restore_jobs.create", s.createRestoreJob)
	s.handle(http.MethodGet, "/v1/restore-jobs/:id", "restore_jobs.get", s.getRestoreJob)
	s.handle(http.MethodPost, "/v1/restore-jobs/:id/cancel", "restore_jobs.cancel", s.cancelRestoreJob)
	s.handle(http.MethodPost, "/v1/contacts/:id/hold", "contacts.hold", s.placeHold)
	s.handle(http.MethodDelete, "/v1/contacts/:id/hold", "contacts.release_hold", s.releaseHold)
	s.handle(http.MethodGet, "/v1/holds", "holds.list", s.listHolds)
	s.handle(http.MethodPost, "/v1/workspace/hold", "workspace.hold", s.placeWorkspaceHold)
	s.handle(http.MethodDelete, "/v1/workspace/hold", "workspace.release_hold", s.releaseWorkspaceHold)
	s.handle(http.MethodGet, "/v1/events", "events.list", s.listEvents)
	s.handle(http.MethodGet, "/v1/events/stream", "events.stream", s.streamEvents)
	s.handle(http.MethodPost, "/v1/webhooks", "webhooks.create", s.createWebhook)
	s.handle(http.MethodGet, "/v1/webhooks", "webhooks.list", s.listWebhooks)
	s.handle(http.MethodGet, "/v1/webhooks/:id", "webhooks.get", s.getWebhook)
	s.handle(http.MethodPatch, "/v1/webhooks/:id", "webhooks.update", s.updateWebhook)
	s.handle(http.MethodDelete, "/v1/webhooks/:id", "webhooks.delete", s.deleteWebhook)
	s.handle(http.MethodPost, "/v1/webhooks/:id/rotate-secret", "webhooks.rotate_secret", s.rotateWebhookSecret)
	s.handle(http.MethodGet, "/v1/webhooks/:id/deliveries", "webhooks.deliveries", s.webhookDeliveries)
	s.handle(http.MethodPost, "/v1/webhooks/:id/replay", "webhooks.replay", s.replayWebhook)
	s.handle(http.MethodPost, "/v1/webhooks/:id/test", "webhooks.test", s.testWebhook)
	s.handle(http.MethodGet, "/v1/workspace/policy", "workspace.policy.get", s.getPolicy)
	s.handle(http.MethodPut, "/v1/workspace/policy", "workspace.policy.put", s.putPolicy)
	s.known = map[string]bool{}
	for _, r := range e.Routes() {
		s.known[r.Path] = true
	}
	return s
}

// streaming lists the routes that stream their answer for as long as it takes.
var streaming = map[string]bool{"/v1/audit/events": true, "/v1/events/stream": true}

// ServeHTTP serves a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// Routes returns every authenticated route with its operation.
func (s *Server) Routes() []Route { return slices.Clone(s.routes) }

// Echo returns the underlying router, for tests that enumerate its routes.
func (s *Server) Echo() *echo.Echo { return s.echo }

// handle routes an authenticated operation; every one must have an entry
// in the permission table.
func (s *Server) handle(method, path, op string, h echo.HandlerFunc) {
	if _, ok := Permissions[op]; !ok {
		panic("httpapi: operation " + op + " has no entry in the permission table")
	}
	s.routes = append(s.routes, Route{Method: method, Path: path, Op: op})
	mw := []echo.MiddlewareFunc{s.authenticate, s.authorize(op)}
	if method == http.MethodPost {
		mw = append(mw, s.idempotent)
	}
	s.echo.Add(method, path, h, mw...)
}

// Permissions is the one permission table, kept in the application layer
// (ledger.Permissions) so that every adapter, this API and the console,
// reads the same one.
var Permissions = ledger.Permissions

func principal(c echo.Context) ledger.Principal {
	p, _ := c.Get("principal").(ledger.Principal)
	return p
}

// authenticate resolves the bearer token to a principal, or answers 401.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get("Authorization")
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return ledger.ErrUnauthorized
		}
		p, err := s.svc.Authenticate(c.Request().Context(), strings.TrimSpace(token))
		if err != nil {
			return err
		}
		c.Set("principal", p)
		return next(c)
	}
}

// authorize answers 403 when the principal's role may not perform op.
func (s *Server) authorize(op string) echo.MiddlewareFunc {
	roles := Permissions[op]
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !slices.Contains(roles, principal(c).Role) {
				return kernel.Errorf(kernel.ErrRoleNotAllowed, "the %s role may not do %s", principal(c).Role, op)
			}
			return next(c)
		}
	}
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// requestIDs gives every request an id: the client's X-Request-Id when it is
// well formed, else a new ULID. It is returned as a header and becomes the
// correlation id of the events the request causes.
func (s *Server) requestIDs(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !requestIDPattern.MatchString(id) {
			id = ulid.Make().String()
		}
		c.Set("request_id", id)
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

func requestID(c echo.Context) string { id, _ := c.Get("request_id").(string); return id }

// safeParam returns a path parameter when it is a well-formed id (of a
// contact or a token), else "": logs and problems never echo what a client
// put in a path, which could be anything, personal data included.
func safeParam(c echo.Context, name string) string {
	v := c.Param(name)
	if _, err := contact.ParseID(v); err == nil {
		return v
	}
	for _, prefix := range []string{"tok_", "wh_"} {
		if rest, ok := strings.CutPrefix(v, prefix); ok {
			if _, err := contact.ParseID(rest); err == nil {
				return v
			}
		}
	}
	return ""
}

// safePath is the request's path for problems: the route with its
// parameters filled in only where they are well-formed ids.
func safePath(c echo.Context) string {
	route := c.Path()
	if route == "" || route == "/*" {
		return ""
	}
	parts := strings.Split(route, "/")
	for i, p := range parts {
		if name, ok := strings.CutPrefix(p, ":"); ok {
			if v := safeParam(c, name); v != "" {
				parts[i] = v
			}
		}
	}
	return strings.Join(parts, "/")
}

func (s *Server) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// accessLog writes one line per request. It logs the route template, never
// the raw path's query string or any body, so no personal data reaches the log.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		p := principal(c)
		if s.metrics != nil {
			route := c.Path()
			if !s.known[route] {
				route = "unmatched"
			}
			s.metrics.ObserveRequest(c.Request().Method, route, c.Response().Status, time.Since(start))
		}
		s.log.LogAttrs(c.Request().Context(), slog.LevelInfo, "request",
			slog.String("request_id", requestID(c)), slog.String("method", c.Request().Method),
			slog.String("route", c.Path()), slog.String("id", safeParam(c, "id")),
			slog.Int("status", c.Response().Status), slog.Duration("duration", time.Since(start)),
			slog.String("token", p.TokenID), slog.String("workspace", p.Workspace))
		return nil
	}
}

// recoverPanics turns a panic into a logged 500.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return next(c)
	}
}

func writeJSON(c echo.Context, status int, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderContentType, contentType)
	c.Response().WriteHeader(status)
	_, err = c.Response().Write(append(b, '\n'))
	return err
}

func ok(c echo.Context, status int, v any) error {
	return writeJSON(c, status, echo.MIMEApplicationJSON, v)
}

// Limits on JSON documents, beyond the body size.
const (
	maxDepth  = 16
	maxTokens = 100_000
)

// decode reads a JSON request body into dst: one JSON value, of a JSON
// media type, no unknown fields, nesting at most maxDepth deep. An empty body
// is allowed when allowEmpty is set (dst is left as it is).
func decode(c echo.Context, dst any, allowEmpty bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, MaxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &kernel.Error{Code: kernel.CodeTooLarge, Reason: "body-too-large", Message: "the request body is over the limit of 1 MiB"}
	}
	if err != nil {
		return badRequest("unreadable-body", "the request body could not be read")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return badRequest("empty-body", "a JSON body is required")
	}
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return unsupportedMedia("send the body as application/json")
		}
	}
	return DecodeJSON(body, dst)
}

// DecodeJSON decodes one JSON document into dst under the API's rules. It
// is the decoder of every command's body.
func DecodeJSON(body []byte, dst any) error {
	// encoding/json would silently replace invalid UTF-8 with U+FFFD.
	if !utf8.Valid(body) {
		return badRequest("invalid-utf8", "the body is not valid UTF-8")
	}
	if err := checkShape(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("malformed-json", "the body must hold exactly one JSON value")
	}
	return nil
}

// checkShape rejects documents nested too deep or with too many tokens
// before they are decoded.
func checkShape(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	depth, tokens := 0, 0
	for {
		t, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return badRequest("malformed-json", "the body is not valid JSON")
		}
		if tokens++; tokens > maxTokens {
			return &kernel.Error{Code: kernel.CodeTooLarge, Reason: "json-too-large", Message: "the JSON document has too many values"}
		}
		if d, ok := t.(json.Delim); ok {
			if d == '{' || d == '[' {
				if depth++; depth > maxDepth {
					return badRequest("json-too-deep", fmt.Sprintf("the JSON document is nested deeper than %d levels", maxDepth))
				}
			} else {
				depth--
			}
		}
	}
}

func jsonError(err error) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed-json", "the body is not valid JSON")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return badRequest("malformed-json", "the body must be a JSON object")
		}
		return kernel.Invalid(kernel.FieldError{Field: knownField(field), Message: "must be a JSON " + jsonKind(typ.Type.Kind().String())})
	}
	// encoding/json reports unknown fields only in its message.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return unknownField(strings.Trim(name, `"`), "is not a field of this request")
	}
	return badRequest("malformed-json", "the body does not match the expected JSON shape")
}

// unknownField refuses an unknown field without naming it: a client can
// put anything in a JSON key, personal data included (an email address as a
// key), and problems never echo what a client wrote.
func unknownField(_, why string) *kernel.Error {
	return &kernel.Error{Code: kernel.CodeBadRequest, Reason: "unknown-field", Message: "the body has a field this request does not take; see /openapi.json",
		Fields: []kernel.FieldError{{Field: "(not shown)", Message: why}}}
}

// unknownParam refuses an unknown query parameter without naming it: its
// name is whatever the client wrote.
func unknownParam() *kernel.Error {
	return &kernel.Error{Code: kernel.CodeBadRequest, Reason: "unknown-parameter", Message: "the query has a parameter this endpoint does not take; see /openapi.json",
		Fields: []kernel.FieldError{{Field: "(not shown)", Message: "is not a parameter of this endpoint"}}}
}

// repeatedParam refuses a known query parameter given twice; known names
// are the API's own, so the problem names it.
func repeatedParam(name string) *kernel.Error {
	return badRequest("repeated-parameter", "query parameter "+strconv.Quote(name)+" is given more than once")
}

// knownField returns the part of a JSON path that names fields of the
// request itself: a map's keys (custom_fields.<key>) are the client's.
func knownField(path string) string {
	if i := strings.Index(path, "custom_fields."); i >= 0 {
		return path[:i+len("custom_fields")]
	}
	return path
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "string"
	case "slice", "array":
		return "array"
	case "map", "struct", "ptr":
		return "object"
	case "bool":
		return "boolean"
	}
	return "number"
}

func (s *Server) healthz(c echo.Context) error {
	return ok(c, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(c echo.Context) error {
	if err := s.ready(c.Request().Context()); err != nil {
		s.log.Warn("not ready", "err", err)
		return ok(c, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
	}
	return ok(c, http.StatusOK, map[string]string{"status": "ready"})
}

//go:embed openapi.json
var openapiJSON []byte

// OpenAPI returns the OpenAPI 3 description of the API.
func OpenAPI() []byte { return openapiJSON }

func (s *Server) openapi(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openapiJSON)
}
