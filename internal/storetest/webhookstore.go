package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/oklog/ulid/v2"
)

// WebhookStoreHarness makes stores for the webhook-store suite.
type WebhookStoreHarness struct {
	// New returns an empty store; the harness closes it when the test ends.
	New func(t *testing.T) ledger.WebhookStore
}

func pos(n uint64) kernel.Position { return kernel.Position{Commit: n, Prepare: n + 7} }

var suiteTime = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func newWebhook(ws string) ledger.Webhook {
	return ledger.Webhook{
		ID: "wh_" + ulid.Make().String(), Workspace: ws, URL: "https://hooks.example.com/ledger", Description: "crm sync",
		Types: []string{"contact.created", "contact.restored"}, IncludePersonal: true, Enabled: true,
		Secrets:   []ledger.WebhookSecret{{ID: "whs_" + ulid.Make().String(), CreatedAt: suiteTime}},
		CreatedAt: suiteTime, UpdatedAt: suiteTime, CreatedBy: "tok_suite",
	}
}

// mustCreate stores a new subscription of ws starting after start.
func mustCreate(t *testing.T, s ledger.WebhookStore, ws string, start kernel.Position) ledger.Webhook {
	t.Helper()
	w := newWebhook(ws)
	if err := s.CreateWebhook(context.Background(), w, start); err != nil {
		t.Fatal(err)
	}
	w.Revision = 1
	return w
}

func attempt(w ledger.Webhook, event string, n int, at time.Time, outcome string) ledger.DeliveryAttempt {
	return ledger.DeliveryAttempt{ID: ulid.Make().String(), Webhook: w.ID, EventID: event, EventType: "contact.created", ContactID: "01CONTACT",
		Position: pos(uint64(n)), Attempt: n, At: at, Status: 500, Outcome: outcome, Latency: 1500 * time.Microsecond, Error: "HTTP 500"}
}

// webhookCases is the webhook-store contract, one named case each.
var webhookCases = []struct {
	name string
	run  func(t *testing.T, s ledger.WebhookStore)
}{
	{"a subscription reads back as stored, only in its workspace", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		w := mustCreate(t, s, "ws", pos(10))
		got, err := s.Webhook(ctx, "ws", w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("got %+v, want %+v", got, w)
		}
		if _, err := s.Webhook(ctx, "other", w.ID); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("another workspace's read: got %v, want ErrNotFound", err)
		}
		if err := s.CreateWebhook(ctx, w, pos(10)); !errors.Is(err, kernel.ErrAlreadyExists) {
			t.Fatalf("the same id again: got %v, want ErrAlreadyExists", err)
		}
	}},
	{"lists by workspace, or all", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		a, b, c := mustCreate(t, s, "ws", pos(1)), mustCreate(t, s, "ws", pos(1)), mustCreate(t, s, "other", pos(1))
		ids := func(ws []ledger.Webhook) []string {
			var out []string
			for _, w := range ws {
				out = append(out, w.ID)
			}
			return out
		}
		mine, err := s.Webhooks(ctx, "ws")
		if err != nil || !slices.Equal(ids(mine), []string{a.ID, b.ID}) {
			t.Fatalf("got %v %v, want %s and %s", ids(mine), err, a.ID, b.ID)
		}
		all, err := s.Webhooks(ctx, "")
		if err != nil || len(all) != 3 || !slices.Contains(ids(all), c.ID) {
			t.Fatalf("every workspace's: got %v %v", ids(all), err)
		}
	}},
	{"an update replaces the settings and bumps the revision", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		w := mustCreate(t, s, "ws", pos(1))
		w.URL, w.Types, w.IncludePersonal, w.Enabled, w.DisabledReason, w.DisabledAt = "https://other.example.com/", nil, false, false, "by hand", suiteTime
		w.Secrets = append([]ledger.WebhookSecret{{ID: "whs_new", CreatedAt: suiteTime.Add(time.Hour)}}, w.Secrets...)
		w.Secrets[1].ExpiresAt = suiteTime.Add(25 * time.Hour)
		w.UpdatedAt = suiteTime.Add(time.Hour)
		if err := s.UpdateWebhook(ctx, w); err != nil {
			t.Fatal(err)
		}
		got, err := s.Webhook(ctx, "ws", w.ID)
		if err != nil {
			t.Fatal(err)
		}
		w.Types, w.Revision = []string{}, 2
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("got %+v, want %+v", got, w)
		}
		w.Workspace = "other"
		if err := s.UpdateWebhook(ctx, w); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("an update from another workspace: got %v, want ErrNotFound", err)
		}
	}},
	{"progress starts where the subscription was created", func(t *testing.T, s ledger.WebhookStore) {
		w := mustCreate(t, s, "ws", pos(42))
		p, err := s.WebhookProgress(context.Background(), w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if p.Position != pos(42) || p.Generation != 1 || p.Pending != 0 || !p.FailingSince.IsZero() || !p.Since.IsZero() {
			t.Fatalf("got %+v, want position %s, generation 1, nothing pending", p, pos(42))
		}
		if _, err := s.WebhookProgress(context.Background(), "wh_unknown"); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("an unknown subscription: got %v, want ErrNotFound", err)
		}
	}},
	{"a commit moves the checkpoint only from where it is", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		w := mustCreate(t, s, "ws", pos(1))
		b := ledger.DeliveryBatch{Webhook: w.ID, Generation: 1, From: pos(1), To: pos(5), At: suiteTime,
			LastSuccessAt: suiteTime, Attempts: []ledger.DeliveryAttempt{attempt(w, "e1", 1, suiteTime, ledger.AttemptDelivered)}}
		if err := s.CommitDeliveries(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := s.CommitDeliveries(ctx, b); !errors.Is(err, kernel.ErrConcurrency) {
			t.Fatalf("a commit from a passed checkpoint: got %v, want ErrConcurrency", err)
		}
		b.From, b.To, b.Generation = pos(5), pos(6), 2
		if err := s.CommitDeliveries(ctx, b); !errors.Is(err, kernel.ErrConcurrency) {
			t.Fatalf("a commit of another generation: got %v, want ErrConcurrency", err)
		}
		p, err := s.WebhookProgress(ctx, w.ID)
		if err != nil || p.Position != pos(5) || !p.LastSuccessAt.Equal(suiteTime) {
			t.Fatalf("got %+v %v, want position %s and the success", p, err, pos(5))
		}
		b.Webhook, b.Generation = "wh_unknown", 1
		if err := s.CommitDeliveries(ctx, b); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("a commit for a deleted subscription: got %v, want ErrNotFound", err)
		}
	}},
	{"failing since keeps its first time until healthy", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		w := mustCreate(t, s, "ws", pos(1))
		commit := func(b ledger.DeliveryBatch) ledger.WebhookProgress {
			t.Helper()
			b.Webhook, b.Generation, b.From, b.To, b.At = w.ID, 1, pos(1), pos(1), suiteTime
			if err := s.CommitDeliveries(ctx, b); err != nil {
				t.Fatal(err)
			}
			p, err := s.WebhookProgress(ctx, w.ID)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		if p := commit(ledger.DeliveryBatch{FailingSince: suiteTime, LastError: "HTTP 503"}); !p.FailingSince.Equal(suiteTime) || p.LastError != "HTTP 503" {
			t.Fatalf("got %+v", p)
		}
		if p := commit(ledger.DeliveryBatch{FailingSince: suiteTime.Add(time.Hour), LastError: "timeout"}); !p.FailingSince.Equal(suiteTime) || p.LastError != "timeout" {
			t.Fatalf("a later failure moved failing_since: %+v", p)
		}
		if p := commit(ledger.DeliveryBatch{Healthy: true, LastSuccessAt: suiteTime.Add(2 * time.Hour)}); !p.FailingSince.IsZero() || p.LastError != "timeout" {
			t.Fatalf("a success did not clear failing_since: %+v", p)
		}
	}},
	{"pending events upsert by position, list in order and go when done", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		w := mustCreate(t, s, "ws", pos(1))
		pending := []ledger.PendingDelivery{
			{Stream: "contact-B", Position: pos(9), EventID: "e9"},
			{Stream: "contact-A", Position: pos(3), EventID: "e3", Attempts: 1, NextAt: suiteTime.Add(5 * time.Second), FirstAt: suiteTime},
			{Stream: "contact-A", Position: pos(4), EventID: "e4"},
		}
		if err := s.CommitDeliveries(ctx, ledger.DeliveryBatch{Webhook: w.ID, Generation: 1, From: pos(1), To: pos(9), At: suiteTime, Pending: pending}); err != nil {
			t.Fatal(err)
		}
		retry := pending[1]
		retry.Attempts, retry.NextAt = 2, suiteTime.Add(5*time.Minute)
		err := s.CommitDeliveries(ctx, ledger.DeliveryBatch{Webhook: w.ID, Generation: 1, From: pos(9), To: pos(9), At: suiteTime,
			Pending: []ledger.PendingDelivery{retry}, Done: []kernel.Position{pos(9)}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.PendingDeliveries(ctx, w.ID, kernel.Position{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		want := []ledger.PendingDelivery{retry, pending[2]}
		for i := range want {
			want[i].Webhook = w.ID
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
		if after, _ := s.PendingDeliveries(ctx, w.ID, pos(3), 10); len(after) != 1 || after[0].EventID != "e4" {
			t.Fatalf("after %s: got %+v, want e4", pos(3), after)
		}
		if p, _ := s.WebhookProgress(ctx, w.ID); p.Pending != 2 {
			t.Fatalf("pending count: got %d, want 2", p.Pending)
		}
	}},
	{"attempts page newest first, by event, in their workspace, and are pruned", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		w := mustCreate(t, s, "ws", pos(1))
		var all []ledger.DeliveryAttempt
		for i := range 5 {
			a := attempt(w, "e"+string(rune('0'+i%2)), i+1, suiteTime.Add(time.Duration(i)*time.Hour), ledger.AttemptRetrying)
			all = append(all, a)
			time.Sleep(time.Millisecond) // ulids of distinct milliseconds sort in time order
		}
		if err := s.CommitDeliveries(ctx, ledger.DeliveryBatch{Webhook: w.ID, Generation: 1, From: pos(1), To: pos(1), At: suiteTime, Attempts: all}); err != nil {
			t.Fatal(err)
		}
		page, err := s.DeliveryAttempts(ctx, "ws", w.ID, ledger.AttemptQuery{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != 2 || !reflect.DeepEqual(page[0], all[4]) || page[1].ID != all[3].ID {
			t.Fatalf("first page: got %+v, want the newest two", page)
		}
		next, err := s.DeliveryAttempts(ctx, "ws", w.ID, ledger.AttemptQuery{Limit: 10, Before: page[1].ID})
		if err != nil || len(next) != 3 || next[0].ID != all[2].ID {
			t.Fatalf("next page: got %+v %v", next, err)
		}
		byEvent, err := s.DeliveryAttempts(ctx, "ws", w.ID, ledger.AttemptQuery{Limit: 10, EventID: "e1"})
		if err != nil || len(byEvent) != 2 {
			t.Fatalf("attempts of e1: got %+v %v, want 2", byEvent, err)
		}
		if other, _ := s.DeliveryAttempts(ctx, "other", w.ID, ledger.AttemptQuery{Limit: 10}); len(other) != 0 {
			t.Fatalf("another workspace sees the attempts: %+v", other)
		}
		n, err := s.PruneAttempts(ctx, suiteTime.Add(2*time.Hour))
		if err != nil || n != 2 {
			t.Fatalf("prune: got %d %v, want 2", n, err)
		}
		if left, _ := s.DeliveryAttempts(ctx, "ws", w.ID, ledger.AttemptQuery{Limit: 10}); len(left) != 3 {
			t.Fatalf("after pruning: got %d attempts, want 3", len(left))
		}
	}},
	{"a batch of many attempts is written whole", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		w := mustCreate(t, s, "ws", pos(1))
		var all []ledger.DeliveryAttempt
		for i := range 150 {
			all = append(all, attempt(w, fmt.Sprint("e", i), 1, suiteTime, ledger.AttemptDelivered))
		}
		if err := s.CommitDeliveries(ctx, ledger.DeliveryBatch{Webhook: w.ID, Generation: 1, From: pos(1), To: pos(2), At: suiteTime, Attempts: all}); err != nil {
			t.Fatal(err)
		}
		got, err := s.DeliveryAttempts(ctx, "ws", w.ID, ledger.AttemptQuery{Limit: 200})
		if err != nil || len(got) != 150 {
			t.Fatalf("got %d attempts (%v), want 150", len(got), err)
		}
		if one, _ := s.DeliveryAttempts(ctx, "ws", w.ID, ledger.AttemptQuery{Limit: 5, EventID: "e149"}); len(one) != 1 || !reflect.DeepEqual(one[0], all[149]) {
			t.Fatalf("the last attempt reads back as %+v, want %+v", one, all[149])
		}
	}},
	{"attempts added outside delivery read back, checkpoint untouched", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		w := mustCreate(t, s, "ws", pos(3))
		a := attempt(w, "test_1", 1, suiteTime, ledger.AttemptDelivered)
		a.EventType, a.ContactID, a.Position, a.Status, a.Error = "webhook.test", "", kernel.Position{}, 204, ""
		if err := s.AddAttempts(ctx, []ledger.DeliveryAttempt{a}); err != nil {
			t.Fatal(err)
		}
		got, err := s.DeliveryAttempts(ctx, "ws", w.ID, ledger.AttemptQuery{Limit: 10})
		if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], a) {
			t.Fatalf("got %+v %v, want %+v", got, err, a)
		}
		if p, _ := s.WebhookProgress(ctx, w.ID); p.Position != pos(3) || p.Generation != 1 {
			t.Fatalf("the checkpoint moved: %+v", p)
		}
	}},
	{"erasure acknowledgments keep their first times and outlive the subscription", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		w := mustCreate(t, s, "ws", pos(1))
		commit := func(a ledger.ErasureAck) {
			t.Helper()
			err := s.CommitDeliveries(ctx, ledger.DeliveryBatch{Webhook: w.ID, Generation: 1, From: pos(1), To: pos(1), At: suiteTime, Acks: []ledger.ErasureAck{a}})
			if err != nil {
				t.Fatal(err)
			}
		}
		ack := ledger.ErasureAck{Webhook: w.ID, Workspace: "ws", Contact: "01CONTACT", EventID: "e7", NotifiedAt: suiteTime}
		commit(ack)
		ack.NotifiedAt, ack.AcknowledgedAt = suiteTime.Add(time.Minute), suiteTime.Add(time.Minute)
		commit(ack)
		ack.NotifiedAt, ack.AcknowledgedAt = suiteTime.Add(time.Hour), suiteTime.Add(time.Hour)
		commit(ack)
		if err := s.DeleteWebhook(ctx, "ws", w.ID); err != nil {
			t.Fatal(err)
		}
		got, err := s.ErasureAcks(ctx, "ws", "01CONTACT")
		want := []ledger.ErasureAck{{Webhook: w.ID, Workspace: "ws", Contact: "01CONTACT", EventID: "e7", NotifiedAt: suiteTime, AcknowledgedAt: suiteTime.Add(time.Minute)}}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v %v, want %+v", got, err, want)
		}
		if other, _ := s.ErasureAcks(ctx, "other", "01CONTACT"); len(other) != 0 {
			t.Fatalf("another workspace sees them: %+v", other)
		}
	}},
	{"a replay moves back, forgets later pending events and fails older commits", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		w := mustCreate(t, s, "ws", pos(1))
		err := s.CommitDeliveries(ctx, ledger.DeliveryBatch{Webhook: w.ID, Generation: 1, From: pos(1), To: pos(20), At: suiteTime,
			Pending: []ledger.PendingDelivery{{Stream: "contact-A", Position: pos(5), EventID: "e5"}, {Stream: "contact-B", Position: pos(15), EventID: "e15"}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ReplayWebhook(ctx, "ws", w.ID, pos(10), suiteTime); err != nil {
			t.Fatal(err)
		}
		p, err := s.WebhookProgress(ctx, w.ID)
		if err != nil || p.Position != pos(10) || p.Generation != 2 || !p.Since.Equal(suiteTime) || p.Pending != 1 {
			t.Fatalf("got %+v %v, want position %s, generation 2, since set, one pending", p, err, pos(10))
		}
		if got, _ := s.Webhook(ctx, "ws", w.ID); got.Revision != 2 {
			t.Fatalf("revision: got %d, want 2", got.Revision)
		}
		if err := s.CommitDeliveries(ctx, ledger.DeliveryBatch{Webhook: w.ID, Generation: 1, From: pos(10), To: pos(11), At: suiteTime}); !errors.Is(err, kernel.ErrConcurrency) {
			t.Fatalf("a commit started before the replay: got %v, want ErrConcurrency", err)
		}
		if err := s.CommitDeliveries(ctx, ledger.DeliveryBatch{Webhook: w.ID, Generation: 2, From: pos(10), To: pos(11), At: suiteTime, ClearSince: true}); err != nil {
			t.Fatal(err)
		}
		if p, _ := s.WebhookProgress(ctx, w.ID); !p.Since.IsZero() {
			t.Fatalf("since was not cleared: %+v", p)
		}
		if err := s.ReplayWebhook(ctx, "ws", w.ID, pos(50), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if p, _ := s.WebhookProgress(ctx, w.ID); p.Position != pos(11) || p.Generation != 3 {
			t.Fatalf("a replay after a position ahead: got %+v, want the checkpoint kept at %s and the generation moved", p, pos(11))
		}
		if err := s.ReplayWebhook(ctx, "other", w.ID, pos(1), time.Time{}); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("a replay from another workspace: got %v, want ErrNotFound", err)
		}
	}},
	{"a commit can disable the subscription", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		w := mustCreate(t, s, "ws", pos(1))
		at := suiteTime.Add(120 * time.Hour)
		if err := s.CommitDeliveries(ctx, ledger.DeliveryBatch{Webhook: w.ID, Generation: 1, From: pos(1), To: pos(1), At: at, Disable: "failing for 5 days"}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Webhook(ctx, "ws", w.ID)
		if err != nil || got.Enabled || got.DisabledReason != "failing for 5 days" || !got.DisabledAt.Equal(at) || got.Revision != 2 {
			t.Fatalf("got %+v %v, want it disabled with the reason", got, err)
		}
	}},
	{"deleting a subscription deletes its progress, pending events and attempts", func(t *testing.T, s ledger.WebhookStore) {
		ctx := context.Background()
		w := mustCreate(t, s, "ws", pos(1))
		err := s.CommitDeliveries(ctx, ledger.DeliveryBatch{Webhook: w.ID, Generation: 1, From: pos(1), To: pos(2), At: suiteTime,
			Pending:  []ledger.PendingDelivery{{Stream: "contact-A", Position: pos(2), EventID: "e2"}},
			Attempts: []ledger.DeliveryAttempt{attempt(w, "e2", 1, suiteTime, ledger.AttemptRetrying)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteWebhook(ctx, "other", w.ID); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("a delete from another workspace: got %v, want ErrNotFound", err)
		}
		if err := s.DeleteWebhook(ctx, "ws", w.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Webhook(ctx, "ws", w.ID); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("after delete: got %v, want ErrNotFound", err)
		}
		if _, err := s.WebhookProgress(ctx, w.ID); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("progress after delete: got %v, want ErrNotFound", err)
		}
		if p, _ := s.PendingDeliveries(ctx, w.ID, kernel.Position{}, 10); len(p) != 0 {
			t.Fatalf("pending after delete: %+v", p)
		}
		if n, _ := s.PruneAttempts(ctx, suiteTime.Add(time.Hour)); n != 0 {
			t.Fatalf("attempts after delete: %d left", n)
		}
	}},
}

// RunWebhookStore runs the webhook-store contract suite.
func RunWebhookStore(t *testing.T, h WebhookStoreHarness) {
	for _, c := range webhookCases {
		t.Run(c.name, func(t *testing.T) { c.run(t, h.New(t)) })
	}
}
