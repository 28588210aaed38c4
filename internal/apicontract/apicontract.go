// Package apicontract checks HTTP traffic and a router against an OpenAPI 3
// description, for tests: every request and answer that passes through a
// Checker is validated with kin-openapi's openapi3filter, and whatever the
// description does not allow is reported as a sentence naming the
// operation, the status and what did not match.
//
// The checks are stricter than the description itself, on purpose:
//   - an answer's status must be listed for its operation (no "default");
//   - an answer's object may carry only the properties its schema lists
//     (the description stays open for clients, the check treats every
//     object without additionalProperties as closed, so a renamed or new
//     field fails until it is described);
//   - the API's own headers (Location, ETag, Retry-After, ...) must be
//     documented on each answer that carries them;
//   - a request the description rejects must be refused with a 4xx, and a
//     request it accepts must not be refused for an unknown field or media
//     type (the description would be too loose);
//   - streamed answers (NDJSON, server-sent events) are validated item by
//     item against the schema their media type names in x-itemSchema.
package apicontract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// DocumentedHeaders are the response headers of the API that every answer
// carrying one must document. X-Request-Id is on every answer.
var DocumentedHeaders = []string{"Location", "ETag", "Idempotent-Replayed", "X-Request-Id", "Retry-After"}

// StatusClientClosed is the status a server records for a request whose
// client went away before the answer (nginx's 499): it is not checked.
const StatusClientClosed = 499

// Exchange is one request and its answer, as they went over the wire.
type Exchange struct {
	Request     *http.Request
	RequestBody []byte
	// RequestBodyTooLarge is set when the body was too large to keep: it
	// is then not validated.
	RequestBodyTooLarge bool
	Status              int
	Header              http.Header
	Body                []byte
	// Truncated is set when the answer was cut off (the client went away
	// or a write failed): a stream's last, partial item is not validated.
	Truncated bool
}

// Checker validates exchanges against one description.
type Checker struct {
	doc     *openapi3.T
	router  routers.Router
	problem *openapi3.Schema

	mu   sync.Mutex
	seen map[string]map[int]bool // operation id -> statuses answered
}

// New loads a description (JSON or YAML), validates it as OpenAPI 3 and
// returns a Checker for it.
func New(spec []byte) (*Checker, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load the description: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the description is not valid OpenAPI: %w", err)
	}
	closeObjects(doc)
	// Route on paths alone: the servers' hosts are not the test's.
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route the description: %w", err)
	}
	c := &Checker{doc: doc, router: router, seen: map[string]map[int]bool{}}
	if doc.Components != nil && doc.Components.Schemas["Problem"] != nil {
		c.problem = doc.Components.Schemas["Problem"].Value
	}
	return c, nil
}

// closeObjects makes every object schema that lists properties and says
// nothing of others refuse unlisted ones, so that an answer with a field
// the description lacks fails. A schema made of allOf is closed over the
// union of its members' properties (as JSON Schema's
// unevaluatedProperties: false would), and its members stay open: each
// would refuse the others' properties.
func closeObjects(doc *openapi3.T) {
	members := map[*openapi3.Schema]bool{}
	var all []*openapi3.SchemaRef
	var collect func(ref *openapi3.SchemaRef, seen map[*openapi3.Schema]bool)
	collect = func(ref *openapi3.SchemaRef, seen map[*openapi3.Schema]bool) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		all = append(all, ref)
		for _, m := range s.AllOf {
			if m.Value != nil {
				members[m.Value] = true
			}
		}
		for _, p := range s.Properties {
			collect(p, seen)
		}
		collect(s.Items, seen)
		collect(s.AdditionalProperties.Schema, seen)
		collect(s.Not, seen)
		for _, x := range slices.Concat(s.OneOf, s.AnyOf, s.AllOf) {
			collect(x, seen)
		}
	}
	seen := map[*openapi3.Schema]bool{}
	if doc.Components != nil {
		for _, s := range doc.Components.Schemas {
			collect(s, seen)
		}
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				for _, mt := range op.RequestBody.Value.Content {
					collect(mt.Schema, seen)
				}
			}
			for _, r := range op.Responses.Map() {
				if r.Value != nil {
					for _, mt := range r.Value.Content {
						collect(mt.Schema, seen)
					}
				}
			}
		}
	}
	for _, ref := range all {
		s := ref.Value
		if members[s] || s.AdditionalProperties.Has != nil || s.AdditionalProperties.Schema != nil {
			continue
		}
		if len(s.AllOf) > 0 {
			if s.Properties == nil {
				s.Properties = openapi3.Schemas{}
			}
			for name := range allOfProperties(s) {
				if s.Properties[name] == nil {
					s.Properties[name] = openapi3.NewSchemaRef("", &openapi3.Schema{})
				}
			}
		}
		if len(s.Properties) > 0 {
			no := false
			s.AdditionalProperties.Has = &no
		}
	}
}

// allOfProperties is the union of the properties of a schema and of its
// allOf members, recursively.
func allOfProperties(s *openapi3.Schema) map[string]bool {
	out := map[string]bool{}
	for name := range s.Properties {
		out[name] = true
	}
	for _, m := range s.AllOf {
		if m.Value != nil {
			maps.Copy(out, allOfProperties(m.Value))
		}
	}
	return out
}

// options are the validator's options: every error at once, statuses the
// operation doesn't list refused, short messages.
func options() *openapi3filter.Options {
	return &openapi3filter.Options{
		MultiError:            true,
		IncludeResponseStatus: true,
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			scheme, token, ok := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
				return errors.New("no bearer token")
			}
			return nil
		},
		SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
	}
}

// Check validates one exchange and returns what the description does not
// allow, one sentence each; none when it holds.
func (c *Checker) Check(ex Exchange) []string {
	if ex.Status == StatusClientClosed {
		return nil // nobody read the answer
	}
	req := ex.Request
	what := req.Method + " " + req.URL.Path
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		return c.checkUnrouted(ex, what, err)
	}
	op := route.Operation.OperationID
	what = fmt.Sprintf("%s (%s) answered %d", what, op, ex.Status)
	c.mu.Lock()
	if c.seen[op] == nil {
		c.seen[op] = map[int]bool{}
	}
	c.seen[op][ex.Status] = true
	c.mu.Unlock()

	var out []string
	opts := options()
	in := &openapi3filter.RequestValidationInput{Request: req.Clone(req.Context()), PathParams: params, Route: route, Options: opts}
	in.Request.Body = io.NopCloser(bytes.NewReader(ex.RequestBody))
	if ex.RequestBodyTooLarge {
		opts.ExcludeRequestBody = true
	}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	refused := ex.Status >= 400 && ex.Status < 500
	switch {
	case reqErr != nil && !refused:
		out = append(out, fmt.Sprintf("%s, but the description does not allow the request: %s", what, flatten(reqErr)))
	case reqErr == nil && (ex.Status == http.StatusUnsupportedMediaType || problemCode(ex) == "unknown-field"):
		out = append(out, fmt.Sprintf("%s (%s) to a request the description allows: describe the request body exactly (media types, additionalProperties: false)", what, problemCode(ex)))
	}

	body := ex.Body
	resp := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: ex.Status, Header: ex.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: opts}
	if err := openapi3filter.ValidateResponse(context.Background(), resp); err != nil {
		out = append(out, fmt.Sprintf("%s: %s", what, flatten(err)))
	}
	if r := route.Operation.Responses.Status(ex.Status); r != nil && r.Value != nil {
		out = append(out, c.checkHeaders(what, r.Value, ex.Header)...)
		out = append(out, c.checkStream(what, r.Value, ex)...)
	}
	return out
}

// checkUnrouted accepts an answer to a request the description has no
// route for only when it is the API's 404 or 405 problem.
func (c *Checker) checkUnrouted(ex Exchange, what string, err error) []string {
	if (ex.Status == http.StatusNotFound || ex.Status == http.StatusMethodNotAllowed) && c.problem != nil {
		var v any
		if json.Unmarshal(ex.Body, &v) != nil {
			return []string{fmt.Sprintf("%s (not described) answered %d with a body that is not JSON", what, ex.Status)}
		}
		if err := c.problem.VisitJSON(v, openapi3.MultiErrors(), openapi3.DisableSchemaErrorDetails()); err != nil {
			return []string{fmt.Sprintf("%s (not described) answered %d with a body that is not a Problem: %s", what, ex.Status, flatten(err))}
		}
		return nil
	}
	return []string{fmt.Sprintf("%s answered %d, but the description has no such operation (%v): describe it in the description's paths", what, ex.Status, err)}
}

// checkHeaders requires the API's own headers to be documented on the
// answer that carries them.
func (c *Checker) checkHeaders(what string, r *openapi3.Response, h http.Header) []string {
	var out []string
	for _, name := range DocumentedHeaders {
		if h.Get(name) == "" {
			continue
		}
		documented := false
		for k := range r.Headers {
			if strings.EqualFold(k, name) {
				documented = true
			}
		}
		if !documented {
			out = append(out, fmt.Sprintf("%s with header %s, which that response does not document (add it to its headers)", what, name))
		}
	}
	return out
}

// problemCode is the code of an answer's problem, if it is one.
func problemCode(ex Exchange) string {
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(ex.Body, &p)
	return p.Code
}

// Covered returns, for every operation of the description, the statuses
// the checked traffic answered it with (none for an operation never called).
func (c *Checker) Covered() map[string][]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]int{}
	for _, item := range c.doc.Paths.Map() {
		for _, op := range item.Operations() {
			var statuses []int
			for s := range c.seen[op.OperationID] {
				statuses = append(statuses, s)
			}
			sort.Ints(statuses)
			out[op.OperationID] = statuses
		}
	}
	return out
}

// Uncovered lists the operations no checked exchange called, sorted.
func (c *Checker) Uncovered() []string {
	var out []string
	for op, statuses := range c.Covered() {
		if len(statuses) == 0 {
			out = append(out, op)
		}
	}
	slices.Sort(out)
	return out
}

// flatten turns the validator's (multi-)errors into one line, keeping
// what each names (a parameter, the body) before its reasons.
func flatten(err error) string {
	switch e := err.(type) {
	case openapi3.MultiError:
		parts := make([]string, 0, len(e))
		for _, x := range e {
			parts = append(parts, flatten(x))
		}
		return strings.Join(parts, "; ")
	case *openapi3filter.ResponseError:
		if e.Err != nil {
			return e.Reason + ": " + flatten(e.Err)
		}
	case *openapi3filter.RequestError:
		if e.Err != nil {
			prefix := e.Reason
			switch {
			case e.Parameter != nil:
				prefix = fmt.Sprintf("parameter %q in %s", e.Parameter.Name, e.Parameter.In)
			case e.RequestBody != nil:
				prefix = "request body"
			}
			if prefix == "" {
				return flatten(e.Err)
			}
			return prefix + ": " + flatten(e.Err)
		}
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// mediaType is a Content-Type without its parameters, in lower case.
func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	return mt
}
