package main_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/httpapi"
	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/domain/kernel"
)

// routeCase says how to call one route: the target it needs (a contact in
// some state, a token, a restore job, or nothing), where the target goes
// (the :id of the path, or the body), the body, and what an allowed role gets.
type routeCase struct {
	target string // "", "active", "archived", "trashed", "erased", "listed", "linked", "spam", "held", "token", "job", "rebuild", "webhook"
	// workspaceHold, when set, says whether the workspace must be under
	// legal hold (true) or not (false) before each call.
	workspaceHold *bool
	params        map[string]string
	query         string
	body          any
	bodyFor       func(id string) any // the target goes in the body instead of the path
	status        int
}

var policyBody = map[string]any{"retention_days": 30, "require_archive_before_trash": false, "restore_role": "member",
	"purge_allowed": true, "protected_sources": []string{"crm"}}

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
	"POST /v1/contacts/bulk": {bodyFor: func(id string) any {
		return map[string]any{"action": "archive", "ids": []string{id}, "expected_count": 1}
	}, target: "active", status: 200},
	"POST /v1/contacts/import":                  {query: "source=iso", body: []map[string]any{{"name": "Iso Import", "external_id": "iso-1"}}, status: 200},
	"POST /v1/contacts/:id/tags":                {target: "active", body: map[string]any{"add": []string{"iso"}}, status: 200},
	"POST /v1/contacts/:id/notes":               {target: "active", body: map[string]any{"text": "iso note"}, status: 201},
	"GET /v1/contacts/:id/notes":                {target: "active", status: 200},
	"PUT /v1/contacts/:id/lists/:list":          {target: "active", params: map[string]string{"list": "newsletter"}, body: map[string]any{"status": "subscribed"}, status: 200},
	"DELETE /v1/contacts/:id/lists/:list":       {target: "listed", params: map[string]string{"list": "newsletter"}, status: 200},
	"POST /v1/contacts/:id/links":               {target: "active", body: map[string]any{"kind": "deal", "id": "D-1"}, status: 200},
	"DELETE /v1/contacts/:id/links/:kind/:ref":  {target: "linked", params: map[string]string{"kind": "deal", "ref": "D-1"}, status: 200},
	"POST /v1/contacts/:id/spam":                {target: "active", status: 200},
	"POST /v1/contacts/:id/unspam":              {target: "spam", status: 200},
	"POST /v1/restore-jobs":                     {body: map[string]any{"q": "nobody-matches-this"}, status: 202},
	"GET /v1/restore-jobs/:id":                  {target: "job", status: 200},
	"POST /v1/restore-jobs/:id/cancel":          {target: "job", status: 409}, // the job has finished
	"POST /v1/contacts/:id/hold":                {target: "trashed", body: map[string]any{"case": "ISO-1", "reason": "iso"}, status: 200},
	"DELETE /v1/contacts/:id/hold":              {target: "held", status: 200},
	"GET /v1/holds":                             {status: 200},
	"POST /v1/workspace/hold":                   {workspaceHold: ptr(false), body: map[string]any{"case": "ISO-W"}, status: 201},
	"DELETE /v1/workspace/hold":                 {workspaceHold: ptr(true), status: 200},
	"GET /v1/workspace/policy":                  {status: 200},
	"PUT /v1/workspace/policy":                  {body: policyBody, status: 200},
	"GET /v1/audit/events":                      {status: 200},
	"GET /v1/contacts/:id/erasure-receipt":      {target: "erased", status: 200},
	"GET /v1/receipts/public-key":               {status: 200},
	"GET /v1/projections":                       {status: 200},
	"POST /v1/projections/:name/rebuild":        {params: map[string]string{"name": "trash"}, status: 202},
	"GET /v1/projections/:name/rebuilds/:id":    {target: "rebuild", params: map[string]string{"name": "trash"}, status: 200},
	"DELETE /v1/projections/:name/rebuilds/:id": {target: "rebuild", params: map[string]string{"name": "trash"}, status: 202},
	"GET /v1/events":                            {status: 200},
	"GET /v1/events/stream":                     {query: "after=0", status: 200},
	"POST /v1/webhooks":                         {body: map[string]any{"url": isoHook}, status: 201},
	"GET /v1/webhooks":                          {status: 200},
	"GET /v1/webhooks/:id":                      {target: "webhook", status: 200},
	"PATCH /v1/webhooks/:id":                    {target: "webhook", body: map[string]any{"description": "iso"}, status: 200},
	"DELETE /v1/webhooks/:id":                   {target: "webhook", status: 204},
	"POST /v1/webhooks/:id/rotate-secret":       {target: "webhook", status: 200},
	"GET /v1/webhooks/:id/deliveries":           {target: "webhook", status: 200},
	"POST /v1/webhooks/:id/replay":              {target: "webhook", body: map[string]any{"since": "2026-01-01T00:00:00Z"}, status: 200},
	"POST /v1/webhooks/:id/test":                {target: "webhook", status: 200},
}

// isoHook is where TestIsolation's subscriptions point: a port nothing
// listens on, on 127.0.0.1 (allowed for the test).
const isoHook = "http://127.0.0.1:9/hook"

// unknownTargets are ids that exist nowhere, per target kind.
var unknownTargets = map[string]string{
	"active": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "archived": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "trashed": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
	"listed": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "linked": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "spam": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "held": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
	"token": "tok_01ARZ3NDEKTSV4RRFFQ69G5FAV", "job": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
	"erased": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "rebuild": "rb_01ARZ3NDEKTSV4RRFFQ69G5FAV",
	"webhook": "wh_01ARZ3NDEKTSV4RRFFQ69G5FAV",
}

var roles = []string{"member", "admin", "auditor", "operator"}

// TestIsolation tries every route of the router with every role, against
// the caller's own workspace and another one: an allowed role succeeds at
// home, gets 404 for the other workspace's things exactly as for unknown
// ids, and a role the permission table doesn't list gets 403.
func TestIsolation(t *testing.T) { eachStore(t, testIsolation) }

func testIsolation(t *testing.T, store string) {
	l := start(t, store, func(m *main.Main) {
		m.Config.WebhookAllow = []string{"127.0.0.1/32"}
		m.StreamLifetime = 100 * time.Millisecond
	})
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
	// settle waits until a restore job has finished, so the next may start.
	settle := func(a *remote, id string) {
		waitFor(t, 30*time.Second, "restore job "+id+" to finish", func() bool {
			st := a.as("GET", "/v1/restore-jobs/"+id, nil).str("state")
			return st == "succeeded" || st == "failed" || st == "cancelled"
		})
	}
	// settleRebuild waits until a rebuild has ended, so the next may start.
	settleRebuild := func(a *remote, location string) {
		waitFor(t, 30*time.Second, "rebuild "+location+" to end", func() bool {
			return a.as("GET", location, nil).str("state") != "running"
		})
	}
	made := 0
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
		case "job":
			r := a.as("POST", "/v1/restore-jobs", map[string]any{"q": "nobody-matches-this"})
			want(t, r, 202, "")
			settle(a, r.str("id"))
			return r.str("id")
		case "webhook":
			r := a.as("POST", "/v1/webhooks", map[string]any{"url": isoHook})
			want(t, r, 201, "")
			return r.str("id")
		case "rebuild":
			r := a.as("POST", "/v1/projections/trash/rebuild", nil)
			want(t, r, 202, "")
			settleRebuild(a, r.Header.Get("Location"))
			return r.str("id")
		}
		made++
		r := a.as("POST", "/v1/contacts", map[string]any{"name": "Iso Target", "email": fmt.Sprintf("iso.target.%d@example.com", made)})
		want(t, r, 201, "")
		id := r.str("id")
		switch kind {
		case "archived":
			want(t, a.as("POST", "/v1/contacts/"+id+"/archive", nil), 200, "")
		case "trashed":
			want(t, a.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
		case "erased":
			want(t, a.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
			want(t, a.as("POST", "/v1/contacts/"+id+"/purge", nil), 200, "")
		case "listed":
			want(t, a.as("PUT", "/v1/contacts/"+id+"/lists/newsletter", map[string]any{"status": "subscribed"}), 200, "")
		case "linked":
			want(t, a.as("POST", "/v1/contacts/"+id+"/links", map[string]any{"kind": "deal", "id": "D-1"}), 200, "")
		case "spam":
			want(t, a.as("POST", "/v1/contacts/"+id+"/spam", nil), 200, "")
		case "held":
			want(t, a.as("POST", "/v1/contacts/"+id+"/hold", map[string]any{"case": "ISO-2"}), 200, "")
		}
		return id
	}
	// workspaceHold puts the default workspace under legal hold, or lifts it.
	workspaceHold := func(on bool) {
		a := admins["default"]
		if on {
			if r := a.as("POST", "/v1/workspace/hold", map[string]any{"case": "ISO-W"}); r.Status != 201 && r.Status != 409 {
				t.Fatalf("placing the workspace hold: %s", r.Raw)
			}
		} else if r := a.as("DELETE", "/v1/workspace/hold", nil); r.Status != 200 && r.Status != 409 {
			t.Fatalf("releasing the workspace hold: %s", r.Raw)
		}
	}
	comparable := func(r reply) string {
		b := maps.Clone(r.Body)
		delete(b, "request_id")
		delete(b, "instance")
		delete(b, "operation") // the request's own id
		j, _ := json.Marshal(b)
		return string(j)
	}

	// Things of the other workspace that no answer at home may show.
	foreignIDs := []string{target("other", "active"), target("other", "trashed"), target("other", "token")}

	seen := map[string]bool{}
	for _, rt := range l.API.Routes() {
		rt := rt
		route := rt.Method + " " + rt.Path
		seen[route] = true
		rc, ok := routeCases[route]
		if !ok {
			t.Errorf("route %s has no entry in routeCases: add one so its isolation and permissions are tested", route)
			continue
		}
		allowed := httpapi.Permissions[rt.Op]
		// call sends the route's request with a target id.
		call := func(tok, id string) reply {
			if rc.workspaceHold != nil {
				workspaceHold(*rc.workspaceHold)
			}
			p := rt.Path
			body := rc.body
			if rc.bodyFor != nil {
				body = rc.bodyFor(id)
			} else {
				p = strings.Replace(p, ":id", id, 1)
			}
			for k, v := range rc.params {
				p = strings.Replace(p, ":"+k, v, 1)
			}
			if rc.query != "" {
				p += "?" + rc.query
			}
			r := send(t, l.URL(), tok, rt.Method, p, body)
			if r.Status == 202 && strings.HasPrefix(rt.Path, "/v1/restore-jobs") && r.str("id") != "" {
				settle(&remote{t: t, base: l.URL(), token: tok}, r.str("id"))
			}
			if r.Status == 202 && strings.HasPrefix(rt.Path, "/v1/projections") && r.str("id") != "" {
				settleRebuild(&remote{t: t, base: l.URL(), token: tok}, "/v1/projections/trash/rebuilds/"+r.str("id"))
			}
			return r
		}
		t.Run(route, func(t *testing.T) {
			// No token at all.
			want(t, call("", target("default", rc.target)), 401, "unauthorized")
			for _, role := range roles {
				tok := tokens["default"][role]
				if !slices.Contains(allowed, kernel.Role(role)) {
					// Refused before anything is looked up, so a refusal
					// says nothing of what exists where.
					for _, ws := range []string{"default", "other"} {
						want(t, call(tok, target(ws, rc.target)), 403, "role-not-allowed")
					}
					continue
				}
				r := call(tok, target("default", rc.target))
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
				foreignID := target("other", rc.target)
				foreign, unknown := call(tok, foreignID), call(tok, unknownTargets[rc.target])
				wantStatus := 404
				if rc.bodyFor != nil {
					wantStatus = rc.status // the answer reports the id as not found
				}
				if foreign.Status != wantStatus || unknown.Status != wantStatus {
					t.Fatalf("%s on another workspace's %s: got %d (unknown id: %d), want %d; %s", role, rc.target, foreign.Status, unknown.Status, wantStatus, foreign.Raw)
				}
				f := strings.ReplaceAll(comparable(foreign), foreignID, "ID")
				u := strings.ReplaceAll(comparable(unknown), unknownTargets[rc.target], "ID")
				if f != u {
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

func ptr[T any](v T) *T { return &v }
