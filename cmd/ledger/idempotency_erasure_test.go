package main_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/contactledger/ledger/ledger"
)

// TestRetryAfterErasure checks that a request repeated with its
// Idempotency-Key after the contact it created or is about was purged or
// anonymized is answered 410 erased, naming the tombstone and nothing
// personal, and runs nothing: the workspace holds no new contact, and the
// stored answers keep no personal data.
func TestRetryAfterErasure(t *testing.T) { eachStore(t, testRetryAfterErasure) }

func testRetryAfterErasure(t *testing.T, store string) {
	l := start(t, store)
	for _, erase := range []string{"purge", "anonymize"} {
		t.Run(erase, func(t *testing.T) {
			person := map[string]any{"name": "Retry " + erase + " Person", "email": "retry." + erase + "@example.com", "tags": []string{"retry-" + erase + "-tag"}}
			created := l.as("POST", "/v1/contacts", person, "Idempotency-Key", "create-"+erase)
			want(t, created, 201, "")
			id := created.str("id")
			noteKey := "note-" + erase
			note := map[string]any{"text": "Retry " + erase + " note text"}
			want(t, l.as("POST", "/v1/contacts/"+id+"/notes", note, "Idempotency-Key", noteKey), 201, "")
			trash := map[string]any{"reason": "retry " + erase + " trash reason"}
			want(t, l.as("POST", "/v1/contacts/"+id+"/trash", trash, "Idempotency-Key", "trash-"+erase), 200, "")
			gone := l.as("POST", "/v1/contacts/"+id+"/"+erase, nil)
			want(t, gone, 200, "")
			tombstone := gone.str("tombstone", "event_id")
			before := l.auditCount()

			for _, retry := range []struct {
				path string
				body any
				key  string
			}{
				{"/v1/contacts", person, "create-" + erase},
				{"/v1/contacts/" + id + "/notes", note, noteKey},
				{"/v1/contacts/" + id + "/trash", trash, "trash-" + erase},
			} {
				r := l.as("POST", retry.path, retry.body, "Idempotency-Key", retry.key)
				want(t, r, 410, "erased")
				if r.str("tombstone_event_id") != tombstone {
					t.Fatalf("retry of %s: %s, want the tombstone %s named", retry.path, r.Raw, tombstone)
				}
				for _, s := range []string{"Retry", "retry.", "retry-"} {
					if bytes.Contains(r.Raw, []byte(s)) {
						t.Fatalf("retry of %s answered personal data: %s", retry.path, r.Raw)
					}
				}
				if r.Header.Get("Idempotent-Replayed") != "" || r.Header.Get("Location") != "" {
					t.Fatalf("retry of %s replayed the first answer's headers: %v", retry.path, r.Header)
				}
			}
			// The same again once the erasure projection has stripped the answers.
			l.ids("view=active")
			want(t, l.as("POST", "/v1/contacts", person, "Idempotency-Key", "create-"+erase), 410, "erased")
			// Another body with the key is still another request.
			want(t, l.as("POST", "/v1/contacts", map[string]any{"name": "Someone Else"}, "Idempotency-Key", "create-"+erase), 422, "idempotency-key-reused")

			if n := l.auditCount(); n != before {
				t.Fatalf("the retries appended %d events, want none", n-before)
			}
			for _, view := range []string{"active", "archived", "trash"} {
				if ids := l.ids("view=" + view); len(ids) != 0 {
					t.Fatalf("view %s holds %v after the retries, want no contact", view, ids)
				}
			}
		})
	}
	// The stored answers hold none of the erased people's data, at rest.
	l.assertErased([]string{"Retry purge Person", "retry.purge@example.com", "retry-purge-tag", "Retry purge note text", "retry purge trash reason",
		"Retry anonymize Person", "retry.anonymize@example.com", "retry-anonymize-tag", "Retry anonymize note text", "retry anonymize trash reason"})
}

// auditCount returns how many events the workspace's log holds.
func (l *ledgerUnderTest) auditCount() int {
	l.t.Helper()
	r := l.as("GET", "/v1/audit/events", nil)
	want(l.t, r, 200, "")
	return bytes.Count(r.Raw, []byte("\n"))
}

// TestIdempotencyKeysBelongToTheirToken checks that a key is the token's
// own: another token's request with an admin's key does not get the
// admin's answer but runs as its own request, through its own permissions;
// and that a replay passes authentication again (a revoked token gets 401).
func TestIdempotencyKeysBelongToTheirToken(t *testing.T) {
	eachStore(t, testIdempotencyKeysBelongToTheirToken)
}

func testIdempotencyKeysBelongToTheirToken(t *testing.T, store string) {
	l := start(t, store)
	member := l.token("default", "member")
	id := l.create(map[string]any{"name": "Shared Key", "email": "shared.key@example.com"})
	want(t, l.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")

	// An admin's answer to a create: the member's same request with the
	// admin's key makes the member's own contact.
	// (No email: the member's contact would be refused the admin's one's.)
	body := map[string]any{"name": "Admin Made", "job_title": "Maker"}
	first := l.as("POST", "/v1/contacts", body, "Idempotency-Key", "admin-key")
	want(t, first, 201, "")
	mine := l.do(member, "POST", "/v1/contacts", body, "Idempotency-Key", "admin-key")
	want(t, mine, 201, "")
	if mine.Header.Get("Idempotent-Replayed") != "" || mine.str("id") == first.str("id") {
		t.Fatalf("the member got the admin's answer: %s", mine.Raw)
	}
	// An admin's purge: the member's repeat is the member's own purge, refused.
	purge := l.as("POST", "/v1/contacts/"+id+"/anonymize", nil, "Idempotency-Key", "admin-purge")
	want(t, purge, 200, "")
	want(t, l.do(member, "POST", "/v1/contacts/"+id+"/anonymize", nil, "Idempotency-Key", "admin-purge"), 403, "role-not-allowed")

	// A replay is authenticated again: a revoked token gets no answer.
	tok := l.token("default", "admin")
	want(t, l.do(tok, "POST", "/v1/contacts", map[string]any{"name": "Before Revoke"}, "Idempotency-Key", "revoked"), 201, "")
	p, err := l.Svc.Authenticate(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	want(t, l.as("DELETE", "/v1/tokens/"+p.TokenID, nil), 200, "")
	want(t, l.do(tok, "POST", "/v1/contacts", map[string]any{"name": "Before Revoke"}, "Idempotency-Key", "revoked"), 401, "unauthorized")
}

// TestIdempotencyTakeoverComparesRequest checks that a claim left by a
// request whose process died is taken over only by the same request: the
// same key with another body is 422, even after the claim's lock lapsed.
func TestIdempotencyTakeoverComparesRequest(t *testing.T) {
	eachStore(t, testIdempotencyTakeoverComparesRequest)
}

func testIdempotencyTakeoverComparesRequest(t *testing.T, store string) {
	l := start(t, store)
	ctx := context.Background()
	p, err := l.Svc.Authenticate(ctx, l.admin)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"name": "Died Midway"})
	h := sha256.New()
	h.Write([]byte("POST\x00/v1/contacts\x00\x00"))
	h.Write(body)
	// A claim whose process died three minutes ago, before it answered.
	past := time.Now().UTC().Add(-3 * time.Minute).Truncate(time.Microsecond)
	idem := l.State().(ledger.IdempotencyStore)
	if _, claimed, err := idem.ClaimIdempotency(ctx, ledger.Idempotency{Workspace: "default", Principal: p.TokenID, Key: "died",
		Fingerprint: h.Sum(nil), LockedUntil: past.Add(2 * time.Minute), CreatedAt: past, ExpiresAt: past.Add(48 * time.Hour)}); err != nil || !claimed {
		t.Fatalf("claim: %v, %v", claimed, err)
	}
	want(t, l.as("POST", "/v1/contacts", map[string]any{"name": "Another Body"}, "Idempotency-Key", "died"), 422, "idempotency-key-reused")
	if ids := l.ids("view=active"); len(ids) != 0 {
		t.Fatalf("the other body was run: %v", ids)
	}
	r := l.as("POST", "/v1/contacts", body, "Idempotency-Key", "died")
	want(t, r, 201, "")
	if want := ledger.IdempotentID("default", p.TokenID, "died", past).String(); r.str("id") != want {
		t.Fatalf("the takeover made %s, want %s (the id of the first claim)", r.str("id"), want)
	}
}
