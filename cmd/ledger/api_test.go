package main_test

import (
	"bytes"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/contactledger/ledger/adapters/console"
	"github.com/contactledger/ledger/adapters/httpapi"
	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/internal/apicontract"
)

// TestForbiddenTransitions tries every command the lifecycle forbids, in
// every state, over HTTP, and checks the status and problem type.
func TestForbiddenTransitions(t *testing.T) { eachStore(t, testForbiddenTransitions) }

func testForbiddenTransitions(t *testing.T, store string) {
	l := start(t, store)
	setup := map[string][]string{
		"active":     nil,
		"archived":   {"archive"},
		"trashed":    {"trash"},
		"purged":     {"trash", "purge"},
		"anonymized": {"trash", "anonymize"},
	}
	type refusal struct {
		status int
		code   string
	}
	transition := refusal{409, "invalid-transition"}
	notEditable := refusal{409, "not-editable"}
	gone := refusal{410, "purged"}
	table := map[string]map[string]refusal{
		"active":     {"unarchive": transition, "restore": transition, "purge": transition, "anonymize": transition},
		"archived":   {"update": notEditable, "archive": transition, "restore": transition, "purge": transition, "anonymize": transition},
		"trashed":    {"update": notEditable, "archive": transition, "unarchive": transition, "trash": transition},
		"purged":     {"update": gone, "archive": gone, "unarchive": gone, "trash": gone, "restore": gone, "purge": gone, "anonymize": gone},
		"anonymized": {"update": notEditable, "archive": transition, "unarchive": transition, "trash": transition, "restore": transition, "purge": transition, "anonymize": transition},
	}
	for state, refusals := range table {
		for cmd, w := range refusals {
			t.Run(state+"/"+cmd, func(t *testing.T) {
				id := l.create(map[string]any{"name": "Forbidden Case", "email": "case." + state + "." + cmd + "@example.com"})
				for _, step := range setup[state] {
					want(t, l.as("POST", "/v1/contacts/"+id+"/"+step, nil), 200, "")
				}
				before := l.as("GET", "/v1/contacts/"+id+"/history", nil)
				var r reply
				if cmd == "update" {
					r = l.as("PATCH", "/v1/contacts/"+id, map[string]any{"name": "Changed"})
				} else {
					r = l.as("POST", "/v1/contacts/"+id+"/"+cmd, nil)
				}
				want(t, r, w.status, w.code)
				after := l.as("GET", "/v1/contacts/"+id+"/history", nil)
				if len(after.Body["events"].([]any)) != len(before.Body["events"].([]any)) {
					t.Fatal("a refused command appended an event")
				}
			})
		}
	}
}

// TestMalformedRequests sends every kind of bad input and checks that it is
// answered with a clear 4xx problem, never a 500.
func TestMalformedRequests(t *testing.T) { eachStore(t, testMalformedRequests) }

func testMalformedRequests(t *testing.T, store string) {
	l := start(t, store)
	id := l.create(map[string]any{"name": "Target", "email": "target@example.com"})
	memberToken := l.token("default", "member")
	deep := strings.Repeat("[", 40) + strings.Repeat("]", 40)
	huge := `{"name": "` + strings.Repeat("a", 2<<20) + `"}`
	cases := []struct {
		name, token, method, path string
		body                      any
		headers                   []string
		status                    int
		code                      string
	}{
		{"no token", "-", "GET", "/v1/contacts", nil, nil, 401, "unauthorized"},
		{"malformed token", "lgr_nope", "GET", "/v1/contacts", nil, nil, 401, "unauthorized"},
		{"wrong token", "lgr_01M88ZBNS9T05DHCB5TRADGX7V_C6IFjrvAQ-gxKtWGOBjWSqqWWiKrSdibg0BK6GqEW4w", "GET", "/v1/contacts", nil, nil, 401, "unauthorized"},
		{"member purges", memberToken, "POST", "/v1/contacts/" + id + "/purge", nil, nil, 403, "role-not-allowed"},
		{"broken JSON", "", "POST", "/v1/contacts", `{"name": `, nil, 400, "malformed-json"},
		{"not an object", "", "POST", "/v1/contacts", `[1,2]`, nil, 400, "malformed-json"},
		{"two documents", "", "POST", "/v1/contacts", `{"name":"a"}{"name":"b"}`, nil, 400, "malformed-json"},
		{"unknown field", "", "POST", "/v1/contacts", map[string]any{"name": "a", "nickname": "b"}, nil, 400, "unknown-field"},
		{"wrong type", "", "POST", "/v1/contacts", map[string]any{"name": 5}, nil, 422, "validation-failed"},
		{"custom field not a string", "", "POST", "/v1/contacts", map[string]any{"name": "a", "custom_fields": map[string]any{"n": 1}}, nil, 422, "validation-failed"},
		{"bad email", "", "POST", "/v1/contacts", map[string]any{"email": "nope"}, nil, 422, "validation-failed"},
		{"bad phone", "", "POST", "/v1/contacts", map[string]any{"phone": "call me maybe"}, nil, 422, "validation-failed"},
		{"no identity", "", "POST", "/v1/contacts", map[string]any{"job_title": "CEO"}, nil, 422, "validation-failed"},
		{"empty body", "", "POST", "/v1/contacts", "", nil, 400, "empty-body"},
		{"too deep", "", "POST", "/v1/contacts", deep, nil, 400, "json-too-deep"},
		{"too large", "", "POST", "/v1/contacts", huge, nil, 413, "body-too-large"},
		{"wrong media type", "", "POST", "/v1/contacts", `{"name":"a"}`, []string{"Content-Type", "text/plain"}, 415, "unsupported-media-type"},
		{"form body on a command", "", "POST", "/v1/contacts/" + id + "/archive", "reason=x", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported-media-type"},
		{"bad id", "", "GET", "/v1/contacts/not-a-ulid", nil, nil, 400, "invalid-id"},
		{"bad id on a command", "", "POST", "/v1/contacts/123/trash", nil, nil, 400, "invalid-id"},
		{"unknown id", "", "GET", "/v1/contacts/01ARZ3NDEKTSV4RRFFQ69G5FAV", nil, nil, 404, "not-found"},
		{"unknown id on a command", "", "POST", "/v1/contacts/01ARZ3NDEKTSV4RRFFQ69G5FAV/archive", nil, nil, 404, "not-found"},
		{"patch unknown field", "", "PATCH", "/v1/contacts/" + id, map[string]any{"tags": []string{"x"}}, nil, 400, "unknown-field"},
		{"patch wrong type", "", "PATCH", "/v1/contacts/" + id, map[string]any{"email": 3}, nil, 422, "validation-failed"},
		{"patch bad email", "", "PATCH", "/v1/contacts/" + id, map[string]any{"email": "x@"}, nil, 422, "validation-failed"},
		{"patch clears identity", "", "PATCH", "/v1/contacts/" + id, map[string]any{"name": nil, "email": nil}, nil, 422, "validation-failed"},
		{"bad If-Match", "", "PATCH", "/v1/contacts/" + id, map[string]any{"name": "x"}, []string{"If-Match", "abc"}, 400, "invalid-if-match"},
		{"request on archive", "", "POST", "/v1/contacts/" + id + "/archive", map[string]any{"request": "T-1"}, nil, 400, "unknown-field"},
		{"reason too long", "", "POST", "/v1/contacts/" + id + "/archive", map[string]any{"reason": strings.Repeat("r", 501)}, nil, 422, "validation-failed"},
		{"unknown view", "", "GET", "/v1/contacts?view=deleted", nil, nil, 422, "validation-failed"},
		{"limit zero", "", "GET", "/v1/contacts?limit=0", nil, nil, 422, "validation-failed"},
		{"limit too big", "", "GET", "/v1/contacts?limit=201", nil, nil, 422, "validation-failed"},
		{"limit not a number", "", "GET", "/v1/contacts?limit=ten", nil, nil, 422, "validation-failed"},
		{"malformed query", "", "GET", "/v1/contacts?cursor=%%%", nil, nil, 400, "malformed-query"},
		{"garbage cursor", "", "GET", "/v1/contacts?cursor=@@@", nil, nil, 400, "invalid-cursor"},
		{"forged cursor", "", "GET", "/v1/contacts?cursor=eyJ2IjoiYWN0aXZlIn0", nil, nil, 400, "invalid-cursor"},
		{"unknown parameter", "", "GET", "/v1/contacts?deleted_afer=2026-01-01T00:00:00Z&view=trash", nil, nil, 400, "unknown-parameter"},
		{"bad time", "", "GET", "/v1/contacts?view=trash&deleted_after=yesterday", nil, nil, 422, "validation-failed"},
		{"trash filter on active", "", "GET", "/v1/contacts?view=active&deleted_by=tok_x", nil, nil, 422, "validation-failed"},
		{"bad position", "", "GET", "/v1/contacts?min_position=abc", nil, nil, 422, "validation-failed"},
		{"position beyond the head", "", "GET", "/v1/contacts?min_position=18446744073709551615", nil, nil, 422, "validation-failed"},
		{"bad time in a restore job", "", "POST", "/v1/restore-jobs", map[string]any{"deleted_after": "yesterday", "deleted_before": 5}, nil, 422, "validation-failed"},
		{"no such route", "", "GET", "/v1/nothing", nil, nil, 404, "route-not-found"},
		{"wrong method", "", "PUT", "/v1/contacts/" + id, map[string]any{}, nil, 405, "method-not-allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			token := tc.token
			switch token {
			case "":
				token = l.admin
			case "-":
				token = ""
			}
			r := l.do(token, tc.method, tc.path, tc.body, tc.headers...)
			want(t, r, tc.status, tc.code)
		})
	}
	// Invalid values are named, in query strings and bodies alike.
	for path, field := range map[string]string{
		"/v1/contacts?min_position=18446744073709551615": "min_position",
		"/v1/restore-jobs": "deleted_after",
	} {
		var body any
		if path == "/v1/restore-jobs" {
			body = map[string]any{"deleted_after": "yesterday"}
		}
		method := map[bool]string{true: "POST", false: "GET"}[body != nil]
		r := l.as(method, path, body)
		errs, _ := r.Body["errors"].([]any)
		if len(errs) != 1 || errs[0].(map[string]any)["field"] != field {
			t.Errorf("%s %s: got %s, want the problem to name %s", method, path, r.Raw, field)
		}
	}
	// None of that changed the target.
	r := l.as("GET", "/v1/contacts/"+id, nil)
	if r.num("version") != 1 || r.str("email") != "target@example.com" {
		t.Fatalf("bad requests changed the contact: %s", r.Raw)
	}
}

// token creates a token of a role through the real service.
func (l *ledgerUnderTest) token(workspace, role string) string {
	l.t.Helper()
	secret, _, err := l.Svc.CreateToken(l.t.Context(), workspace, roleOf(role), "test")
	if err != nil {
		l.t.Fatal(err)
	}
	return secret
}

// TestOpenAPI checks the served description itself: it lints clean for
// generated clients (one operationId per operation, a schema for every
// body, streams described as validators read them), and it describes
// exactly what echo routes, each under the operation the permission table
// knows it by. That every answer of the end-to-end tests matches it is
// checked on every server start() makes (checkContract).
func TestOpenAPI(t *testing.T) {
	l := start(t, "sqlite")
	want(t, l.do("", "GET", "/healthz", nil), 200, "")
	r := l.do("", "GET", "/openapi.json", nil)
	want(t, r, 200, "")
	problems, err := apicontract.Lint(r.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("the description: %s", p)
	}
	checker, err := apicontract.New(r.Raw)
	if err != nil {
		t.Fatal(err)
	}
	var served []apicontract.Route
	for _, rt := range l.API.Echo().Routes() {
		if strings.HasPrefix(rt.Path, "/*") || rt.Path == "" {
			continue
		}
		if strings.HasPrefix(rt.Path, console.Prefix) {
			t.Errorf("%s %s: the API routes a path under %s, which the console serves instead", rt.Method, rt.Path, console.Prefix)
		}
		served = append(served, apicontract.Route{Method: rt.Method, Path: apicontract.TemplatePath(rt.Path)})
	}
	// The console's pages are served on the same port but are not part of
	// the JSON API: they answer HTML to a browser with a session cookie,
	// take forms with a CSRF token, and change as the pages do. Describing
	// them as API operations would put HTML endpoints into every client
	// generated from the description, so the comparison leaves out exactly
	// the console's prefix (its pages are tested by TestConsole), and
	// nothing outside that prefix may be served undescribed.
	for _, rt := range l.Console.Routes() {
		if !strings.HasPrefix(rt.Pattern, console.Prefix) {
			t.Errorf("console route %s %s is outside %s, so the description must have it", rt.Method, rt.Pattern, console.Prefix)
			served = append(served, apicontract.Route{Method: rt.Method, Path: rt.Pattern})
		}
	}
	for _, p := range checker.CompareRoutes(served) {
		t.Errorf("the router and the description disagree: %s", p)
	}
	for _, rt := range l.API.Routes() {
		route := apicontract.Route{Method: rt.Method, Path: apicontract.TemplatePath(rt.Path)}
		if op := checker.OperationID(route); op != rt.Op {
			t.Errorf("%s %s: the description's operationId is %q, the permission table's operation %q", rt.Method, rt.Path, op, rt.Op)
		}
	}
	if len(httpapi.Permissions) == 0 || !slices.Contains(httpapi.Permissions["contacts.purge"], "admin") {
		t.Fatal("the permission table lost purge for admins")
	}
}

// TestContractCatchesDrift shows that the end-to-end check fails when the
// description and the answers drift apart: with a response field renamed
// in the description, ordinary traffic is reported, naming the operation,
// the status and the field.
func TestContractCatchesDrift(t *testing.T) {
	spec := httpapi.OpenAPI()
	drifted := bytes.Replace(spec, []byte(`"note_count"`), []byte(`"notes_count"`), -1)
	if bytes.Equal(drifted, spec) {
		t.Fatal("the description has no note_count to rename")
	}
	checker, err := apicontract.New(drifted)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var violations []string
	l := start(t, "sqlite", func(m *main.Main) {
		m.Middleware = func(next http.Handler) http.Handler {
			return checker.Handler(next, func(v string) { mu.Lock(); violations = append(violations, v); mu.Unlock() })
		}
	})
	id := l.create(map[string]any{"name": "Drift Check"})
	want(t, l.as("GET", "/v1/contacts/"+id, nil), 200, "")
	mu.Lock()
	defer mu.Unlock()
	got := strings.Join(violations, "\n")
	for _, w := range []string{
		"POST /v1/contacts (contacts.create) answered 201", "GET /v1/contacts/" + id + " (contacts.get) answered 200",
		`property "note_count" is unsupported`, `property "notes_count" is missing`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("the drift was reported as %q; want it to say %q", got, w)
		}
	}
}

// TestPermissionTableInREADME checks that the README's table of roles says
// what the code's permission table does, operation by operation.
func TestPermissionTableInREADME(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(b)
	i := strings.Index(section, "| Operations | member | admin | auditor | operator |")
	if i < 0 {
		t.Fatal("the README has no table of roles")
	}
	section = section[i:]
	section = section[:strings.Index(section, "\n\n")]
	documented := map[string][]string{}
	for _, line := range strings.Split(section, "\n")[2:] {
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 5 {
			t.Fatalf("row %q has %d cells", line, len(cells))
		}
		var roles []string
		for j, r := range []string{"member", "admin", "auditor", "operator"} {
			if strings.TrimSpace(cells[j+1]) != "" {
				roles = append(roles, r)
			}
		}
		for _, op := range strings.Split(cells[0], ",") {
			documented[strings.Trim(strings.TrimSpace(op), "`¹²³⁴⁵")] = roles
		}
	}
	for op, allowed := range httpapi.Permissions {
		var want []string
		for _, r := range allowed {
			want = append(want, string(r))
		}
		got, ok := documented[op]
		slices.Sort(got)
		slices.Sort(want)
		if !ok || !slices.Equal(got, want) {
			t.Errorf("%s: the README says %v, the code %v", op, got, want)
		}
		delete(documented, op)
	}
	for op := range documented {
		t.Errorf("the README lists %s, which the permission table doesn't have", op)
	}
}
