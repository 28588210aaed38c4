package wire

import (
	"time"

	"github.com/contactledger/ledger/ledger"
)

// WebhookSecretJSON is a signing secret's id and life, never its value.
type WebhookSecretJSON struct {
	ID        string     `json:"id"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// WebhookStatusJSON is how a subscription's deliveries go.
type WebhookStatusJSON struct {
	// Position is the checkpoint: every event up to it was delivered, given
	// up on, or is pending.
	Position      string     `json:"position"`
	LagEvents     int64      `json:"lag_events"`
	LagSeconds    float64    `json:"lag_seconds"`
	Pending       int64      `json:"pending"`
	LastSuccessAt *time.Time `json:"last_success_at,omitempty"`
	FailingSince  *time.Time `json:"failing_since,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
}

// WebhookJSON is a subscription as admins see it.
type WebhookJSON struct {
	ID              string              `json:"id"`
	URL             string              `json:"url"`
	Description     string              `json:"description"`
	Types           []string            `json:"types"`
	IncludePersonal bool                `json:"include_personal"`
	Enabled         bool                `json:"enabled"`
	DisabledReason  string              `json:"disabled_reason,omitempty"`
	DisabledAt      *time.Time          `json:"disabled_at,omitempty"`
	Secrets         []WebhookSecretJSON `json:"secrets"`
	CreatedAt       time.Time           `json:"created_at"`
	UpdatedAt       time.Time           `json:"updated_at"`
	CreatedBy       string              `json:"created_by"`
	Status          *WebhookStatusJSON  `json:"status,omitempty"`
	// Secret is the new signing secret, in the answers that make one only.
	Secret string `json:"secret,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func WebhookOf(w ledger.Webhook) WebhookJSON {
	out := WebhookJSON{ID: w.ID, URL: w.URL, Description: w.Description, Types: w.Types, IncludePersonal: w.IncludePersonal,
		Enabled: w.Enabled, DisabledReason: w.DisabledReason, DisabledAt: optTime(w.DisabledAt), Secrets: []WebhookSecretJSON{},
		CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt, CreatedBy: w.CreatedBy}
	if out.Types == nil {
		out.Types = []string{}
	}
	for _, s := range w.Secrets {
		out.Secrets = append(out.Secrets, WebhookSecretJSON{ID: s.ID, CreatedAt: s.CreatedAt, ExpiresAt: optTime(s.ExpiresAt)})
	}
	return out
}

// WebhookStatusOf is a subscription with its delivery status, as the API
// and the command line show it.
func WebhookStatusOf(st ledger.WebhookStatus) WebhookJSON {
	out := WebhookOf(st.Webhook)
	p := st.Progress
	out.Status = &WebhookStatusJSON{Position: p.Position.String(), LagEvents: st.LagEvents, LagSeconds: st.LagSeconds, Pending: p.Pending,
		LastSuccessAt: optTime(p.LastSuccessAt), FailingSince: optTime(p.FailingSince), LastError: p.LastError}
	return out
}
