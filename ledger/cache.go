package ledger

import (
	"context"
	"sync"
	"time"
)

// directoryTTL is how long a token or a workspace's policy read from the
// directory serves requests before it is read again. Changes made through
// this process apply at once; changes made by another process (a token
// revoked with `ledger tokens revoke`, a policy changed on another replica)
// apply within this time.
const directoryTTL = 2 * time.Second

// ttlCache keeps values read from the directory for directoryTTL.
type ttlCache[V any] struct {
	mu      sync.Mutex
	entries map[string]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v  V
	at time.Time
}

// get returns the value of key, reading it with load when it is missing or stale.
func (c *ttlCache[V]) get(ctx context.Context, key string, load func(context.Context, string) (V, error)) (V, error) {
	now := time.Now()
	c.mu.Lock()
	if e, ok := c.entries[key]; ok && now.Sub(e.at) < directoryTTL {
		c.mu.Unlock()
		return e.v, nil
	}
	c.mu.Unlock()
	v, err := load(ctx, key)
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.entries == nil || len(c.entries) > 10_000 {
		c.entries = map[string]ttlEntry[V]{}
	}
	c.entries[key] = ttlEntry[V]{v: v, at: now}
	c.mu.Unlock()
	return v, nil
}

// forget drops key, after this process changed it.
func (c *ttlCache[V]) forget(key string) {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}
