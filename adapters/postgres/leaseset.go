package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/contactledger/ledger/delivery"
	"github.com/jackc/pgx/v5/pgxpool"
)

var _ delivery.Leases = (*Store)(nil)

// OpenLeases opens a session, on a connection of its own, that holds any
// number of named session advisory locks: one connection for every
// webhook subscription a process delivers, instead of one each. When the
// process dies, PostgreSQL ends the session and every lock with it, and
// another process takes them at its next try.
func (s *Store) OpenLeases(ctx context.Context) (delivery.LeaseSession, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	l := &leaseSession{conn: conn, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go l.watch()
	return l, nil
}

// leaseSession is a connection holding advisory locks. Its calls take
// turns on the connection.
type leaseSession struct {
	mu       sync.Mutex
	conn     *pgxpool.Conn
	lost     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	lostOnce sync.Once
	stopOnce sync.Once
	closed   bool
}

func leaseKey(name string) string { return "ledger.lease." + name }

// watch pings the connection every LeaseRetry; a failed ping means the
// session, and its locks, may be gone.
func (l *leaseSession) watch() {
	defer close(l.done)
	t := time.NewTicker(LeaseRetry)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := l.conn.Ping(ctx)
			cancel()
			l.mu.Unlock()
			if err != nil {
				l.lostOnce.Do(func() { close(l.lost) })
				return
			}
		}
	}
}

func (l *leaseSession) TryAcquire(ctx context.Context, name string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var got bool
	if err := l.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, leaseKey(name)).Scan(&got); err != nil {
		return false, fmt.Errorf("lease %s: %w", name, err)
	}
	return got, nil
}

func (l *leaseSession) Release(ctx context.Context, name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, leaseKey(name))
	return err
}

func (l *leaseSession) Lost() <-chan struct{} { return l.lost }

// Close gives every lock back and returns the connection to the pool (or
// closes it, when unlocking fails: the server then drops the locks).
func (l *leaseSession) Close() error {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock_all()`); err != nil {
		l.conn.Conn().Close(ctx)
	}
	l.conn.Release()
	return nil
}
