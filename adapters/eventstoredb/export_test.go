package eventstoredb

import (
	"context"
	"time"
)

// Internals for the external tests.
var (
	EventID          = eventID
	ExpectedRevision = expectedRevision
	ToPosition       = toPosition
	FromPosition     = fromPosition
	Encode           = encode
	Decode           = decode
	Translate        = translate
	IsContactEvent   = isContactEvent
	Filter           = filter
	ErrClosed        = errClosed
)

// SetSleep replaces the pause between subscription attempts.
func (s *Store) SetSleep(f func(ctx context.Context, d time.Duration) error) { s.sleep = f }

// Backoff returns the first n pauses of a fresh backoff, without jitter.
func (s *Store) Backoff(n int, resetAt int) []time.Duration {
	b := s.newBackoff()
	b.jitter = func(time.Duration) time.Duration { return 0 }
	var out []time.Duration
	for i := range n {
		if i == resetAt {
			b.reset()
		}
		out = append(out, b.next())
	}
	return out
}
