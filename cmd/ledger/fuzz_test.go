package main_test

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	main "github.com/contactledger/ledger/cmd/ledger"
)

// FuzzAPI sends any body and query to the real handler, wired to the
// embedded store: whatever arrives, the answer is never a 500 and every
// error is a problem document.
func FuzzAPI(f *testing.F) {
	m := main.NewMain()
	m.Config.Addr, m.Config.DataDir, m.Config.LogLevel, m.Config.DatabaseURL, m.Config.KEKURL = "127.0.0.1:0", f.TempDir(), "error", "", ""
	m.Config.WebhookAllow = []string{"127.0.0.1/32"}
	m.Stdout, m.Stderr = io.Discard, io.Discard
	if err := m.Run(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Close() })
	token := m.AdminToken
	call := func(method, path, rawQuery string, body []byte, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/", bytes.NewReader(body))
		req.URL.Path, req.URL.RawQuery, req.RequestURI = path, rawQuery, ""
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		m.API.ServeHTTP(w, req)
		return w
	}
	w := call("POST", "/v1/contacts", "", []byte(`{"name":"Fuzz Target","email":"fuzz@example.com"}`))
	if w.Code != 201 {
		f.Fatalf("setup: %d %s", w.Code, w.Body)
	}
	id := strings.TrimPrefix(w.Header().Get("Location"), "/v1/contacts/")
	w = call("POST", "/v1/webhooks", "", []byte(`{"url":"http://127.0.0.1:9/hook"}`))
	if w.Code != 201 {
		f.Fatalf("setup: %d %s", w.Code, w.Body)
	}
	hook := strings.TrimPrefix(w.Header().Get("Location"), "/v1/webhooks/")

	for _, s := range []struct {
		op          uint8
		body, query string
	}{
		{0, `{"name":"A","email":"a@example.com"}`, ""},
		{1, `{"name":null,"custom_fields":{"x":"y"}}`, ""},
		{2, `{"reason":"r"}`, ""},
		{3, ``, "view=trash&deleted_after=2026-01-01T00:00:00Z&q=a&limit=5"},
		{3, ``, "cursor=eyJ2IjoiYWN0aXZlIn0&view=active"},
		{4, `{"role":"auditor"}`, ""},
		{5, `{"reason":"x","request":"T-1"}`, ""},
		{0, `{"name":"` + strings.Repeat("é", 300) + `"}`, ""},
		{7, `{"action":"trash","ids":["01ARZ3NDEKTSV4RRFFQ69G5FAV"],"expected_count":1}`, ""},
		{8, `[{"name":"Imported","email":"imp@example.com"}]`, "source=fuzz"},
		{9, "name,email\nCsv Person,csv@example.com\n", ""},
		{10, `{"url":"http://127.0.0.1:9/x","types":["contact.created"],"include_personal":true}`, ""},
		{11, ``, "after=0&types=contact.created,contact.restored&limit=5&include_personal=true"},
		{12, `{"types":[],"enabled":false,"description":"d"}`, ""},
		{13, `{"since":"2026-01-01T00:00:00Z"}`, "after=0"},
		{14, `{"overlap_seconds":60}`, "limit=3&before=01ARZ3NDEKTSV4RRFFQ69G5FAV"},
	} {
		f.Add(s.op, []byte(s.body), s.query)
	}
	f.Fuzz(func(t *testing.T, op uint8, body []byte, query string) {
		var w *httptest.ResponseRecorder
		switch op % 15 {
		case 0:
			w = call("POST", "/v1/contacts", "", body)
		case 1:
			w = call("PATCH", "/v1/contacts/"+id, "", body, "If-Match", query)
		case 2:
			w = call("POST", "/v1/contacts/"+id+"/archive", "", body)
		case 3:
			w = call("GET", "/v1/contacts", query, nil)
		case 4:
			w = call("POST", "/v1/tokens", "", body)
		case 5:
			w = call("POST", "/v1/contacts/"+query+"/purge", "", body)
		case 6:
			w = call("POST", "/v1/contacts", "", body, "Idempotency-Key", query)
		case 7:
			w = call("POST", "/v1/contacts/bulk", "", body)
		case 8:
			w = call("POST", "/v1/contacts/import", query, body)
		case 9:
			w = call("POST", "/v1/contacts/import", "source=fuzz", body, "Content-Type", "text/csv")
		case 10:
			w = call("POST", "/v1/webhooks", "", body)
		case 11:
			w = call("GET", "/v1/events", query, nil)
		case 12:
			w = call("PATCH", "/v1/webhooks/"+hook, "", body)
		case 13:
			w = call("POST", "/v1/webhooks/"+hook+"/replay", "", body)
		case 14:
			if w = call("POST", "/v1/webhooks/"+hook+"/rotate-secret", "", body); w.Code < 500 {
				w = call("GET", "/v1/webhooks/"+hook+"/deliveries", query, nil)
			}
		}
		if w.Code >= 500 {
			t.Fatalf("answer %d: %s", w.Code, w.Body)
		}
		if w.Code >= 400 && w.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("error %d without a problem document: %q", w.Code, w.Header().Get("Content-Type"))
		}
	})
}
