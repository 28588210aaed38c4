package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/contactledger/ledger/ledger"
	"github.com/jackc/pgx/v5/pgxpool"
)

var _ ledger.Lease = (*Store)(nil)

// LeaseRetry is how often a process that waits for a lease tries to take it.
var LeaseRetry = time.Second

// Acquire blocks until this process holds the session advisory lock named
// name, on a connection of its own. The returned context ends when the
// lock is lost (the connection broke); release gives it up. When the
// holding process dies, PostgreSQL drops its session and the lock with it,
// and another process takes it at its next try.
func (s *Store) Acquire(ctx context.Context, name string) (context.Context, func(), error) {
	for {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return nil, nil, err
		}
		var got bool
		err = conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, "ledger.lease."+name).Scan(&got)
		if err == nil && got {
			return s.hold(ctx, conn, name)
		}
		conn.Release()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("trying a lease failed", "lease", name, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(LeaseRetry):
		}
	}
}

func (s *Store) hold(ctx context.Context, conn *pgxpool.Conn, name string) (context.Context, func(), error) {
	leaseCtx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(LeaseRetry)
		defer t.Stop()
		for {
			select {
			case <-leaseCtx.Done():
				return
			case <-t.C:
				pctx, pcancel := context.WithTimeout(leaseCtx, 5*time.Second)
				err := conn.Ping(pctx)
				pcancel()
				if err != nil && leaseCtx.Err() == nil {
					cancel(fmt.Errorf("lease %s lost: %w", name, err))
					return
				}
			}
		}
	}()
	release := func() {
		cancel(nil)
		<-done
		// Unlocking on a broken connection fails; the server dropped the lock with it.
		uctx, ucancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ucancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, "ledger.lease."+name); err != nil {
			conn.Conn().Close(uctx)
		}
		conn.Release()
	}
	return leaseCtx, release, nil
}

// TryAcquire takes the session advisory lock named name if no other
// process holds it, for a background task that one replica at a time should
// run (the retention sweep, a workspace's restore job). release gives it up.
func (s *Store) TryAcquire(ctx context.Context, name string) (func(), bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, err
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, "ledger.lease."+name).Scan(&got); err != nil || !got {
		conn.Release()
		return nil, false, err
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, "ledger.lease."+name); err != nil {
			conn.Conn().Close(uctx)
		}
		conn.Release()
	}, true, nil
}
