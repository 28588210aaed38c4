package main_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/contactledger/ledger/adapters/httpapi"
	"github.com/contactledger/ledger/domain/contact"
)

// routeCase says how to call one route: the target it needs (a contact in
// some state, a token, or nothing), the body, and what an allowed role gets.
type routeCase struct {
	target string // "", "active", "archived", "trashed", "token"
	body   any
	status int
}

// routeCases has an entry for every authenticated route of the router.
// TestIsolation fails for a route without one, so a route added later
// cannot skip the checks.
var routeCases = map[string]routeCase{
	"POST /v1/contacts":               {body: map[string]any{"name": "Iso Create"}, status: 201},
	"GET /v1/contacts":                {status: 200},
	"GET /v1/contacts/:id":            {target: "active", status: 200},
	"PATCH /v1/contacts/:id":          {target: "active", body: map[string]any{"job_title": "Iso"}, status: 200},
	"DELETE /v1/contacts/:id":         {target: "active", status: 200},
	"POST /v1/contacts/:id/archive":   {target: "active", status: 200},
	"POST /v1/contacts/:id/unarchive": {target: "archived", status: 200},
	"POST /v1/contacts/:id/trash":     {target: "active", status: 200},
	"POST /v1/contacts/:id/restore":   {target: "trashed", status: 200},
	"POST /v1/contacts/:id/purge":     {target: "trashed", status: 200},
	"POST /v1/contacts/:id/anonymize": {target: "trashed", status: 200},
	"GET /v1/contacts/:id/history":    {target: "active", status: 200},
	"POST /v1/tokens":                 {body: map[string]any{"role": "member", "label": "iso"}, status: 201},
	"GET /v1/tokens":                  {status: 200},
	"DELETE /v1/tokens/:id":           {target: "token", status: 200},
}

// unknownTargets are ids that exist nowhere, per target kind.
var unknownTargets = map[string]string{
	"active": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "archived": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "trashed": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
	"token": "tok_01ARZ3NDEKTSV4RRFFQ69G5FAV",
}

var roles = []string{"member", "admin", "auditor", "operator"}

// TestIsolation tries every route of the router with every role, against
// the caller's own workspace and another one: an allowed role succeeds at
// home, gets 404 for the other workspace's things exactly as for unknown
// ids, and a role the permission table doesn't list gets 403.
func TestIsolation(t *testing.T) { eachStore(t, testIsolation) }

func testIsolation(t *testing.T, store string) {
	l := start(t, store)
	if _, err := l.Svc.CreateWorkspace(t.Context(), "other"); err != nil {
		t.Fatal(err)
	}
	tokens := map[string]map[string]string{"default": {}, "other": {}}
	for ws := range tokens {
		for _, r := range roles {
			tokens[ws][r] = l.token(ws, r)
		}
	}
	admins := map[string]*remote{
		"default": {t: t, base: l.URL(), token: tokens["default"]["admin"]},
		"other":   {t: t, base: l.URL(), token: tokens["other"]["admin"]},
	}
	// target makes a fresh thing of the kind a route needs, in a workspace.
	target := func(ws, kind string) string {
		a := admins[ws]
		switch kind {
		case "":
			return ""
		case "token":
			r := a.as("POST", "/v1/tokens", map[string]any{"role": "member"})
			want(t, r, 201, "")
			return r.str("id")
		}
		r := a.as("POST", "/v1/contacts", map[string]any{"name": "Iso Target", "email": "iso.target@example.com"})
		want(t, r, 201, "")
		id := r.str("id")
		switch kind {
		case "archived":
			want(t, a.as("POST", "/v1/contacts/"+id+"/archive", nil), 200, "")
		case "trashed":
			want(t, a.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
		}
		return id
	}
	path := func(route, id string) string {
		p := strings.SplitN(route, " ", 2)[1]
		return strings.Replace(p, ":id", id, 1)
	}
	comparable := func(r reply) string {
		b := maps.Clone(r.Body)
		delete(b, "request_id")
		delete(b, "instance")
		j, _ := json.Marshal(b)
		return string(j)
	}

	// Things of the other workspace that no answer at home may show.
	foreignIDs := []string{target("other", "active"), target("other", "trashed"), target("other", "token")}

	seen := map[string]bool{}
	for _, rt := range l.API.Routes() {
		route := rt.Method + " " + rt.Path
		seen[route] = true
		rc, ok := routeCases[route]
		if !ok {
			t.Errorf("route %s has no entry in routeCases: add one so its isolation and permissions are tested", route)
			continue
		}
		allowed := httpapi.Permissions[rt.Op]
		t.Run(route, func(t *testing.T) {
			// No token at all.
			want(t, send(t, l.URL(), "", rt.Method, path(route, target("default", rc.target)), rc.body), 401, "unauthorized")
			for _, role := range roles {
				tok := tokens["default"][role]
				if !slices.Contains(allowed, contact.Role(role)) {
					// Refused before anything is looked up, so a refusal
					// says nothing of what exists where.
					for _, ws := range []string{"default", "other"} {
						r := send(t, l.URL(), tok, rt.Method, path(route, target(ws, rc.target)), rc.body)
						want(t, r, 403, "role-not-allowed")
					}
					continue
				}
				r := send(t, l.URL(), tok, rt.Method, path(route, target("default", rc.target)), rc.body)
				if r.Status != rc.status {
					t.Fatalf("%s in its own workspace: got %d, want %d; %s", role, r.Status, rc.status, r.Raw)
				}
				if rc.target == "" {
					for _, id := range foreignIDs {
						if strings.Contains(string(r.Raw), id) {
							t.Fatalf("%s sees another workspace's %s in %s", role, id, route)
						}
					}
					continue
				}
				foreign := send(t, l.URL(), tok, rt.Method, path(route, target("other", rc.target)), rc.body)
				unknown := send(t, l.URL(), tok, rt.Method, path(route, unknownTargets[rc.target]), rc.body)
				if foreign.Status != 404 || unknown.Status != 404 {
					t.Fatalf("%s on another workspace's %s: got %d (unknown id: %d), want 404; %s", role, rc.target, foreign.Status, unknown.Status, foreign.Raw)
				}
				if comparable(foreign) != comparable(unknown) {
					t.Fatalf("another workspace's id answers %s, an unknown id %s: they must not differ", foreign.Raw, unknown.Raw)
				}
			}
		})
	}
	for route := range routeCases {
		if !seen[route] {
			t.Errorf("routeCases lists %s, which is not routed", route)
		}
	}
	// The other workspace's contacts are untouched by all of that: every
	// contact it has is still active, archived or trashed as it was made.
	r := admins["other"].as("GET", "/v1/contacts?view=active&limit=200", nil)
	for _, it := range r.items() {
		if it["job_title"] == "Iso" {
			t.Fatalf("a PATCH from another workspace changed %v", it["id"])
		}
	}
}
