// Package postgres keeps the log, the read models, the projection
// checkpoints and the key vault in PostgreSQL, through pgx. Any number of
// ledger processes can share one database: each serves commands and
// queries, and each projection is run by one of them at a time, under a
// session advisory lock that another process takes over within seconds when
// its holder dies.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"sync"

	"github.com/contactledger/ledger/internal/logtail"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the PostgreSQL store. Open it with Open; Close it when done.
type Store struct {
	pool    *pgxpool.Pool
	batches *pgxpool.Pool // connections for statements of batches (see Open)
	log     *slog.Logger

	tail *logtail.Tail // the subscriptions' shared reads of the log

	notifyCh chan struct{}
	closed   chan struct{}
	wg       sync.WaitGroup

	compactMu    sync.Mutex
	compacting   bool
	compactAgain bool

	group groupQueue // appends waiting for group commit (batch.go)
}

// Open connects to the database at url and applies the migrations, under an
// advisory lock so that replicas starting together don't race.
func Open(ctx context.Context, url string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	if cfg.MaxConns < 16 {
		cfg.MaxConns = 16
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "contact-ledger"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	// Statements of batches (appends, projection commits) get connections
	// of their own that always use a statement's generic plan: with a
	// batch's arrays as parameters, PostgreSQL found each custom plan
	// cheaper than the generic one and planned the statement afresh every
	// time (0.3 ms, more than it took to run).
	acfg := cfg.Copy()
	acfg.MaxConns = 8
	acfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	batches, err := pgxpool.NewWithConfig(ctx, acfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	s := &Store{pool: pool, batches: batches, log: log, notifyCh: make(chan struct{}, 1), closed: make(chan struct{})}
	s.tail = &logtail.Tail{Read: s.ReadAll, Poll: idlePoll, Closed: s.closed}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		batches.Close()
		return nil, err
	}
	if err := s.EnsureViews(ctx); err != nil {
		pool.Close()
		batches.Close()
		return nil, err
	}
	s.wg.Go(s.notifier)
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	// Migrations are numbered in ranges per piece of work and may land in
	// any order: a database may have 20 and then get 12 or 30.
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithSessionLocker(locker), goose.WithAllowOutofOrder(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Pool returns the connection pool (for maintenance commands and tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close stops the background work and closes the pool.
func (s *Store) Close() error {
	select {
	case <-s.closed:
		return nil
	default:
	}
	s.stopCommitters()
	close(s.closed)
	s.wg.Wait()
	s.batches.Close()
	s.pool.Close()
	return nil
}

func isUnique(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23505"
}

// isDeadlock reports a transaction PostgreSQL aborted to break a deadlock.
func isDeadlock(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "40P01"
}

// inTx runs fn in a transaction.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

func u64(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) }
