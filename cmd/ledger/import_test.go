package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type importResult struct {
	Row    int
	Result string
	ID     string
	Reason string
}

func (l *ledgerUnderTest) importFile(source, contentType, body string) (reply, []importResult, map[string]int) {
	l.t.Helper()
	r := l.as("POST", "/v1/contacts/import?source="+source, body, "Content-Type", contentType)
	if r.Status != 200 {
		return r, nil, nil
	}
	var out struct {
		Results []importResult
		Totals  map[string]int
		Error   any
	}
	if err := json.Unmarshal(r.Raw, &out); err != nil {
		l.t.Fatalf("import answer is not JSON: %v\n%s", err, r.Raw)
	}
	if out.Error != nil {
		l.t.Fatalf("import stopped: %v", out.Error)
	}
	return r, out.Results, out.Totals
}

// byEmail returns the ids of the contacts with an email in a view.
func (l *ledgerUnderTest) byEmail(view, email string) []string {
	l.t.Helper()
	return l.ids("view=" + view + "&email=" + email)
}

// TestImportRules imports a file whose rows hit every rule and checks each
// row's result, then imports it again.
func TestImportRules(t *testing.T) { eachStore(t, testImportRules) }

func testImportRules(t *testing.T, store string) {
	l := start(t, store)
	a := l.create(map[string]any{"name": "Alma Ext", "email": "alma@example.com", "source": map[string]any{"system": "hubspot", "external_id": "H-1"}})
	b := l.create(map[string]any{"name": "Bea Archived", "email": "bea@example.com"})
	want(t, l.as("POST", "/v1/contacts/"+b+"/archive", nil), 200, "")
	c := l.create(map[string]any{"name": "Cai Trashed", "email": "cai@example.com"})
	want(t, l.as("POST", "/v1/contacts/"+c+"/trash", nil), 200, "")
	d := l.create(map[string]any{"name": "Dov Spammer", "email": "dov@example.com", "phone": "+1 555 0100"})
	want(t, l.as("POST", "/v1/contacts/"+d+"/spam", map[string]any{"reason": "phishing"}), 200, "")
	e := l.create(map[string]any{"name": "Eve Purged", "email": "eve@example.com"})
	want(t, l.as("POST", "/v1/contacts/"+e+"/trash", nil), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+e+"/purge", nil), 200, "")

	file := strings.Join([]string{
		"external_id,name,email,phone,job_title,tags",
		"H-1,Alma Renamed,alma@example.com,,,",       // 1 matched by (source, external id): updated
		",,bea@example.com,,CTO,imported",            // 2 archived: updated, stays archived
		",Cai Again,cai@example.com,,,",              // 3 in trash: skipped
		",Dov Again,dov@example.com,,,",              // 4 spam-marked email: skipped
		",Eve Returns,eve@example.com,,,",            // 5 purged: comes back as a new contact
		"F-1,Finn New,finn@example.com,,,t1;t2",      // 6 new: created
		"F-1,Finn New,finn@example.com,,,t1",         // 7 the same person again: unchanged
		",Gus Invalid,not-an-email,,,",               // 8 invalid: skipped
		",Nameless Only,,,,",                         // 9 no email: created
		"H-1,Alma Renamed,alma@example.com,,,",       // 10 nothing new: unchanged
		",Someone,someone@example.com,+1 555 0100,,", // 11 spam-marked phone: skipped
	}, "\n")
	_, res, totals := l.importFile("hubspot", "text/csv", file)
	wantRows := []struct{ result, reason string }{
		{"updated", ""}, {"updated", ""}, {"skipped", "in trash"}, {"skipped", "marked as spam"}, {"created", ""}, {"created", ""},
		{"unchanged", ""}, {"skipped", "invalid: email"}, {"created", ""}, {"unchanged", ""}, {"skipped", "marked as spam"},
	}
	if len(res) != len(wantRows) {
		t.Fatalf("got %d results, want %d: %+v", len(res), len(wantRows), res)
	}
	for i, w := range wantRows {
		if res[i].Row != i+1 || res[i].Result != w.result || !strings.HasPrefix(res[i].Reason, w.reason) {
			t.Errorf("row %d: got %+v, want %s %q", i+1, res[i], w.result, w.reason)
		}
	}
	if fmt.Sprint(totals) != "map[created:3 skipped:4 unchanged:2 updated:2]" {
		t.Errorf("totals: %v", totals)
	}
	if res[0].ID != a || res[1].ID != b || res[2].ID != c || res[6].ID != res[5].ID || res[9].ID != a {
		t.Errorf("matched ids: %+v", res)
	}
	if res[4].ID == e || res[4].ID == "" {
		t.Errorf("a purged person came back with id %q, want a new one (old %s)", res[4].ID, e)
	}
	if r := l.as("GET", "/v1/contacts/"+a, nil); r.str("name") != "Alma Renamed" || r.str("state") != "active" {
		t.Errorf("row 1: %s", r.Raw)
	}
	if r := l.as("GET", "/v1/contacts/"+b, nil); r.str("job_title") != "CTO" || r.str("state") != "archived" || r.str("name") != "Bea Archived" || fmt.Sprint(r.Body["tags"]) != "[imported]" {
		t.Errorf("row 2 (archived): %s", r.Raw)
	}
	if r := l.as("GET", "/v1/contacts/"+c, nil); r.str("state") != "trashed" || r.str("name") != "Cai Trashed" {
		t.Errorf("row 3 changed a trashed contact: %s", r.Raw)
	}
	if r := l.as("GET", "/v1/contacts/"+res[5].ID, nil); fmt.Sprint(r.Body["tags"]) != "[t1 t2]" || r.str("source", "external_id") != "F-1" {
		t.Errorf("row 6: %s", r.Raw)
	}
	want(t, l.as("GET", "/v1/contacts/"+e, nil), 410, "purged")

	// The same file again: everything matches now.
	_, res, _ = l.importFile("hubspot", "text/csv", file)
	again := []string{"unchanged", "unchanged", "skipped", "skipped", "unchanged", "unchanged", "unchanged", "skipped", "created", "unchanged", "skipped"}
	for i, w := range again {
		if res[i].Result != w {
			t.Errorf("re-import row %d: got %+v, want %s", i+1, res[i], w)
		}
	}
	if res[4].ID != l.byEmail("active", "eve@example.com")[0] {
		t.Errorf("re-import matched %s", res[4].ID)
	}
	// Another source's external id does not match, so by email it updates.
	_, res, _ = l.importFile("salesforce", "text/csv", "external_id,email,job_title\nH-1,alma@example.com,Engineer\n")
	if res[0].Result != "updated" || res[0].ID != a {
		t.Errorf("another source: %+v", res)
	}

	// JSON arrays work the same way, with per-row problems; tags are an
	// array or a ';'-separated string, as in a CSV cell.
	_, res, _ = l.importFile("web", "application/json", `[{"name":"Jo Json","email":"jo@example.com","tags":["x"]},{"name":"Bad","email":"bad@"},`+
		`{"email":"finn@example.com","job_title":"Lead"},{"name":"Kim Semi","email":"kim@example.com","tags":"a; b;;c"}]`)
	if len(res) != 4 || res[0].Result != "created" || res[1].Result != "skipped" || !strings.Contains(res[1].Reason, "email") || res[2].Result != "updated" || res[3].Result != "created" {
		t.Errorf("JSON import: %+v", res)
	}
	if r := l.as("GET", "/v1/contacts/"+res[3].ID, nil); fmt.Sprint(r.Body["tags"]) != "[a b c]" {
		t.Errorf("JSON tags as a ';'-list: got %v, want [a b c]", r.Body["tags"])
	}

	// Spam: create refuses a spam-marked email or phone until it is unmarked.
	r := l.as("POST", "/v1/contacts", map[string]any{"name": "Dov Two", "email": "DOV@example.com"})
	want(t, r, 409, "spam-identity")
	if !strings.Contains(r.str("detail"), d) || strings.Contains(string(r.Raw), "dov@") {
		t.Errorf("spam problem: %s", r.Raw)
	}
	want(t, l.as("POST", "/v1/contacts", map[string]any{"name": "Other", "phone": "+15550100"}), 409, "spam-identity")
	want(t, l.as("POST", "/v1/contacts/"+d+"/unspam", nil), 200, "")
	// Unmarked, the email is still the marked contact's own (identity uniqueness).
	r = l.as("POST", "/v1/contacts", map[string]any{"name": "Dov Two", "email": "dov@example.com"})
	want(t, r, 409, "identity-taken")
	if r.str("holder_id") != d {
		t.Errorf("identity problem: %s", r.Raw)
	}
	_, res, _ = l.importFile("web", "text/csv", "email\ndov@example.com\n")
	if res[0].Result != "updated" && res[0].Result != "unchanged" {
		t.Errorf("an unmarked identity is still refused: %+v", res)
	}
}

// TestImportFileProblems checks that a malformed file changes nothing and
// that the import route takes bodies over the API's 1 MiB limit.
func TestImportFileProblems(t *testing.T) { eachStore(t, testImportFileProblems) }

func testImportFileProblems(t *testing.T, store string) {
	l := start(t, store)
	for name, tc := range map[string]struct {
		source, ct, body string
		status           int
		code             string
	}{
		"no source":       {"", "text/csv", "email\na@example.com\n", 422, "validation-failed"},
		"bad source":      {"NotValid", "text/csv", "email\na@example.com\n", 422, "validation-failed"},
		"media type":      {"web", "text/plain", "email\na@example.com\n", 415, "unsupported-media-type"},
		"unknown column":  {"web", "text/csv", "email,nickname\nbroken1@example.com,x\n", 400, "malformed-import"},
		"no header":       {"web", "text/csv", "", 400, "malformed-import"},
		"bare quote":      {"web", "text/csv", "email,name\nbroken2@example.com,ok\nbroken3@example.com,a\"b\n", 400, "malformed-import"},
		"broken JSON":     {"web", "application/json", `[{"email":"broken4@example.com"},{"email":`, 400, "malformed-import"},
		"not an array":    {"web", "application/json", `{"email":"broken5@example.com"}`, 400, "malformed-import"},
		"trailing JSON":   {"web", "application/json", `[{"email":"broken6@example.com"}] []`, 400, "malformed-import"},
		"identity column": {"web", "text/csv", "job_title\nCEO\n", 400, "malformed-import"},
		"ragged row":      {"web", "text/csv", "email,name\nbroken7@example.com,ok\ntoo,many,fields\n", 400, "malformed-import"},
		"unknown field":   {"web", "application/json", `[{"email":"broken8@example.com"},{"email":"x@example.com","nickname":"b"}]`, 400, "malformed-import"},
		"wrong type":      {"web", "application/json", `[{"email":"broken9@example.com"},{"email":"x@example.com","phone":5}]`, 400, "malformed-import"},
		"bad tags":        {"web", "application/json", `[{"email":"broken10@example.com","tags":{"a":1}}]`, 400, "malformed-import"},
		"not an object":   {"web", "application/json", `[{"email":"broken11@example.com"},"x"]`, 400, "malformed-import"},
	} {
		t.Run(name, func(t *testing.T) {
			r := l.as("POST", "/v1/contacts/import?source="+tc.source, tc.body, "Content-Type", tc.ct)
			want(t, r, tc.status, tc.code)
		})
	}
	for i := 1; i <= 11; i++ {
		if got := l.byEmail("active", fmt.Sprintf("broken%d@example.com", i)); len(got) != 0 {
			t.Fatalf("a malformed file imported broken%d", i)
		}
	}
	// 2 MiB of rows (skipped as invalid, so the test stays quick).
	var b strings.Builder
	b.WriteString("name,email\n")
	for b.Len() < 2<<20 {
		fmt.Fprintf(&b, "Row %d,invalid-address-%d\n", b.Len(), b.Len())
	}
	_, res, totals := l.importFile("web", "text/csv", b.String())
	if len(res) < 40000 || totals["skipped"] != len(res) {
		t.Fatalf("large import: %d results, totals %v", len(res), totals)
	}
}

// TestImportCommand imports a file from the command line.
func TestImportCommand(t *testing.T) { eachStore(t, testImportCommand) }

func testImportCommand(t *testing.T, store string) {
	l := start(t, store)
	path := filepath.Join(t.TempDir(), "people.csv")
	os.WriteFile(path, []byte("name,email,external_id\nCli One,cli1@example.com,X1\nCli Two,cli2@example.com,X2\nBad,nope,X3\n"), 0o600)
	out, errOut, err := l.run("import", path, "--workspace", "default", "--source", "legacy")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if !strings.Contains(out, "row 3: skipped: invalid") || !strings.Contains(errOut, "2 created, 0 updated, 0 unchanged, 1 skipped") {
		t.Fatalf("stdout %q stderr %q", out, errOut)
	}
	if got := l.byEmail("active", "cli2@example.com"); len(got) != 1 {
		t.Fatalf("imported contact not found: %v", got)
	}
	out, _, err = l.run("import", path, "--source", "legacy", "--json", "--no-progress")
	if err != nil || strings.Count(out, `"result":"unchanged"`) != 2 {
		t.Fatalf("re-import: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	os.WriteFile(bad, []byte("email,shoe_size\nx@example.com,9\n"), 0o600)
	// The header's text is never echoed (it could be an email address): the column is named by its place.
	if _, _, err := l.run("import", bad, "--source", "legacy"); err == nil || strings.Contains(err.Error(), "shoe_size") || !strings.Contains(err.Error(), "column 2") {
		t.Fatalf("a malformed file: %v", err)
	}
	// The source is required, as over HTTP.
	if _, _, err := l.run("import", path); err == nil || !strings.Contains(err.Error(), "--source: is required") {
		t.Fatalf("an import without --source: got %v, want the HTTP API's rule", err)
	}
}
