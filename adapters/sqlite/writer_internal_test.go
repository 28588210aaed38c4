package sqlite

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// TestAnOpOutlivesItsCallersContext puts an op whose caller gives up while
// it runs in one group with another op: the op runs to its end, and the
// other commits. (An interrupted statement made SQLite roll back the whole
// transaction, the other op's write with it.)
func TestAnOpOutlivesItsCallersContext(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	exec := func(ctx context.Context, q string) func(context.Context, *sql.Tx) error {
		return func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, q)
			return err
		}
	}
	if err := s.write(ctx, exec(ctx, `CREATE TABLE scratch (x INTEGER)`), nil); err != nil {
		t.Fatal(err)
	}
	// Hold the writer until both ops are queued, so they share a group.
	hold, held := make(chan struct{}), make(chan struct{})
	go s.write(ctx, func(context.Context, *sql.Tx) error { close(held); <-hold; return nil }, nil)
	<-held
	giveUp, cancel := context.WithCancel(ctx)
	long := make(chan error, 1)
	go func() {
		long <- s.write(giveUp, func(ctx context.Context, tx *sql.Tx) error {
			time.AfterFunc(20*time.Millisecond, cancel)
			_, err := tx.ExecContext(ctx, `INSERT INTO scratch WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) SELECT x FROM c`)
			return err
		}, nil)
	}()
	short := make(chan error, 1)
	time.Sleep(10 * time.Millisecond)
	go func() { short <- s.write(ctx, exec(ctx, `INSERT INTO scratch VALUES (-1)`), nil) }()
	time.Sleep(10 * time.Millisecond)
	close(hold)
	if err := <-long; err != nil {
		t.Fatalf("the op whose caller gave up: %v", err)
	}
	if err := <-short; err != nil {
		t.Fatalf("the op beside it: %v", err)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM scratch WHERE x = -1`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the other op's row: %d, %v", n, err)
	}
}
