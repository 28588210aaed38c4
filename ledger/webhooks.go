package ledger

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/contactledger/ledger/domain/feed"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// The errors of webhooks.
var (
	ErrWebhooksOff  = &kernel.Error{Code: kernel.CodeUnavailable, Reason: "webhooks-unavailable", Message: "webhooks are not configured on this server"}
	ErrTooManyHooks = &kernel.Error{Code: kernel.CodeConflict, Reason: "too-many-webhooks", Message: "the workspace has as many webhook subscriptions as it may; delete one first"}
)

// MaxWebhooks is the most subscriptions a workspace may have.
const MaxWebhooks = 100

// SecretPrefix starts every webhook signing secret, as Standard Webhooks writes them.
const SecretPrefix = "whsec_"

// DefaultSecretOverlap is how long a rotated-out secret keeps signing, so
// receivers can switch to the new one; MaxSecretOverlap bounds what a
// rotation may ask for.
const (
	DefaultSecretOverlap = 24 * time.Hour
	MaxSecretOverlap     = 7 * 24 * time.Hour
)

// WebhookInput is what a client sets on a subscription; nil fields are
// left as they are (on create: URL is required, Types every type, Enabled true).
type WebhookInput struct {
	URL             *string
	Description     *string
	Types           *[]string
	IncludePersonal *bool
	Enabled         *bool
}

func (s *Subscriptions) webhooksOn() error {
	if s.webhooks == nil || s.sender == nil {
		return ErrWebhooksOff
	}
	return nil
}

// webhook returns one subscription of a workspace. Errors: ErrWebhooksOff,
// kernel.ErrNotFound.
func (s *Subscriptions) webhook(ctx context.Context, workspace, id string) (Webhook, error) {
	if err := s.webhooksOn(); err != nil {
		return Webhook{}, err
	}
	return s.webhooks.Webhook(ctx, workspace, id)
}

// applyInput checks an input and sets it on w; by is who changes it.
func (s *Subscriptions) applyInput(ctx context.Context, w *Webhook, in WebhookInput, by string) error {
	var errs []kernel.FieldError
	if in.URL != nil {
		if err := s.sender.CheckURL(ctx, *in.URL); err != nil {
			return err
		}
		w.URL = *in.URL
	}
	if in.Description != nil {
		d := *in.Description
		if utf8.RuneCountInString(d) > 200 || !utf8.ValidString(d) || strings.ContainsFunc(d, unicode.IsControl) {
			errs = append(errs, kernel.FieldError{Field: "description", Message: "is at most 200 characters, without control characters"})
		}
		w.Description = d
	}
	if in.Types != nil {
		types := slices.Clone(*in.Types)
		slices.Sort(types)
		types = slices.Compact(types)
		if _, err := feed.InternalTypes("types", types); err != nil {
			return err
		}
		w.Types = types
	}
	if in.IncludePersonal != nil {
		w.IncludePersonal = *in.IncludePersonal
	}
	if in.Enabled != nil {
		if *in.Enabled && !w.Enabled {
			w.DisabledReason, w.DisabledAt = "", time.Time{}
		} else if !*in.Enabled && w.Enabled {
			w.DisabledReason, w.DisabledAt = "disabled by "+by, s.now()
		}
		w.Enabled = *in.Enabled
	}
	if len(errs) > 0 {
		return kernel.Invalid(errs...)
	}
	return nil
}

// newSecret makes a signing secret: 32 random bytes, and their whsec_ form.
func newSecret() ([]byte, string, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, "", err
	}
	return k, SecretPrefix + base64.StdEncoding.EncodeToString(k), nil
}

// addSecret stores a new secret in the vault and puts it first on w.
func (s *Subscriptions) addSecret(ctx context.Context, w *Webhook) (string, error) {
	k, text, err := newSecret()
	if err != nil {
		return "", err
	}
	id := "whs_" + ulid.Make().String()
	if err := s.vault.PutSecret(ctx, w.Workspace, id, k, s.now()); err != nil {
		return "", err
	}
	clear(k)
	w.Secrets = append([]WebhookSecret{{ID: id, CreatedAt: s.now()}}, w.Secrets...)
	return text, nil
}

// CreateWebhook creates a subscription that receives the workspace's
// events from now on, and returns it with its signing secret (shown once:
// only the vault keeps it, wrapped).
func (s *Subscriptions) CreateWebhook(ctx context.Context, workspace string, by kernel.Actor, in WebhookInput) (Webhook, string, error) {
	if err := s.webhooksOn(); err != nil {
		return Webhook{}, "", err
	}
	if in.URL == nil || *in.URL == "" {
		return Webhook{}, "", kernel.Invalid(kernel.FieldError{Field: "url", Message: "is required"})
	}
	existing, err := s.webhooks.Webhooks(ctx, workspace)
	if err != nil {
		return Webhook{}, "", err
	}
	if len(existing) >= MaxWebhooks {
		return Webhook{}, "", ErrTooManyHooks
	}
	now := s.now()
	w := Webhook{ID: "wh_" + ulid.Make().String(), Workspace: workspace, Types: []string{}, Enabled: true,
		CreatedAt: now, UpdatedAt: now, CreatedBy: by.Principal}
	if err := s.applyInput(ctx, &w, in, by.Principal); err != nil {
		return Webhook{}, "", err
	}
	secret, err := s.addSecret(ctx, &w)
	if err != nil {
		return Webhook{}, "", err
	}
	head, err := s.feed.FeedHead(ctx)
	if err != nil {
		return Webhook{}, "", err
	}
	if err := s.webhooks.CreateWebhook(ctx, w, head); err != nil {
		s.dropSecrets(ctx, w.Workspace, w.Secrets)
		return Webhook{}, "", err
	}
	w.Revision = 1
	s.log.Info("webhook created", "webhook", w.ID, "workspace", workspace, "by", by.Principal)
	return w, secret, nil
}

func (s *Subscriptions) dropSecrets(ctx context.Context, workspace string, secrets []WebhookSecret) {
	for _, sec := range secrets {
		if err := s.vault.DestroySecret(context.WithoutCancel(ctx), workspace, sec.ID); err != nil {
			s.log.Warn("destroying a webhook secret failed", "secret", sec.ID, "err", err)
		}
	}
}

// Webhooks lists a workspace's subscriptions.
func (s *Subscriptions) Webhooks(ctx context.Context, workspace string) ([]Webhook, error) {
	if err := s.webhooksOn(); err != nil {
		return nil, err
	}
	return s.webhooks.Webhooks(ctx, workspace)
}

// UpdateWebhook changes a subscription's settings. Turning it back on
// resumes delivery where it stopped: nothing was skipped meanwhile.
func (s *Subscriptions) UpdateWebhook(ctx context.Context, workspace, id string, by kernel.Actor, in WebhookInput) (Webhook, error) {
	w, err := s.webhook(ctx, workspace, id)
	if err != nil {
		return Webhook{}, err
	}
	if err := s.applyInput(ctx, &w, in, by.Principal); err != nil {
		return Webhook{}, err
	}
	w.UpdatedAt = s.now()
	if err := s.webhooks.UpdateWebhook(ctx, w); err != nil {
		return Webhook{}, err
	}
	return s.webhooks.Webhook(ctx, workspace, id)
}

// DeleteWebhook deletes a subscription and destroys its secrets.
func (s *Subscriptions) DeleteWebhook(ctx context.Context, workspace, id string) error {
	w, err := s.webhook(ctx, workspace, id)
	if err != nil {
		return err
	}
	if err := s.webhooks.DeleteWebhook(ctx, workspace, id); err != nil {
		return err
	}
	s.dropSecrets(ctx, workspace, w.Secrets)
	return nil
}

// RotateWebhookSecret gives a subscription a new signing secret (returned
// once). The previous one keeps signing for overlap, so each delivery
// carries a signature under each until then; older ones are dropped.
func (s *Subscriptions) RotateWebhookSecret(ctx context.Context, workspace, id string, overlap time.Duration) (Webhook, string, error) {
	if overlap < 0 || overlap > MaxSecretOverlap {
		return Webhook{}, "", kernel.Invalid(kernel.FieldError{Field: "overlap_seconds", Message: "must be from 0 to 604800 (7 days)"})
	}
	w, err := s.webhook(ctx, workspace, id)
	if err != nil {
		return Webhook{}, "", err
	}
	now := s.now()
	var keep, drop []WebhookSecret
	for i, sec := range w.Secrets {
		switch {
		case i == 0 && overlap > 0:
			sec.ExpiresAt = now.Add(overlap)
			keep = append(keep, sec)
		case i > 0 && sec.ExpiresAt.After(now):
			keep = append(keep, sec)
		default:
			drop = append(drop, sec)
		}
	}
	w.Secrets = keep
	secret, err := s.addSecret(ctx, &w)
	if err != nil {
		return Webhook{}, "", err
	}
	w.UpdatedAt = now
	if err := s.webhooks.UpdateWebhook(ctx, w); err != nil {
		s.dropSecrets(ctx, workspace, w.Secrets[:1])
		return Webhook{}, "", err
	}
	s.dropSecrets(ctx, workspace, drop)
	w, err = s.webhooks.Webhook(ctx, workspace, id)
	return w, secret, err
}

// SigningSecrets returns the secrets that sign a subscription's deliveries
// now: the current one and those still in a rotation's overlap.
func (s *Subscriptions) SigningSecrets(ctx context.Context, w Webhook) ([][]byte, error) {
	now := s.now()
	var ids []string
	for _, sec := range w.Secrets {
		if sec.ExpiresAt.IsZero() || sec.ExpiresAt.After(now) {
			ids = append(ids, sec.ID)
		}
	}
	got, err := s.vault.Secrets(ctx, w.Workspace, ids)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(ids))
	for _, id := range ids {
		if k, ok := got[id]; ok {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("webhook %s has no signing secret left", w.ID)
	}
	return out, nil
}

// WebhookStatus is a subscription with how its deliveries go.
type WebhookStatus struct {
	Webhook
	Progress WebhookProgress
	// LagEvents counts the events after the checkpoint it will receive
	// (-1: the store cannot count); LagSeconds is the age of the first of them.
	LagEvents  int64
	LagSeconds float64
}

// maxLagCount is where counting a subscription's lag stops.
const maxLagCount = 1_000_000

// DeliveryTypes are the internal types a subscription receives: its types,
// or every type, and always the erasure notices.
func DeliveryTypes(w Webhook) []string {
	if len(w.Types) == 0 {
		return contactTypes
	}
	types, _ := feed.InternalTypes("types", w.Types)
	for _, t := range feed.ErasureTypes {
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	slices.Sort(types)
	return types
}

// WebhookStatus returns a subscription with its progress and lag.
func (s *Subscriptions) WebhookStatus(ctx context.Context, workspace, id string) (WebhookStatus, error) {
	w, err := s.webhook(ctx, workspace, id)
	if err != nil {
		return WebhookStatus{}, err
	}
	return s.statusOf(ctx, w)
}

func (s *Subscriptions) statusOf(ctx context.Context, w Webhook) (WebhookStatus, error) {
	p, err := s.webhooks.WebhookProgress(ctx, w.ID)
	if err != nil {
		return WebhookStatus{}, err
	}
	st := WebhookStatus{Webhook: w, Progress: p, LagEvents: -1}
	q := LogQuery{Workspace: w.Workspace, After: p.Position, Types: DeliveryTypes(w), Since: p.Since, Limit: 1}
	recs, _, _, err := s.feed.ReadFeed(ctx, FeedQuery{Workspace: q.Workspace, After: q.After, Types: q.Types, Since: q.Since, Limit: 1})
	if err != nil {
		return WebhookStatus{}, err
	}
	if len(recs) == 0 {
		st.LagEvents = 0
	} else {
		st.LagSeconds = max(0, s.now().Sub(recs[0].Time).Seconds())
		if c, ok := s.events.(LogCounter); ok {
			q.Limit = maxLagCount
			if st.LagEvents, err = c.CountLog(ctx, q); err != nil {
				return WebhookStatus{}, err
			}
		}
	}
	return st, nil
}

// WebhookStatuses returns the status of every subscription of every
// workspace (for metrics).
func (s *Subscriptions) WebhookStatuses(ctx context.Context) ([]WebhookStatus, error) {
	if s.webhooks == nil {
		return nil, nil
	}
	ws, err := s.webhooks.Webhooks(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]WebhookStatus, 0, len(ws))
	for _, w := range ws {
		st, err := s.statusOf(ctx, w)
		if errors.Is(err, kernel.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// WebhookDeliveries returns one page of a subscription's delivery attempts, newest first.
func (s *Subscriptions) WebhookDeliveries(ctx context.Context, workspace, id string, q AttemptQuery) ([]DeliveryAttempt, error) {
	if _, err := s.webhook(ctx, workspace, id); err != nil {
		return nil, err
	}
	return s.webhooks.DeliveryAttempts(ctx, workspace, id, q)
}

// ReplayWebhook delivers again every event after a position (one the feed
// or the attempts log gave), or, with since, every event from that time
// on. Events waiting for a retry after that point are delivered once, in
// order, with the rest. A replay never skips anything: after a position the
// checkpoint has not reached, it only sends again what is in flight.
func (s *Subscriptions) ReplayWebhook(ctx context.Context, workspace, id string, after kernel.Position, since time.Time) error {
	if _, err := s.webhook(ctx, workspace, id); err != nil {
		return err
	}
	if !since.IsZero() {
		after = kernel.Position{}
	}
	if err := s.webhooks.ReplayWebhook(ctx, workspace, id, after, since); err != nil {
		return err
	}
	s.log.Info("webhook replay", "webhook", id, "workspace", workspace, "after", after.String(), "since", since)
	return nil
}

// TestWebhook sends a subscription a test message (type webhook.test)
// now, signed like every delivery, and records the attempt.
func (s *Subscriptions) TestWebhook(ctx context.Context, workspace, id string) (DeliveryAttempt, error) {
	w, err := s.webhook(ctx, workspace, id)
	if err != nil {
		return DeliveryAttempt{}, err
	}
	secrets, err := s.SigningSecrets(ctx, w)
	if err != nil {
		return DeliveryAttempt{}, err
	}
	now := s.now()
	msgID := "test_" + ulid.Make().String()
	body, err := feed.MarshalTest(msgID, workspace, w.ID, now)
	if err != nil {
		return DeliveryAttempt{}, err
	}
	res := s.sender.Send(ctx, WebhookMessage{URL: w.URL, ID: msgID, Timestamp: now, Body: body, Secrets: secrets})
	a := DeliveryAttempt{ID: ulid.Make().String(), Webhook: w.ID, EventID: msgID, EventType: feed.TypeTest, Attempt: 1, At: now,
		Status: res.Status, Outcome: AttemptDelivered, Latency: res.Latency}
	if !res.OK() {
		a.Outcome, a.Error = AttemptFailed, res.Err.Error()
	}
	if err := s.webhooks.AddAttempts(ctx, []DeliveryAttempt{a}); err != nil {
		return DeliveryAttempt{}, err
	}
	return a, nil
}
