package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/projections"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

var _ projections.ShadowStore = (*Store)(nil)

// CreateShadow creates the empty table of a rebuild beside the live one.
func (s *Store) CreateShadow(ctx context.Context, view, gen string) error {
	table, err := viewTable(projections.Shadow(view, gen))
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, tableDDL(table))
	return err
}

// IndexShadow builds a shadow's secondary indexes. Nothing but the rebuild
// touches the shadow, so the live view goes on meanwhile; the larger
// maintenance_work_mem lets each index sort in memory.
func (s *Store) IndexShadow(ctx context.Context, view, gen string) error {
	table, err := viewTable(projections.Shadow(view, gen))
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL maintenance_work_mem = '256MB'`); err != nil {
			return err
		}
		for _, stmt := range tableIndexes(table) {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("index %s: %w", table, err)
			}
		}
		return nil
	})
}

var (
	shadowColumns = []string{"workspace", "id", "sort_at", "created_at", "version", "pos_commit", "pos_prepare",
		"name", "email", "phone", "phone_norm", "email_bidx", "phone_bidx", "source", "tags", "trashed_at", "trashed_by", "doc", "trashed_op"}
	identityColumns = []string{"workspace", "id", "state", "spam", "email_bidx", "phone_bidx", "ext_bidx", "sort_at", "version",
		"pos_commit", "pos_prepare", "doc", "hold_id"}
)

func numeric(n uint64) pgtype.Numeric {
	return pgtype.Numeric{Int: new(big.Int).SetUint64(n), Valid: true}
}

// LoadShadow copies rows into a shadow with COPY.
func (s *Store) LoadShadow(ctx context.Context, view, gen string, rows []projections.Row) error {
	table, err := viewTable(projections.Shadow(view, gen))
	if err != nil {
		return err
	}
	data := make([][]any, 0, len(rows))
	columns := shadowColumns
	if isIdentity(table) {
		columns = identityColumns
	}
	for _, r := range rows {
		doc, err := json.Marshal(r.Contact)
		if err != nil {
			return err
		}
		if isIdentity(table) {
			data = append(data, []any{r.Contact.Workspace, r.Contact.ID.String(), string(r.Contact.State), r.Contact.Spam, r.EmailIndex,
				r.PhoneIndex, r.ExtIndex, r.SortAt, int64(r.Contact.Version), numeric(r.Position.Commit), numeric(r.Position.Prepare), doc, holdID(r.Contact)})
			continue
		}
		var trashedBy *string
		if r.Contact.TrashedBy != nil {
			trashedBy = &r.Contact.TrashedBy.Principal
		}
		tags := tagColumn(r)
		p := r.Contact.Personal
		data = append(data, []any{r.Contact.Workspace, r.Contact.ID.String(), r.SortAt, r.Contact.CreatedAt, int64(r.Contact.Version),
			numeric(r.Position.Commit), numeric(r.Position.Prepare), p.Name, p.Email, p.Phone, contact.NormalizePhone(p.Phone),
			r.EmailIndex, r.PhoneIndex, r.Contact.Source, tags, r.Contact.TrashedAt, trashedBy, doc, r.Contact.TrashedOperation})
	}
	_, err = s.pool.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromRows(data))
	if err != nil {
		return fmt.Errorf("copy into %s: %w", table, err)
	}
	return nil
}

// DropShadows drops a view's shadow tables (one generation, or all).
func (s *Store) DropShadows(ctx context.Context, view, gen string) error {
	live, err := viewTable(view)
	if err != nil {
		return err
	}
	rows, err := s.pool.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, $1)`, live+"_")
	if err != nil {
		return err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, t := range tables {
		g := strings.TrimPrefix(strings.TrimPrefix(t, live+"_"), "old_")
		if gen != "" && g != gen {
			continue
		}
		if _, err := s.pool.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{t}.Sanitize()); err != nil {
			return err
		}
		if _, err := s.pool.Exec(ctx, `DELETE FROM projections WHERE name = $1`, projections.Shadow(view, g)); err != nil {
			return err
		}
	}
	return nil
}

func checkpointTx(ctx context.Context, tx pgx.Tx, name string, lock bool) (kernel.Position, error) {
	q := `SELECT commit_pos::text, prepare_pos::text FROM projections WHERE name = $1`
	if lock {
		q += ` FOR UPDATE`
	}
	var c, p string
	err := tx.QueryRow(ctx, q, name).Scan(&c, &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return kernel.Position{}, nil
	}
	if err != nil {
		return kernel.Position{}, err
	}
	return parsePos(c, p)
}

// SwitchShadow swaps a shadow in for the live table in one transaction,
// with the view's checkpoint row locked so that the live projection cannot
// commit in between. Queries that arrive meanwhile wait on the rename's
// lock for the few milliseconds it takes, then read the new table.
func (s *Store) SwitchShadow(ctx context.Context, view, gen string, catchUp func(ctx context.Context, from, to kernel.Position) (projections.Batch, error)) error {
	live, err := viewTable(view)
	if err != nil {
		return err
	}
	shadowName := projections.Shadow(view, gen)
	shadow, _ := viewTable(shadowName)
	old := live + "_old_" + gen
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
			return err
		}
		// The live table first: a projection's commit is one statement
		// that locks its table as it starts and the checkpoint's row as it
		// runs, so the switch takes them in that order too (else each could
		// hold what the other waits for). EXCLUSIVE lets queries read on.
		if _, err := tx.Exec(ctx, `LOCK TABLE `+live+` IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO projections (name, commit_pos, prepare_pos, version, updated_at) VALUES ($1, 0, 0, $2, now())
			ON CONFLICT (name) DO NOTHING`, view, projections.Version); err != nil {
			return err
		}
		l, err := checkpointTx(ctx, tx, view, true)
		if err != nil {
			return err
		}
		sh, err := checkpointTx(ctx, tx, shadowName, false)
		if err != nil {
			return err
		}
		if sh.Less(l) {
			b, err := catchUp(ctx, sh, l)
			if err != nil {
				return err
			}
			var q statement
			if err := upsertRows(&q, shadow, b.Upserts, "true"); err != nil {
				return err
			}
			deleteRefs(&q, shadow, "id", b.Deletes, "true")
			if len(q.ctes) > 0 {
				if _, err := tx.Exec(ctx, q.sql("SELECT 1"), q.args...); err != nil {
					return err
				}
			}
			sh = l
		}
		for _, stmt := range tableIndexes(shadow) {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("index %s: %w", shadow, err)
			}
		}
		for _, stmt := range []string{`ALTER TABLE ` + live + ` RENAME TO ` + old, `ALTER TABLE ` + shadow + ` RENAME TO ` + live} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("switch %s: %w", view, err)
			}
		}
		c, p := posArgs(sh)
		if _, err := tx.Exec(ctx, `UPDATE projections SET commit_pos = $2::numeric, prepare_pos = $3::numeric, version = $4, updated_at = now() WHERE name = $1`,
			view, c, p, projections.Version); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM projections WHERE name = $1`, shadowName)
		return err
	})
	var pg *pgconn.PgError
	if errors.As(err, &pg) && (pg.Code == "55P03" || pg.Code == "40P01") { // lock_not_available (a long query held the table), deadlock_detected
		return kernel.Errorf(kernel.ErrConcurrency, "the view's table was busy; switch again")
	}
	if err != nil {
		return err
	}
	// Queries that started before the switch may still read the old table:
	// DROP waits for them.
	_, err = s.pool.Exec(ctx, `DROP TABLE IF EXISTS `+old)
	return err
}

// LockRebuild takes session advisory locks, all or none, on one connection
// of their own, without waiting. PostgreSQL drops them with the session
// when the process dies.
func (s *Store) LockRebuild(ctx context.Context, names ...string) (func(), bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, err
	}
	var held []string
	unlock := func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, key := range held {
			if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key); err != nil {
				conn.Conn().Close(uctx)
				break
			}
		}
		conn.Release()
	}
	for _, name := range names {
		key := "ledger.rebuild." + name
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, key).Scan(&got); err != nil || !got {
			unlock()
			return nil, false, err
		}
		held = append(held, key)
	}
	return unlock, true, nil
}

// Versions returns the code version of each projection's rows.
func (s *Store) Versions(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, version FROM projections`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var n string
		var v int32
		if err := rows.Scan(&n, &v); err != nil {
			return nil, err
		}
		out[n] = int(v)
	}
	return out, rows.Err()
}

const rebuildColumns = `id, projection, state, phase, reason, workspace, requested_by, events_done, events_total, started_at, updated_at, finished_at, error, cancel_requested`

// SaveRebuild inserts or updates a rebuild's record and returns its cancel flag.
func (s *Store) SaveRebuild(ctx context.Context, j projections.RebuildJob) (bool, error) {
	var finished *time.Time
	if !j.FinishedAt.IsZero() {
		finished = &j.FinishedAt
	}
	var cancel bool
	err := s.pool.QueryRow(ctx, `INSERT INTO projection_rebuilds (`+rebuildColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, false)
		ON CONFLICT (id) DO UPDATE SET state = excluded.state, phase = excluded.phase, events_done = excluded.events_done,
			events_total = excluded.events_total, updated_at = excluded.updated_at, finished_at = excluded.finished_at, error = excluded.error
		RETURNING cancel_requested`,
		j.ID, j.Projection, string(j.State), j.Phase, j.Reason, j.Workspace, j.RequestedBy, j.EventsDone, j.EventsTotal, j.StartedAt, j.UpdatedAt, finished, j.Error).Scan(&cancel)
	return cancel, err
}

func scanRebuild(row pgx.Row) (projections.RebuildJob, error) {
	var (
		j        projections.RebuildJob
		state    string
		finished *time.Time
	)
	if err := row.Scan(&j.ID, &j.Projection, &state, &j.Phase, &j.Reason, &j.Workspace, &j.RequestedBy, &j.EventsDone, &j.EventsTotal,
		&j.StartedAt, &j.UpdatedAt, &finished, &j.Error, &j.Cancel); err != nil {
		return projections.RebuildJob{}, err
	}
	j.State, j.StartedAt, j.UpdatedAt = projections.RebuildState(state), j.StartedAt.UTC(), j.UpdatedAt.UTC()
	if finished != nil {
		j.FinishedAt = finished.UTC()
	}
	return j, nil
}

// Rebuild returns a rebuild's record.
func (s *Store) Rebuild(ctx context.Context, id string) (projections.RebuildJob, error) {
	j, err := scanRebuild(s.pool.QueryRow(ctx, `SELECT `+rebuildColumns+` FROM projection_rebuilds WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return projections.RebuildJob{}, kernel.Errorf(kernel.ErrNotFound, "no such rebuild")
	}
	return j, err
}

// Rebuilds returns the most recent rebuilds, newest first.
func (s *Store) Rebuilds(ctx context.Context, limit int) ([]projections.RebuildJob, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+rebuildColumns+` FROM projection_rebuilds ORDER BY started_at DESC, id DESC LIMIT $1`, limit)
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
	tag, err := s.pool.Exec(ctx, `UPDATE projection_rebuilds SET cancel_requested = true WHERE id = $1`, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return kernel.Errorf(kernel.ErrNotFound, "no such rebuild")
	}
	return nil
}

var _ projections.FailureStore = (*Store)(nil)

// SetFailed records that a projection fails since the given time.
func (s *Store) SetFailed(ctx context.Context, name string, since time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO projections (name, commit_pos, prepare_pos, version, updated_at, failed_at) VALUES ($1, 0, 0, $2, now(), $3)
		ON CONFLICT (name) DO UPDATE SET failed_at = COALESCE(projections.failed_at, excluded.failed_at)`, name, projections.Version, since)
	return err
}

// Failed returns the failing projections and since when.
func (s *Store) Failed(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, failed_at FROM projections WHERE failed_at IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var n string
		var at time.Time
		if err := rows.Scan(&n, &at); err != nil {
			return nil, err
		}
		out[n] = at.UTC()
	}
	return out, rows.Err()
}
