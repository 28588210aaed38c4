package ledger

import (
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
