package ledger_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/webhookhttp"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/ledgertest"
	"github.com/contactledger/ledger/ledger"
)

// onlyLoopback refuses every address but 127.0.0.1.
func onlyLoopback(a netip.AddrPort) error {
	if a.Addr() != netip.MustParseAddr("127.0.0.1") {
		return fmt.Errorf("the test dials only 127.0.0.1, not %s", a)
	}
	return nil
}

// TestWebhooks manages a workspace's subscriptions against a real
// receiver on 127.0.0.1: create (the secret shown once), list, update,
// test delivery (signed, recorded as an attempt), rotate the secret with
// an overlap (two secrets sign), replay, status, and delete; without a
// sender the operations say webhooks are off.
func TestWebhooks(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		bodies [][]byte
		sigs   []string
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, sigs = append(bodies, b), append(sigs, r.Header.Get("webhook-signature"))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	sender, err := webhookhttp.New(webhookhttp.Options{Allow: []string{"127.0.0.1/32"}, Guard: onlyLoopback, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := ledgertest.New(t, ledgertest.Options{Sender: sender})
	ctx := t.Context()
	ws := ledgertest.Workspace
	url, desc := recv.URL+"/hook", "CRM sync"
	types := []string{"contact.created"}

	if _, _, err := e.Svc.CreateWebhook(ctx, ws, ledgertest.Admin, ledger.WebhookInput{}); !errors.Is(err, kernel.ErrInvalid) {
		t.Fatalf("a webhook without a URL: %v", err)
	}
	bad := "ftp://example.com/x"
	if _, _, err := e.Svc.CreateWebhook(ctx, ws, ledgertest.Admin, ledger.WebhookInput{URL: &bad}); kernel.ErrorCode(err) != kernel.CodeInvalid {
		t.Fatalf("a webhook with an ftp URL: %v", err)
	}
	w, secret, err := e.Svc.CreateWebhook(ctx, ws, ledgertest.Admin, ledger.WebhookInput{URL: &url, Description: &desc, Types: &types})
	if err != nil {
		t.Fatal(err)
	}
	if secret == "" || w.URL != url || !w.Enabled || !slices.Equal(w.Types, types) || len(w.Secrets) != 1 {
		t.Fatalf("created: %+v, secret %q", w, secret)
	}
	if got := ledger.DeliveryTypes(w); !slices.Equal(got, []string{contact.TypeAnonymized, contact.TypeCreated, contact.TypePurged}) {
		t.Fatalf("delivery types %v; want created plus the erasure notices", got)
	}
	off := false
	if w, err = e.Svc.UpdateWebhook(ctx, ws, w.ID, ledgertest.Admin, ledger.WebhookInput{Enabled: &off}); err != nil || w.Enabled || w.DisabledReason == "" {
		t.Fatalf("disable: %+v, %v", w, err)
	}
	on := true
	if w, err = e.Svc.UpdateWebhook(ctx, ws, w.ID, ledgertest.Admin, ledger.WebhookInput{Enabled: &on}); err != nil || !w.Enabled {
		t.Fatalf("enable: %+v, %v", w, err)
	}

	a, err := e.Svc.TestWebhook(ctx, ws, w.ID)
	if err != nil || a.Outcome != ledger.AttemptDelivered || a.Status != http.StatusNoContent {
		t.Fatalf("test delivery: %+v, %v", a, err)
	}
	mu.Lock()
	if len(bodies) != 1 || sigs[0] == "" {
		t.Fatalf("the receiver got %d messages, signature %q", len(bodies), sigs)
	}
	mu.Unlock()
	attempts, err := e.Svc.WebhookDeliveries(ctx, ws, w.ID, ledger.AttemptQuery{Limit: 10})
	if err != nil || len(attempts) != 1 || attempts[0].ID != a.ID {
		t.Fatalf("attempts: %+v, %v", attempts, err)
	}

	w, secret2, err := e.Svc.RotateWebhookSecret(ctx, ws, w.ID, time.Hour)
	if err != nil || secret2 == secret || len(w.Secrets) != 2 {
		t.Fatalf("rotate: %d secrets, %v", len(w.Secrets), err)
	}
	if keys, err := e.Svc.SigningSecrets(ctx, w); err != nil || len(keys) != 2 {
		t.Fatalf("signing secrets during the overlap: %d, %v", len(keys), err)
	}
	if _, _, err := e.Svc.RotateWebhookSecret(ctx, ws, w.ID, -time.Second); !errors.Is(err, kernel.ErrInvalid) {
		t.Fatalf("a negative overlap: %v", err)
	}
	e.Clock.Advance(2 * time.Hour)
	if keys, err := e.Svc.SigningSecrets(ctx, w); err != nil || len(keys) != 1 {
		t.Fatalf("signing secrets after the overlap: %d, %v", len(keys), err)
	}

	e.Create(t, "Ann", "")
	if err := e.Svc.ReplayWebhook(ctx, ws, w.ID, kernel.Position{}, time.Time{}); err != nil {
		t.Fatalf("replay: %v", err)
	}
	st, err := e.Svc.WebhookStatus(ctx, ws, w.ID)
	if err != nil || st.ID != w.ID {
		t.Fatalf("status: %+v, %v", st, err)
	}
	all, err := e.Svc.WebhookStatuses(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("statuses: %d, %v", len(all), err)
	}
	if list, err := e.Svc.Webhooks(ctx, ws); err != nil || len(list) != 1 {
		t.Fatalf("list: %d, %v", len(list), err)
	}
	if err := e.Svc.DeleteWebhook(ctx, ws, w.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.WebhookStatus(ctx, ws, w.ID); !errors.Is(err, kernel.ErrNotFound) {
		t.Fatalf("status of a deleted webhook: %v", err)
	}

	plain := ledgertest.New(t, ledgertest.Options{NoRunner: true})
	if _, _, err := plain.Svc.CreateWebhook(ctx, ws, ledgertest.Admin, ledger.WebhookInput{URL: &url}); !errors.Is(err, ledger.ErrWebhooksOff) {
		t.Fatalf("without a sender: %v; want ErrWebhooksOff", err)
	}
}
