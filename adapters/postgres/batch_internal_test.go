package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/contactledger/ledger/internal/storetest"
	"github.com/jackc/pgx/v5"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), pgtest.URL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestBatchLosesARaceMidway makes a batch collide twice with concurrent
// transactions. The plain statement waits on a first racer's insert of
// stream x and fails when it commits; the batch runs again, skipping
// collisions, and meets a second racer on stream y, whose first event it
// loses while its second goes in: it takes that back, so y holds the
// racer's event only, and commits stream z.
func TestBatchLosesARaceMidway(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	x, y, z := contact.NewID().Stream(), contact.NewID().Stream(), contact.NewID().Stream()
	racer := func(stream string) (pgx.Tx, kernel.Record) {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback(context.Background()) })
		r := storetest.Rec("ws", stream, 1)
		if _, err := tx.Exec(ctx, `INSERT INTO events (id, stream, version, type, time, workspace, actor, actor_role, correlation_id, causation_id, schema, data, hash)
			VALUES ($1, $2, 1, $3, $4, 'ws', 'a', 'member', 'c', 'c', 1, '\x7b7d', '\x00')`, r.ID[:], stream, r.Type, r.Time); err != nil {
			t.Fatal(err)
		}
		return tx, r
	}
	first, firstRec := racer(x)
	type outcome struct {
		res []kernel.AppendResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := s.AppendMany(ctx, []kernel.StreamAppend{
			{Stream: x, Expected: 0, Events: storetest.Recs("ws", x, 0, 2)},
			{Stream: y, Expected: 0, Events: storetest.Recs("ws", y, 0, 2)},
			{Stream: z, Expected: 0, Events: storetest.Recs("ws", z, 0, 1)},
		})
		done <- outcome{res, err}
	}()
	waitForLockWait(t, s, "")
	second, secondRec := racer(y)
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitForLockWait(t, s, "/* racing */")
	if err := second.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if !errors.Is(o.res[0].Err, kernel.ErrConcurrency) || !errors.Is(o.res[1].Err, kernel.ErrConcurrency) || o.res[2].Err != nil {
		t.Fatalf("got %v, %v, %v; want ErrConcurrency for the raced streams and nil for the other", o.res[0].Err, o.res[1].Err, o.res[2].Err)
	}
	for st, want := range map[string]kernel.Record{x: firstRec, y: secondRec} {
		recs, err := s.ReadStream(ctx, "ws", st)
		if err != nil || len(recs) != 1 || recs[0].ID != want.ID {
			t.Fatalf("a raced stream holds %d events (%v), want its racer's only", len(recs), err)
		}
	}
	if recs, err := s.ReadStream(ctx, "ws", z); err != nil || len(recs) != 1 {
		t.Fatalf("the other stream holds %d events (%v), want 1", len(recs), err)
	}
}

// waitForLockWait waits until a backend of the store's database waits on
// a lock, running a statement that contains text.
func waitForLockWait(t *testing.T, s *Store, text string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var n int
		if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND strpos(query, $1) > 0`, text).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
	}
	t.Fatal("no backend waited on the racing transaction")
}

// TestGroupCommit sends appends from many callers at once: they share
// transactions (fewer transaction ids than appends), and each caller is
// answered only once its append is committed and readable from another
// connection.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	// Hold the committers back until every append is queued (a lock that
	// stops inserts into the log), so that they meet in groups whatever
	// the machine's speed.
	block, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := block.Exec(ctx, `LOCK TABLE events IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	const n = 64
	streams := make([]string, n)
	positions := make([]kernel.Position, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		streams[i] = contact.NewID().Stream()
		wg.Go(func() { positions[i], errs[i] = s.Append(ctx, streams[i], 0, storetest.Recs("ws", streams[i], 0, 1)) })
	}
	waitForLockWait(t, s, "")
	time.Sleep(100 * time.Millisecond)
	if err := block.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	other, err := pgx.Connect(ctx, s.pool.Config().ConnConfig.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	txs := map[uint64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("append %d: %v", i, errs[i])
		}
		txs[positions[i].Commit] = true
		var c int
		if err := other.QueryRow(ctx, `SELECT count(*) FROM events WHERE stream = $1`, streams[i]).Scan(&c); err != nil || c != 1 {
			t.Fatalf("append %d was acknowledged but another connection reads %d events (%v)", i, c, err)
		}
	}
	// Each committer's first group waited on the lock; everything queued
	// meanwhile went in the groups after.
	if len(txs) > 2*committers {
		t.Fatalf("%d appends took %d transactions, want at most %d: no group commit", n, len(txs), 2*committers)
	}
	t.Logf("%d appends committed in %d transactions", n, len(txs))
}
