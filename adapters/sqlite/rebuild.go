package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/projections"
)

var _ projections.ShadowStore = (*Store)(nil)

// CreateShadow creates the empty table of a rebuild beside the live one.
func (s *Store) CreateShadow(ctx context.Context, view, gen string) error {
	table, err := viewTable(projections.Shadow(view, gen))
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		ddl := viewTableDDL(table)
		if isIdentity(table) {
			var err error
			if ddl, err = identityTableDDL(ctx, tx, table); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, ddl)
		return err
	}, nil)
}

// IndexShadow builds a shadow's secondary indexes, each in a write of its
// own so that the live view's commits get the writer between them.
func (s *Store) IndexShadow(ctx context.Context, view, gen string) error {
	table, err := viewTable(projections.Shadow(view, gen))
	if err != nil {
		return err
	}
	for _, stmt := range tableIndexes(table) {
		start := time.Now()
		err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, stmt)
			return err
		}, nil)
		if err != nil {
			return fmt.Errorf("index %s: %w", table, err)
		}
		// The writer was the index's for this long: commands waited as much.
		s.log.Info("built a rebuild's index", "table", table, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// LoadShadow inserts rows into a shadow, all in one write.
func (s *Store) LoadShadow(ctx context.Context, view, gen string, rows []projections.Row) error {
	table, err := viewTable(projections.Shadow(view, gen))
	if err != nil {
		return err
	}
	args, err := rowsArgs(table, rows)
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return writeRows(ctx, tx, table, args)
	}, nil)
}

// DropShadows drops a view's shadow tables (one generation, or all).
func (s *Store) DropShadows(ctx context.Context, view, gen string) error {
	live, err := viewTable(view)
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ?`, len(live)+1, live+"_")
		if err != nil {
			return err
		}
		var tables []string
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return err
			}
			tables = append(tables, t)
		}
		rows.Close()
		for _, t := range tables {
			suffix := strings.TrimPrefix(t, live+"_")
			g := strings.TrimPrefix(suffix, "old_")
			if gen != "" && g != gen {
				continue
			}
			if _, err := tx.ExecContext(ctx, `DROP TABLE `+t); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM projections WHERE name = ?`, projections.Shadow(view, g)); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}

// SwitchShadow swaps a shadow in for the live table, in one transaction of
// the single writer (which excludes every other write, this process's and
// other processes').
func (s *Store) SwitchShadow(ctx context.Context, view, gen string, catchUp func(ctx context.Context, from, to kernel.Position) (projections.Batch, error)) error {
	live, err := viewTable(view)
	if err != nil {
		return err
	}
	shadowName := projections.Shadow(view, gen)
	shadow, _ := viewTable(shadowName)
	old := live + "_old_" + gen
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		l, err := checkpointTx(ctx, tx, view)
		if err != nil {
			return err
		}
		sh, err := checkpointTx(ctx, tx, shadowName)
		if err != nil {
			return err
		}
		if sh.Less(l) {
			b, err := catchUp(ctx, sh, l)
			if err != nil {
				return err
			}
			b.Projection, b.From, b.To = shadowName, sh, l
			if err := applyBatch(ctx, tx, shadow, b); err != nil {
				return err
			}
			sh = l
		}
		for _, stmt := range tableIndexes(shadow) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("index %s: %w", shadow, err)
			}
		}
		for _, stmt := range []string{`ALTER TABLE ` + live + ` RENAME TO ` + old, `ALTER TABLE ` + shadow + ` RENAME TO ` + live} {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("switch %s: %w", view, err)
			}
		}
		if isIdentity(live) {
			// Legal holds are found by name (INDEXED BY): the index of held
			// rows moves to the new table, where it is small to build.
			for _, stmt := range []string{`DROP INDEX IF EXISTS ` + heldIndex, heldIndexDDL} {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("switch %s: %w", view, err)
				}
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO projections (name, commit_pos, prepare_pos, version, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET commit_pos = excluded.commit_pos, prepare_pos = excluded.prepare_pos,
				version = excluded.version, updated_at = excluded.updated_at`,
			view, sh.Commit, sh.Prepare, projections.Version, micros(nowUTC())); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM projections WHERE name = ?`, shadowName)
		return err
	}, nil)
	if err != nil {
		return err
	}
	// The old table goes in a write of its own: no query reads it any more.
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DROP TABLE IF EXISTS `+old)
		return err
	}, nil)
}

func checkpointTx(ctx context.Context, tx *sql.Tx, name string) (kernel.Position, error) {
	var p kernel.Position
	err := tx.QueryRowContext(ctx, `SELECT commit_pos, prepare_pos FROM projections WHERE name = ?`, name).Scan(&p.Commit, &p.Prepare)
	if errors.Is(err, sql.ErrNoRows) {
		return kernel.Position{}, nil
	}
	return p, err
}

// applyBatch writes a batch's rows to table (its checkpoint is the caller's business).
func applyBatch(ctx context.Context, tx *sql.Tx, table string, b projections.Batch) error {
	args, err := rowsArgs(table, b.Upserts)
	if err != nil {
		return err
	}
	if err := writeRows(ctx, tx, table, args); err != nil {
		return err
	}
	return deleteRows(ctx, tx, table, b.Deletes)
}

// fileLocks are this process's file locks: flock is per open file
// description, so a second lock from this process must be refused here.
var fileLocks sync.Map

// LockRebuild takes exclusive locks on <data-dir>/rebuild-<name>.lock
// without waiting, all or none. The operating system releases them when
// the process dies.
func (s *Store) LockRebuild(ctx context.Context, names ...string) (func(), bool, error) {
	var held []func()
	release := func() {
		for _, f := range held {
			f()
		}
	}
	for _, name := range names {
		f, ok, err := lockFile(filepath.Join(filepath.Dir(s.path), "rebuild-"+name+".lock"))
		if err != nil || !ok {
			release()
			return nil, false, err
		}
		held = append(held, f)
	}
	return release, true, nil
}

// ServeLock is the file in the data directory that `ledger serve` locks.
const ServeLock = "serve.lock"

// LockServing takes the data directory's serve lock without waiting: the
// embedded store is served by one process at a time (commands beside it
// are fine). ok is false when another server holds it. The operating
// system releases it when the process dies.
func LockServing(dataDir string) (release func(), ok bool, err error) {
	return lockFile(filepath.Join(dataDir, ServeLock))
}

// lockFile takes an exclusive flock on path without waiting.
func lockFile(path string) (func(), bool, error) {
	if _, busy := fileLocks.LoadOrStore(path, true); busy {
		return nil, false, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fileLocks.Delete(path)
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		fileLocks.Delete(path)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		fileLocks.Delete(path)
	}, true, nil
}

// Versions returns the code version of each projection's rows.
func (s *Store) Versions(ctx context.Context) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, version FROM projections`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var n string
		var v int
		if err := rows.Scan(&n, &v); err != nil {
			return nil, err
		}
		out[n] = v
	}
	return out, rows.Err()
}

const rebuildColumns = `id, projection, state, phase, reason, workspace, requested_by, events_done, events_total, started_at, updated_at, finished_at, error, cancel_requested`

// SaveRebuild inserts or updates a rebuild's record and returns its cancel flag.
func (s *Store) SaveRebuild(ctx context.Context, j projections.RebuildJob) (bool, error) {
	var cancel bool
	var finished sql.NullInt64
	if !j.FinishedAt.IsZero() {
		finished = sql.NullInt64{Int64: micros(j.FinishedAt), Valid: true}
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO projection_rebuilds (`+rebuildColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
			ON CONFLICT (id) DO UPDATE SET state = excluded.state, phase = excluded.phase, events_done = excluded.events_done,
				events_total = excluded.events_total, updated_at = excluded.updated_at, finished_at = excluded.finished_at, error = excluded.error`,
			j.ID, j.Projection, string(j.State), j.Phase, j.Reason, j.Workspace, j.RequestedBy, j.EventsDone, j.EventsTotal,
			micros(j.StartedAt), micros(j.UpdatedAt), finished, j.Error)
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT cancel_requested FROM projection_rebuilds WHERE id = ?`, j.ID).Scan(&cancel)
	}, nil)
	return cancel, err
}

func scanRebuild(row scanner) (projections.RebuildJob, error) {
	var (
		j                projections.RebuildJob
		state            string
		started, updated int64
		finished         sql.NullInt64
	)
	if err := row.Scan(&j.ID, &j.Projection, &state, &j.Phase, &j.Reason, &j.Workspace, &j.RequestedBy, &j.EventsDone, &j.EventsTotal,
		&started, &updated, &finished, &j.Error, &j.Cancel); err != nil {
		return projections.RebuildJob{}, err
	}
	j.State, j.StartedAt, j.UpdatedAt = projections.RebuildState(state), fromMicros(started), fromMicros(updated)
	if finished.Valid {
		j.FinishedAt = fromMicros(finished.Int64)
	}
	return j, nil
}

// Rebuild returns a rebuild's record.
func (s *Store) Rebuild(ctx context.Context, id string) (projections.RebuildJob, error) {
	j, err := scanRebuild(s.r.QueryRowContext(ctx, `SELECT `+rebuildColumns+` FROM projection_rebuilds WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return projections.RebuildJob{}, kernel.Errorf(kernel.ErrNotFound, "no such rebuild")
	}
	return j, err
}

// Rebuilds returns the most recent rebuilds, newest first.
func (s *Store) Rebuilds(ctx context.Context, limit int) ([]projections.RebuildJob, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+rebuildColumns+` FROM projection_rebuilds ORDER BY started_at DESC, id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []projections.RebuildJob
	for rows.Next() {
		j, err := scanRebuild(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// CancelRebuild asks a running rebuild to stop.
func (s *Store) CancelRebuild(ctx context.Context, id string) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE projection_rebuilds SET cancel_requested = 1 WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return kernel.Errorf(kernel.ErrNotFound, "no such rebuild")
		}
		return nil
	}, nil)
}

var _ projections.FailureStore = (*Store)(nil)

// SetFailed records that a projection fails since the given time.
func (s *Store) SetFailed(ctx context.Context, name string, since time.Time) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO projections (name, commit_pos, prepare_pos, version, updated_at, failed_at) VALUES (?, 0, 0, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET failed_at = COALESCE(projections.failed_at, excluded.failed_at)`,
			name, projections.Version, micros(nowUTC()), micros(since))
		return err
	}, nil)
}

// Failed returns the failing projections and since when.
func (s *Store) Failed(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, failed_at FROM projections WHERE failed_at IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var n string
		var at int64
		if err := rows.Scan(&n, &at); err != nil {
			return nil, err
		}
		out[n] = fromMicros(at)
	}
	return out, rows.Err()
}
