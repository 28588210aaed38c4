package apicontract_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/contactledger/ledger/internal/apicontract"
)

// spec is a small description with every kind of answer the ledger has.
const spec = `{
  "openapi": "3.0.3",
  "info": {"title": "t", "version": "1"},
  "security": [{"bearer": []}],
  "paths": {
    "/things": {
      "post": {
        "operationId": "things.create",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
          "type": "object", "additionalProperties": false, "required": ["name"],
          "properties": {"name": {"type": "string"}, "note": {"type": "string"}}}}}},
        "responses": {
          "201": {"description": "made", "headers": {"Location": {"schema": {"type": "string"}}, "X-Request-Id": {"schema": {"type": "string"}}},
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
          "400": {"$ref": "#/components/responses/Problem"},
          "415": {"$ref": "#/components/responses/Problem"}
        }
      }
    },
    "/things/{id}": {
      "get": {
        "operationId": "things.get",
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[a-z]+$"}}],
        "responses": {
          "200": {"description": "the thing", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
          "404": {"$ref": "#/components/responses/Problem"}
        }
      }
    },
    "/events": {
      "get": {
        "operationId": "events.export",
        "responses": {"200": {"description": "NDJSON", "content": {"application/x-ndjson": {
          "schema": {"type": "string"}, "x-itemSchema": {"$ref": "#/components/schemas/Event"}}}}}
      }
    },
    "/composed": {
      "get": {
        "operationId": "composed.get",
        "responses": {"200": {"description": "allOf", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Composed"}}}}}
      }
    },
    "/stream": {
      "get": {
        "operationId": "events.stream",
        "responses": {"200": {"description": "SSE", "content": {"text/event-stream": {
          "schema": {"type": "string"}, "x-itemSchema": {"$ref": "#/components/schemas/Event"}}}}}
      }
    }
  },
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "responses": {"Problem": {"description": "a problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}},
    "schemas": {
      "Thing": {"type": "object", "required": ["id", "name"], "properties": {"id": {"type": "string"}, "name": {"type": "string"}}},
      "Base": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
      "Composed": {"allOf": [{"$ref": "#/components/schemas/Base"}, {"type": "object", "properties": {"kind": {"type": "string"}}}]},
      "Event": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string", "enum": ["made", "gone"]}}},
      "Problem": {"type": "object", "required": ["code", "status"], "properties": {"code": {"type": "string"}, "status": {"type": "integer"}}}
    }
  }
}`

func exchange(method, path, reqBody string, status int, contentType, body string, headers ...string) apicontract.Exchange {
	req := httptest.NewRequest(method, path, strings.NewReader(reqBody))
	req.Header.Set("Authorization", "Bearer t")
	if reqBody != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	h := http.Header{}
	h.Set("Content-Type", contentType)
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	return apicontract.Exchange{Request: req, RequestBody: []byte(reqBody), Status: status, Header: h, Body: []byte(body)}
}

func TestCheck(t *testing.T) {
	c, err := apicontract.New([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	const thing = `{"id":"a","name":"A"}`
	const problem = "application/problem+json"
	cases := []struct {
		name string
		ex   apicontract.Exchange
		want []string // substrings of the one violation wanted; none for a valid exchange
	}{
		{"valid create", exchange("POST", "/things", `{"name":"A"}`, 201, "application/json", thing, "Location", "/things/a", "X-Request-Id", "r1"), nil},
		{"valid get", exchange("GET", "/things/a", "", 200, "application/json", thing), nil},
		{"renamed field", exchange("GET", "/things/a", "", 200, "application/json", `{"id":"a","title":"A"}`),
			[]string{"GET /things/a (things.get) answered 200", `"name"`}},
		{"undescribed field", exchange("GET", "/things/a", "", 200, "application/json", `{"id":"a","name":"A","extra":1}`),
			[]string{"things.get", `"extra"`}},
		{"undescribed status", exchange("GET", "/things/a", "", 500, problem, `{"code":"internal","status":500}`),
			[]string{"answered 500", "status is not supported"}},
		{"wrong media type", exchange("GET", "/things/a", "", 200, "text/plain", thing),
			[]string{"things.get", "text/plain"}},
		{"undocumented header", exchange("GET", "/things/a", "", 200, "application/json", thing, "ETag", `"1"`),
			[]string{"header ETag, which that response does not document"}},
		{"accepted what the description refuses", exchange("POST", "/things", `{"note":"no name"}`, 201, "application/json", thing, "Location", "/things/a"),
			[]string{"does not allow the request", "name"}},
		{"refused what the description refuses", exchange("POST", "/things", `{"name":"A","colour":"red"}`, 400, problem, `{"code":"unknown-field","status":400}`), nil},
		{"refused as unknown what the description allows", exchange("POST", "/things", `{"name":"A","note":"n"}`, 400, problem, `{"code":"unknown-field","status":400}`),
			[]string{"unknown-field", "to a request the description allows"}},
		{"bad path parameter refused", exchange("GET", "/things/A1", "", 404, problem, `{"code":"not-found","status":404}`), nil},
		{"bad path parameter accepted", exchange("GET", "/things/A1", "", 200, "application/json", thing),
			[]string{"does not allow the request", `parameter "id"`}},
		{"no token accepted", func() apicontract.Exchange {
			ex := exchange("GET", "/things/a", "", 200, "application/json", thing)
			ex.Request.Header.Del("Authorization")
			return ex
		}(), []string{"does not allow the request"}},
		{"client gone", exchange("GET", "/things/a", "", 499, problem, `{"code":"client-closed-request","status":499}`), nil},
		{"valid allOf", exchange("GET", "/composed", "", 200, "application/json", `{"id":"a","kind":"k"}`), nil},
		{"allOf with a property neither member lists", exchange("GET", "/composed", "", 200, "application/json", `{"id":"a","kind":"k","more":1}`),
			[]string{"composed.get", `"more"`}},
		{"allOf missing a member's required property", exchange("GET", "/composed", "", 200, "application/json", `{"kind":"k"}`),
			[]string{"composed.get", `"id"`}},
		{"valid NDJSON", exchange("GET", "/events", "", 200, "application/x-ndjson", "{\"type\":\"made\"}\n{\"type\":\"gone\"}\n"), nil},
		{"bad NDJSON line", exchange("GET", "/events", "", 200, "application/x-ndjson", "{\"type\":\"made\"}\n{\"kind\":\"gone\"}\n"),
			[]string{"line 2 doesn't match schema Event"}},
		{"NDJSON line not JSON", exchange("GET", "/events", "", 200, "application/x-ndjson", "{\"type\":\"made\"}\nnope\n"),
			[]string{"line 2: not JSON"}},
		{"valid SSE", exchange("GET", "/stream", "", 200, "text/event-stream", ": hi\n\nid: 1\nevent: made\ndata: {\"type\":\ndata: \"made\"}\n\nretry: 5\n\n"), nil},
		{"bad SSE event", exchange("GET", "/stream", "", 200, "text/event-stream", "data: {\"type\":\"made\"}\n\ndata: {\"type\":\"lost\"}\n\n"),
			[]string{"event 2 doesn't match schema Event"}},
		{"SSE cut mid-event", exchange("GET", "/stream", "", 200, "text/event-stream", "data: {\"type\":\"made\"}\n\ndata: {\"ty"), nil},
		{"unrouted 404 problem", exchange("GET", "/nothing", "", 404, problem, `{"code":"route-not-found","status":404}`), nil},
		{"unrouted 404 not a problem", exchange("GET", "/nothing", "", 404, "application/json", `{"oops":true}`),
			[]string{"GET /nothing (not described) answered 404 with a body that is not a Problem"}},
		{"unrouted answer", exchange("GET", "/nothing", "", 200, "application/json", `{}`),
			[]string{"GET /nothing answered 200, but the description has no such operation"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := c.Check(tc.ex)
			if len(tc.want) == 0 {
				if len(got) != 0 {
					t.Fatalf("got violations %q, want none", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("got %d violations %q, want one with %q", len(got), got, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(got[0], w) {
					t.Fatalf("got %q, want it to say %q", got[0], w)
				}
			}
		})
	}
	cov := c.Covered()
	if fmt.Sprint(cov["things.get"]) != "[200 404 500]" || len(c.Uncovered()) != 0 {
		t.Fatalf("coverage: got %v, uncovered %v", cov, c.Uncovered())
	}
}

func TestLint(t *testing.T) {
	if got, err := apicontract.Lint([]byte(spec)); err != nil || len(got) != 0 {
		t.Fatalf("the sample description: got %q %v, want no problem", got, err)
	}
	cases := []struct{ name, from, to, want string }{
		{"duplicate operationId", `"operationId": "things.get"`, `"operationId": "things.create"`,
			`operationId "things.create" is used by GET /things/{id} and POST /things`},
		{"no operationId", `"operationId": "things.get",`, ``, "GET /things/{id} has no operationId"},
		{"response without a schema", `"200": {"description": "the thing", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}`,
			`"200": {"description": "the thing"}`, "GET /things/{id}: response 200 has no content"},
		{"media type without a schema", `"200": {"description": "the thing", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}`,
			`"200": {"description": "the thing", "content": {"application/json": {}}}`, "response 200's application/json has no schema"},
		{"no success", `"200": {"description": "the thing"`, `"404x": {"description": "the thing"`, "GET /things/{id} has no 2xx response"},
		{"stream without item schema", `"application/x-ndjson": {
          "schema": {"type": "string"}, "x-itemSchema": {"$ref": "#/components/schemas/Event"}}`, `"application/x-ndjson": {
          "schema": {"type": "string"}}`, "GET /events: response 200's application/x-ndjson has no x-itemSchema"},
		{"item schema not a component", `"x-itemSchema": {"$ref": "#/components/schemas/Event"}`, `"x-itemSchema": {"$ref": "#/components/schemas/Nothing"}`,
			"x-itemSchema refers to #/components/schemas/Nothing, which is not a schema of the components"},
		{"stream as an object", `"text/event-stream": {
          "schema": {"type": "string"}`, `"text/event-stream": {
          "schema": {"type": "object"}`, "GET /stream: response 200's text/event-stream is a stream: its schema must be a string"},
		{"required but not a property", `"required": ["id", "name"]`, `"required": ["id", "nmae"]`, `schema Thing requires "nmae"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			broken := strings.Replace(spec, tc.from, tc.to, 1)
			if broken == spec {
				t.Fatal("the case does not change the description")
			}
			got, err := apicontract.Lint([]byte(broken))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(got, "\n"), tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCompareRoutes(t *testing.T) {
	c, err := apicontract.New([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	served := []apicontract.Route{{"POST", "/things"}, {"GET", apicontract.TemplatePath("/things/:id")}, {"GET", "/events"}, {"DELETE", "/things/{id}"}}
	got := strings.Join(c.CompareRoutes(served), "\n")
	for _, w := range []string{
		`DELETE /things/{id} is routed but not described: add paths["/things/{id}"].delete`,
		"GET /stream (events.stream) is described but not routed",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("got %q, want %q", got, w)
		}
	}
	if strings.Contains(got, "/events ") || strings.Contains(got, "things.get") {
		t.Errorf("got %q, want only the two differences", got)
	}
	if id := c.OperationID(apicontract.Route{"get", "/things/{id}"}); id != "things.get" {
		t.Errorf("operation id: got %q", id)
	}
}

// TestHandler runs a real server through the Handler: answers stream
// through unchanged, and violations are reported once the answer is done.
func TestHandler(t *testing.T) {
	c, err := apicontract.New([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reported []string
	srv := httptest.NewServer(c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/things":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(201) // no Location documented? it is; but the answer lacks "name"
			fmt.Fprintf(w, `{"id":"a","echo":%q}`, body)
		case "/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"type\":\"made\"}\n\n")
			w.(http.Flusher).Flush()
			fmt.Fprint(w, "data: {\"type\":\"bad\"}\n\n")
		}
	}), func(v string) { mu.Lock(); reported = append(reported, v); mu.Unlock() }))
	defer srv.Close()
	for _, r := range []struct{ method, path, body string }{{"POST", "/things", `{"name":"A"}`}, {"GET", "/stream", ""}} {
		req, _ := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(r.body))
		req.Header.Set("Authorization", "Bearer t")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if r.path == "/things" && string(b) != `{"id":"a","echo":"{\"name\":\"A\"}"}` {
			t.Fatalf("the handler did not get the request body, or the client not the answer: %s", b)
		}
	}
	srv.Close()
	mu.Lock()
	defer mu.Unlock()
	all := strings.Join(reported, "\n")
	if len(reported) != 2 || !strings.Contains(all, "POST /things (things.create) answered 201") || !strings.Contains(all, "event 2 doesn't match schema Event") {
		t.Fatalf("reported %q, want the create's missing name and the stream's second event", reported)
	}
}
