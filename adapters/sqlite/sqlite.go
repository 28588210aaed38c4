// Package sqlite is the embedded store: the log, the read models, the
// projection checkpoints and the key vault in one SQLite file in the data
// directory, with no server to run and no cgo (modernc.org/sqlite).
//
// Every write goes through one writer goroutine that commits whatever is
// queued in one transaction (group commit): each caller's work runs in its
// own savepoint, so one failure never spoils the others, and one fsync
// acknowledges them all. Durability is never traded for speed:
// synchronous=FULL, so an acknowledged write is on disk.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/contactledger/ledger/internal/logtail"
	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// FileName is the name of the database file in the data directory.
const FileName = "ledger.db"

// Store is the embedded store. Open it with Open; Close it when done.
type Store struct {
	path string
	w    *sql.DB // the one connection that writes
	r    *sql.DB // readers; WAL lets them run beside the writer
	log  *slog.Logger

	ops    chan *op
	closed chan struct{}
	done   chan struct{}
	once   sync.Once

	tail *logtail.Tail // the subscriptions' shared reads of the log

	compactMu    sync.Mutex
	compacting   bool
	compactAgain bool
	background   sync.WaitGroup
}

type op struct {
	ctx   context.Context
	fn    func(ctx context.Context, tx *sql.Tx) error
	raw   func(ctx context.Context, db *sql.DB) error // runs outside a transaction
	after func()                                      // runs once the op is committed
	done  chan error
}

// maxGroup bounds how many writes share one transaction.
const maxGroup = 256

// Open opens (creating if needed) the store in dataDir and applies its migrations.
func Open(ctx context.Context, dataDir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dataDir, FileName)
	// Create the file ourselves so that it, and the WAL SQLite creates
	// beside it with the same mode, are readable by the owner only.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	f.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, err
	}
	dsn := func(extra ...string) string {
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(FULL)")
		q.Add("_pragma", "foreign_keys(ON)")
		// Deleted content is overwritten with zeros, so erased rows don't linger in free space.
		q.Add("_pragma", "secure_delete(ON)")
		for _, e := range extra {
			q.Add("_pragma", e)
		}
		q.Set("_txlock", "immediate")
		return "file:" + path + "?" + q.Encode()
	}
	w, err := sql.Open(driverName, dsn())
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open(driverName, dsn("query_only(1)"))
	if err != nil {
		w.Close()
		return nil, err
	}
	// Keep every reader open: a new SQLite connection parses the whole
	// schema on its first statement, which cost a quarter of the server's
	// CPU under load when the default two idle connections were kept.
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	r.SetConnMaxIdleTime(0)
	s := &Store{path: path, w: w, r: r, log: log, ops: make(chan *op, maxGroup), closed: make(chan struct{}), done: make(chan struct{})}
	s.tail = &logtail.Tail{Read: s.ReadAll, Poll: pollInterval, Closed: s.closed}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	go s.writer()
	if err := s.EnsureViews(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	// Migrations are numbered in ranges per piece of work and may land in
	// any order: a database may have 20 and then get 12 or 30.
	p, err := goose.NewProvider(goose.DialectSQLite3, s.w, sub, goose.WithAllowOutofOrder(true), goose.WithGoMigrations(goMigrations()...))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", s.path, err)
	}
	return nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close stops the writer after the queued writes and closes the database.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.closed) })
	<-s.done
	s.background.Wait()
	return errors.Join(s.w.Close(), s.r.Close())
}

var errClosed = errors.New("store is closed")

// write runs fn in a transaction of the writer, possibly shared with other
// writes (each in its own savepoint), and returns once it is committed.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error, after func()) error {
	o := &op{ctx: ctx, fn: fn, after: after, done: make(chan error, 1)}
	return s.submit(ctx, o)
}

// exec runs fn on the write connection outside any transaction.
func (s *Store) exec(ctx context.Context, fn func(ctx context.Context, db *sql.DB) error) error {
	o := &op{ctx: ctx, raw: fn, done: make(chan error, 1)}
	return s.submit(ctx, o)
}

func (s *Store) submit(ctx context.Context, o *op) error {
	select {
	case <-s.closed:
		return errClosed
	default:
	}
	select {
	case s.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closed:
		return errClosed
	}
	// Once queued, the write happens: wait for its outcome even if ctx ends,
	// so the caller never reports a failure for a committed write.
	return <-o.done
}

func (s *Store) writer() {
	defer close(s.done)
	for {
		var first *op
		select {
		case first = <-s.ops:
		case <-s.closed:
			// Drain what was queued before Close.
			for {
				select {
				case o := <-s.ops:
					s.run([]*op{o})
				default:
					return
				}
			}
		}
		group := []*op{first}
	drain:
		for len(group) < maxGroup && first.raw == nil {
			select {
			case o := <-s.ops:
				if o.raw != nil {
					s.run(group)
					group = []*op{o}
					break drain
				}
				group = append(group, o)
			default:
				break drain
			}
		}
		s.run(group)
	}
}

// run executes a group of ops in one transaction (or a raw op on its own).
func (s *Store) run(group []*op) {
	if len(group) == 1 && group[0].raw != nil {
		o := group[0]
		o.done <- o.raw(o.ctx, s.w)
		return
	}
	ctx := context.Background()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		for _, o := range group {
			o.done <- fmt.Errorf("begin: %w", err)
		}
		return
	}
	errs := make([]error, len(group))
	for i, o := range group {
		if err := o.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT op"); err != nil {
			errs[i] = err
			continue
		}
		if errs[i] = o.fn(o.ctx, tx); errs[i] != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO op"); err != nil {
				s.log.Error("rollback to savepoint failed", "err", err)
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE op"); err != nil && errs[i] == nil {
			errs[i] = err
		}
	}
	if err := tx.Commit(); err != nil {
		for _, o := range group {
			o.done <- fmt.Errorf("commit: %w", err)
		}
		return
	}
	for i, o := range group {
		if errs[i] == nil && o.after != nil {
			o.after()
		}
		o.done <- errs[i]
	}
}

// Compact reaches SQLite's own copies of deleted bytes: deleted rows are
// already zeroed (secure_delete), and a checkpoint moves every page out of
// the WAL into the database file and truncates the WAL to zero bytes. It
// returns at once and checkpoints in the background, one run at a time: a
// burst of erasures (every projection calls it after each batch that
// erased) costs one more run, not one each, and the writer is not held up.
func (s *Store) Compact(ctx context.Context) error {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	if s.compacting {
		s.compactAgain = true
		return nil
	}
	s.compacting = true
	s.background.Go(func() {
		for {
			if err := s.truncateWAL(context.Background()); err != nil && !errors.Is(err, errClosed) {
				s.log.Warn("checkpointing the WAL after an erasure failed", "err", err)
			}
			s.compactMu.Lock()
			if !s.compactAgain {
				s.compacting = false
				s.compactMu.Unlock()
				return
			}
			s.compactAgain = false
			s.compactMu.Unlock()
		}
	})
	return nil
}

// truncateWAL checkpoints the WAL into the database file and truncates it.
func (s *Store) truncateWAL(ctx context.Context) error {
	return s.exec(ctx, func(ctx context.Context, db *sql.DB) error {
		for attempt := 0; ; attempt++ {
			var busy, logFrames, done int
			if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil {
				return fmt.Errorf("wal checkpoint: %w", err)
			}
			if busy == 0 {
				return nil
			}
			if attempt == 50 {
				return fmt.Errorf("wal checkpoint: readers kept the WAL busy")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func micros(t time.Time) int64 { return t.UTC().UnixMicro() }

func nowUTC() time.Time { return time.Now().UTC() }

func fromMicros(n int64) time.Time { return time.UnixMicro(n).UTC() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.r.PingContext(ctx) }

// Vacuum rebuilds the database file (VACUUM), so no freed page keeps old
// bytes, and truncates the WAL. full is accepted for symmetry with
// PostgreSQL; SQLite's VACUUM always rewrites the file.
func (s *Store) Vacuum(ctx context.Context, full bool) error {
	err := s.exec(ctx, func(ctx context.Context, db *sql.DB) error {
		_, err := db.ExecContext(ctx, "VACUUM")
		return err
	})
	if err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	return s.truncateWAL(ctx)
}

// Backup writes a consistent snapshot of the whole database to path (which
// must not exist) while the store keeps serving: SQLite's VACUUM INTO reads
// one transaction's view of the database and writes it compacted, so the
// copy holds no freed page of erased data. The file is made 0600.
func (s *Store) Backup(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("backup: %s exists", path)
	}
	// A connection of its own: the readers are query-only, and the single
	// writer must not wait for the copy.
	db, err := sql.Open(driverName, "file:"+s.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return os.Chmod(path, 0o600)
}
