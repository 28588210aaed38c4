package ledger

import (
	"context"
	"time"
)

// WebhookMessage is one signed HTTP delivery.
type WebhookMessage struct {
	URL string
	// ID is the message id (webhook-id): the same on every attempt, so
	// receivers can drop repeats.
	ID        string
	Timestamp time.Time
	Body      []byte
	// Secrets sign the message, each giving a signature (several during a
	// rotation's overlap).
	Secrets [][]byte
}

// WebhookResponse is what became of one attempt.
type WebhookResponse struct {
	// Status is the receiver's HTTP status (0: no answer).
	Status  int
	Latency time.Duration
	// Err says why the attempt failed, in words that hold no URL, no
	// answer body and nothing personal; nil for a 2xx.
	Err error
}

// OK reports whether the receiver took the message (2xx).
func (r WebhookResponse) OK() bool { return r.Err == nil && r.Status >= 200 && r.Status < 300 }

// WebhookSender sends webhooks over HTTP without reaching the deployment's
// own network: addresses that are not public are refused unless allowed.
type WebhookSender interface {
	// CheckURL refuses a URL that is malformed or whose host is, or
	// resolves to, an address that may not be delivered to. Errors: a
	// kernel.CodeInvalid error naming the field "url".
	CheckURL(ctx context.Context, raw string) error
	// Send makes one attempt to deliver m.
	Send(ctx context.Context, m WebhookMessage) WebhookResponse
}
