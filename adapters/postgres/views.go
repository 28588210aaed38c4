package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
	"github.com/jackc/pgx/v5"
)

var (
	_ projections.Store     = (*Store)(nil)
	_ ledger.ReadModels     = (*Store)(nil)
	_ ledger.Identities     = (*Store)(nil)
	_ projections.Compacter = (*Store)(nil)
)

// identityTable is the table of the identities projection.
const identityTable = "contact_identities"

// viewTable returns the table of a view projection (or of the identity
// index), refusing unknown names (table names cannot be bound as parameters).
func viewTable(name string) (string, error) {
	if name == projections.Identities {
		return identityTable, nil
	}
	if view, gen, ok := projections.ParseShadow(name); ok {
		if _, known := ledger.Views[view]; known {
			return "rm_" + view + "_" + gen, nil
		}
		if view == projections.Identities {
			return identityTable + "_" + gen, nil
		}
	}
	if _, ok := ledger.Views[name]; !ok {
		return "", fmt.Errorf("unknown view %q", name)
	}
	return "rm_" + name, nil
}

// isIdentity reports whether table is the identity index's (live or a rebuild's).
func isIdentity(table string) bool {
	return table == identityTable || strings.HasPrefix(table, identityTable+"_")
}

// tableDDL creates a projection's table with its primary key only: a
// view's, or the identity index's.
func tableDDL(table string) string {
	if isIdentity(table) {
		return identityTableDDL(table)
	}
	return viewTableDDL(table)
}

// tableIndexes creates a projection's secondary indexes, one statement each.
func tableIndexes(table string) []string {
	if isIdentity(table) {
		return identityIndexes(table)
	}
	return viewIndexes(table)
}

// identityTableDDL creates a table shaped as the live identity index
// (migrations 00003 and 00004), with its primary key only.
func identityTableDDL(table string) string {
	return `CREATE TABLE ` + table + ` (LIKE ` + identityTable + ` INCLUDING DEFAULTS, PRIMARY KEY (workspace, id));
	` + noStatistics(table, "doc", "email_bidx", "phone_bidx", "ext_bidx")
}

// identityIndexes creates the identity index's lookups: the live table's
// are the names migration 00003 gave them, a rebuild's carry its table's
// name, kept when the switch renames the table.
func identityIndexes(table string) []string {
	return []string{
		`CREATE INDEX IF NOT EXISTS ` + table + `_ext ON ` + table + ` (workspace, ext_bidx)`,
		`CREATE INDEX IF NOT EXISTS ` + table + `_email ON ` + table + ` (workspace, email_bidx)`,
		`CREATE INDEX IF NOT EXISTS ` + table + `_phone ON ` + table + ` (workspace, phone_bidx)`,
		// The contacts under legal hold (migration 00050).
		`CREATE INDEX IF NOT EXISTS ` + table + `_held ON ` + table + ` (workspace, id) WHERE hold_id <> ''`,
	}
}

// viewDDL creates the table of one view. Its indexes are named after the
// table it is created as: a rebuilt table keeps its indexes' names when it
// is renamed to the live name, so names never collide. The blind-index
// lookups' indexes carry the view's order too: with no statistics on those
// columns (see noStatistics) the planner would otherwise walk the order
// index and filter (migration 00012).
func viewDDL(table string) string {
	return viewTableDDL(table) + "\n" + strings.Join(viewIndexes(table), ";\n") + ";"
}

// viewTableDDL creates a view's table with its primary key only: a
// rebuild copies into it bare and builds the other indexes after
// (viewIndexes), which sorts once instead of growing them row by row.
func viewTableDDL(table string) string {
	return `CREATE TABLE ` + table + ` (
		workspace   text        NOT NULL,
		id          text        NOT NULL,
		sort_at     timestamptz NOT NULL,
		created_at  timestamptz NOT NULL,
		version     bigint      NOT NULL,
		pos_commit  numeric(20) NOT NULL,
		pos_prepare numeric(20) NOT NULL,
		name        text        NOT NULL,
		email       text        NOT NULL,
		phone       text        NOT NULL,
		phone_norm  text        NOT NULL,
		email_bidx  text        NOT NULL,
		phone_bidx  text        NOT NULL,
		source      text        NOT NULL,
		tags        text[]      NOT NULL,
		trashed_at  timestamptz,
		trashed_by  text,
		doc         jsonb       NOT NULL,
		trashed_op  text        NOT NULL DEFAULT '',
		PRIMARY KEY (workspace, id)
	);
	` + noStatistics(table, "name", "email", "phone", "phone_norm", "email_bidx", "phone_bidx", "tags", "doc")
}

// viewIndexes creates a view's secondary indexes, one statement each,
// when they are missing.
func viewIndexes(table string) []string {
	return []string{
		`CREATE INDEX IF NOT EXISTS ` + table + `_order ON ` + table + ` (workspace, sort_at DESC, id DESC)`,
		`CREATE INDEX IF NOT EXISTS ` + table + `_email ON ` + table + ` (workspace, email_bidx, sort_at DESC, id DESC) WHERE email_bidx <> ''`,
		`CREATE INDEX IF NOT EXISTS ` + table + `_phone ON ` + table + ` (workspace, phone_bidx, sort_at DESC, id DESC) WHERE phone_bidx <> ''`,
		`CREATE INDEX IF NOT EXISTS ` + table + `_trashed ON ` + table + ` (workspace, trashed_at) WHERE trashed_at IS NOT NULL`,
		`CREATE INDEX IF NOT EXISTS ` + table + `_tags ON ` + table + ` USING gin (tags)`,
		// Only the trash view has operations: what a restore job by operation reads.
		`CREATE INDEX IF NOT EXISTS ` + table + `_op ON ` + table + ` (workspace, trashed_op) WHERE trashed_op <> ''`,
	}
}

// noStatistics keeps ANALYZE from sampling the given columns of table:
// pg_statistic would keep copies of their values (names, emails) that no
// erasure reaches (see migration 00004).
func noStatistics(table string, columns ...string) string {
	set := make([]string, len(columns))
	for i, c := range columns {
		set[i] = "ALTER COLUMN " + c + " SET STATISTICS 0"
	}
	return "ALTER TABLE " + table + " " + strings.Join(set, ", ") + ";"
}

// EnsureViews creates the tables of the views that don't exist yet, under a
// lock so that replicas starting together don't race.
func (s *Store) EnsureViews(ctx context.Context) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('ledger.views'))`); err != nil {
			return err
		}
		for _, n := range ledger.ViewNames {
			t, _ := viewTable(n)
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t).Scan(&exists); err != nil {
				return err
			}
			if exists {
				continue
			}
			if _, err := tx.Exec(ctx, viewDDL(t)); err != nil {
				return fmt.Errorf("create %s: %w", t, err)
			}
		}
		return nil
	})
}

func parsePos(c, p string) (kernel.Position, error) {
	commit, err := u64(c)
	if err != nil {
		return kernel.Position{}, err
	}
	prepare, err := u64(p)
	if err != nil {
		return kernel.Position{}, err
	}
	return kernel.Position{Commit: commit, Prepare: prepare}, nil
}

func posArgs(p kernel.Position) (string, string) {
	return strconv.FormatUint(p.Commit, 10), strconv.FormatUint(p.Prepare, 10)
}

// Checkpoint returns how far a projection has applied the log.
func (s *Store) Checkpoint(ctx context.Context, projection string) (kernel.Position, error) {
	var c, p string
	err := s.pool.QueryRow(ctx, `SELECT commit_pos::text, prepare_pos::text FROM projections WHERE name = $1`, projection).Scan(&c, &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return kernel.Position{}, nil
	}
	if err != nil {
		return kernel.Position{}, err
	}
	return parsePos(c, p)
}

// Rows returns the current rows of refs in a view.
func (s *Store) Rows(ctx context.Context, projection string, refs []projections.Ref) (map[contact.ID]projections.Row, error) {
	table, err := viewTable(projection)
	if err != nil {
		return nil, err
	}
	byWS := map[string][]string{}
	for _, r := range refs {
		byWS[r.Workspace] = append(byWS[r.Workspace], r.ID.String())
	}
	out := map[contact.ID]projections.Row{}
	for ws, ids := range byWS {
		ext, tags := "''", "tags"
		if isIdentity(table) {
			ext, tags = "ext_bidx", "'{}'::text[]"
		}
		rows, err := s.pool.Query(ctx, `SELECT doc, sort_at, email_bidx, phone_bidx, `+ext+`, `+tags+`, pos_commit::text, pos_prepare::text FROM `+table+`
			WHERE workspace = $1 AND id = ANY($2)`, ws, ids)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var (
				row  projections.Row
				doc  []byte
				c, p string
			)
			if err := rows.Scan(&doc, &row.SortAt, &row.EmailIndex, &row.PhoneIndex, &row.ExtIndex, &row.TagIndexes, &c, &p); err != nil {
				rows.Close()
				return nil, err
			}
			if err := json.Unmarshal(doc, &row.Contact); err != nil {
				rows.Close()
				return nil, fmt.Errorf("row of %s: %w", projection, err)
			}
			if row.Position, err = parsePos(c, p); err != nil {
				rows.Close()
				return nil, err
			}
			row.SortAt = row.SortAt.UTC()
			if len(row.TagIndexes) == 0 {
				row.TagIndexes = nil
			}
			out[row.Contact.ID] = row
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Commit writes a projection batch and moves its checkpoint, atomically,
// in one statement (one round trip and one commit): the checkpoint moves
// only from b.From, and the batch's writes happen only if it did, so a
// second runner can never apply a batch twice, even if two processes
// believed they held the projection.
func (s *Store) Commit(ctx context.Context, b projections.Batch) error {
	var table string
	if b.Projection != projections.Erasure {
		var err error
		if table, err = viewTable(b.Projection); err != nil {
			return err
		}
	}
	var q statement
	fc, fp := posArgs(b.From)
	tc, tp := posArgs(b.To)
	// cp is the checkpoint's move; every write below happens only with it.
	q.with("cp", `UPDATE projections SET commit_pos = `+q.arg(tc)+`::numeric, prepare_pos = `+q.arg(tp)+`::numeric, updated_at = now(), failed_at = NULL
		WHERE name = `+q.arg(b.Projection)+` AND commit_pos = `+q.arg(fc)+`::numeric AND prepare_pos = `+q.arg(fp)+`::numeric RETURNING 1`)
	moved := `EXISTS (SELECT 1 FROM cp)`
	if err := upsertRows(&q, table, b.Upserts, moved); err != nil {
		return err
	}
	deleteRefs(&q, table, "id", b.Deletes, moved)
	deleteRefs(&q, "data_keys", "owner", b.DestroyKeys, moved)
	// Their claims are blind indexes of their email and phone: they go too.
	deleteRefs(&q, "identity_claims", "contact_id", b.DestroyKeys, moved)
	// Stored answers about the contact hold its personal data: keep ids only.
	eraseAnswers(&q, b.DestroyKeys, b.Tombstones, moved)
	sql := q.sql("SELECT " + moved)
	for attempt := 0; ; attempt++ {
		var ok bool
		if err := s.batches.QueryRow(ctx, sql, q.args...).Scan(&ok); err != nil {
			return fmt.Errorf("commit %s: %w", b.Projection, err)
		}
		if ok {
			return nil
		}
		// The checkpoint was not where the batch started: another runner
		// moved it, or this is the projection's first batch.
		cur, err := s.Checkpoint(ctx, b.Projection)
		if err != nil {
			return err
		}
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM projections WHERE name = $1)`, b.Projection).Scan(&exists); err != nil {
			return err
		}
		if exists || attempt > 0 {
			return kernel.Errorf(kernel.ErrConcurrency, "projection %s is at %s, not %s", b.Projection, cur, b.From)
		}
		if _, err := s.pool.Exec(ctx, `INSERT INTO projections (name, commit_pos, prepare_pos, version, updated_at) VALUES ($1, 0, 0, $2, now())
			ON CONFLICT (name) DO NOTHING`, b.Projection, projections.Version); err != nil {
			return err
		}
	}
}

// statement builds one statement of data-modifying CTEs, numbering its
// parameters as they come.
type statement struct {
	ctes []string
	args []any
}

// arg adds a parameter and returns its placeholder.
func (q *statement) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

// with adds a CTE.
func (q *statement) with(name, body string) {
	q.ctes = append(q.ctes, name+" AS ("+body+")")
}

// sql returns the statement, its CTEs before final.
func (q *statement) sql(final string) string {
	if len(q.ctes) == 0 {
		return final
	}
	return "WITH " + strings.Join(q.ctes, ",\n") + "\n" + final
}

// upsertRows adds the upsert of rows into table (a view's or the identity
// index's) when cond holds: the rows go as arrays, one per column, so a
// batch of hundreds of rows is one statement.
func upsertRows(q *statement, table string, rows []projections.Row, cond string) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	var (
		ws, ids, docs              = make([]string, n), make([]string, n), make([]string, n)
		emailIdx, phoneIdx, extIdx = make([]string, n), make([]string, n), make([]string, n)
		sortAt                     = make([]time.Time, n)
		versions                   = make([]int64, n)
		posC, posP                 = make([]string, n), make([]string, n)
	)
	for i, r := range rows {
		doc, err := json.Marshal(r.Contact)
		if err != nil {
			return err
		}
		ws[i], ids[i], docs[i] = r.Contact.Workspace, r.Contact.ID.String(), string(doc)
		emailIdx[i], phoneIdx[i], extIdx[i] = r.EmailIndex, r.PhoneIndex, r.ExtIndex
		sortAt[i], versions[i] = r.SortAt, int64(r.Contact.Version)
		posC[i], posP[i] = posArgs(r.Position)
	}
	name := "up" + strconv.Itoa(len(q.ctes))
	if isIdentity(table) {
		states, spam, holds := make([]string, n), make([]bool, n), make([]string, n)
		for i, r := range rows {
			states[i], spam[i], holds[i] = string(r.Contact.State), r.Contact.Spam, holdID(r.Contact)
		}
		q.with(name, `INSERT INTO `+table+` (workspace, id, state, spam, email_bidx, phone_bidx, ext_bidx, sort_at, version, pos_commit, pos_prepare, doc, hold_id)
			SELECT ws, id, state, spam, email_bidx, phone_bidx, ext_bidx, sort_at, version, pc::numeric, pp::numeric, doc::jsonb, hold_id
			FROM unnest(`+q.arg(ws)+`::text[], `+q.arg(ids)+`::text[], `+q.arg(states)+`::text[], `+q.arg(spam)+`::bool[], `+q.arg(emailIdx)+`::text[], `+
			q.arg(phoneIdx)+`::text[], `+q.arg(extIdx)+`::text[], `+q.arg(sortAt)+`::timestamptz[], `+q.arg(versions)+`::bigint[], `+
			q.arg(posC)+`::text[], `+q.arg(posP)+`::text[], `+q.arg(docs)+`::text[], `+q.arg(holds)+`::text[])
				AS r(ws, id, state, spam, email_bidx, phone_bidx, ext_bidx, sort_at, version, pc, pp, doc, hold_id)
			WHERE `+cond+`
			ON CONFLICT (workspace, id) DO UPDATE SET state = excluded.state, spam = excluded.spam, email_bidx = excluded.email_bidx,
				phone_bidx = excluded.phone_bidx, ext_bidx = excluded.ext_bidx, sort_at = excluded.sort_at, version = excluded.version,
				pos_commit = excluded.pos_commit, pos_prepare = excluded.pos_prepare, doc = excluded.doc, hold_id = excluded.hold_id
			RETURNING 1`)
		return nil
	}
	var (
		created                            = make([]time.Time, n)
		names, emails, phones, norms, srcs = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		tags                               = make([]string, n)
		trashedAt                          = make([]*time.Time, n)
		trashedBy                          = make([]*string, n)
		trashedOp                          = make([]string, n)
	)
	for i, r := range rows {
		p := r.Contact.Personal
		created[i], names[i], emails[i], phones[i], norms[i], srcs[i] = r.Contact.CreatedAt, p.Name, p.Email, p.Phone, contact.NormalizePhone(p.Phone), r.Contact.Source
		tj, err := json.Marshal(tagColumn(r))
		if err != nil {
			return err
		}
		tags[i], trashedAt[i], trashedOp[i] = string(tj), r.Contact.TrashedAt, r.Contact.TrashedOperation
		if r.Contact.TrashedBy != nil {
			trashedBy[i] = &r.Contact.TrashedBy.Principal
		}
	}
	// The tag column (the tags' blind indexes) goes as JSON (an array of
	// arrays of different lengths is not a PostgreSQL array), unpacked row
	// by row.
	q.with(name, `INSERT INTO `+table+` (workspace, id, sort_at, created_at, version, pos_commit, pos_prepare,
			name, email, phone, phone_norm, email_bidx, phone_bidx, source, tags, trashed_at, trashed_by, doc, trashed_op)
		SELECT ws, id, sort_at, created_at, version, pc::numeric, pp::numeric, name, email, phone, phone_norm, email_bidx, phone_bidx, source,
			ARRAY(SELECT jsonb_array_elements_text(tags::jsonb)), trashed_at, trashed_by, doc::jsonb, trashed_op
		FROM unnest(`+q.arg(ws)+`::text[], `+q.arg(ids)+`::text[], `+q.arg(sortAt)+`::timestamptz[], `+q.arg(created)+`::timestamptz[], `+
		q.arg(versions)+`::bigint[], `+q.arg(posC)+`::text[], `+q.arg(posP)+`::text[], `+q.arg(names)+`::text[], `+q.arg(emails)+`::text[], `+
		q.arg(phones)+`::text[], `+q.arg(norms)+`::text[], `+q.arg(emailIdx)+`::text[], `+q.arg(phoneIdx)+`::text[], `+q.arg(srcs)+`::text[], `+
		q.arg(tags)+`::text[], `+q.arg(trashedAt)+`::timestamptz[], `+q.arg(trashedBy)+`::text[], `+q.arg(docs)+`::text[], `+q.arg(trashedOp)+`::text[])
			AS r(ws, id, sort_at, created_at, version, pc, pp, name, email, phone, phone_norm, email_bidx, phone_bidx, source, tags, trashed_at, trashed_by, doc, trashed_op)
		WHERE `+cond+`
		ON CONFLICT (workspace, id) DO UPDATE SET sort_at = excluded.sort_at, created_at = excluded.created_at,
			version = excluded.version, pos_commit = excluded.pos_commit, pos_prepare = excluded.pos_prepare,
			name = excluded.name, email = excluded.email, phone = excluded.phone, phone_norm = excluded.phone_norm,
			email_bidx = excluded.email_bidx, phone_bidx = excluded.phone_bidx, source = excluded.source, tags = excluded.tags,
			trashed_at = excluded.trashed_at, trashed_by = excluded.trashed_by, doc = excluded.doc, trashed_op = excluded.trashed_op
		RETURNING 1`)
	return nil
}

// eraseAnswers adds the stripping of the stored answers about refs'
// contacts to ids (as eraseAnswersSQL does), when cond holds.
func eraseAnswers(q *statement, refs []projections.Ref, tombstones map[contact.ID]string, cond string) {
	if len(refs) == 0 {
		return
	}
	ws, ids, tomb := make([]string, len(refs)), make([]string, len(refs)), make([]string, len(refs))
	for i, r := range refs {
		ws[i], ids[i], tomb[i] = r.Workspace, r.ID.String(), tombstones[r.ID]
	}
	q.with("erase"+strconv.Itoa(len(q.ctes)), `UPDATE idempotency i SET status = 0, header = '{}', body = NULL,
			erased_by = CASE WHEN d.t = '' THEN i.erased_by ELSE d.t END
		FROM unnest(`+q.arg(ws)+`::text[], `+q.arg(ids)+`::text[], `+q.arg(tomb)+`::text[]) AS d(ws, id, t)
		WHERE i.workspace = d.ws AND i.contact_id = d.id AND (i.body IS NOT NULL OR (d.t <> '' AND i.erased_by <> d.t)) AND `+cond+`
		RETURNING 1`)
}

// deleteRefs adds the deletion from table of the rows whose workspace and
// column name refs, when cond holds.
func deleteRefs(q *statement, table, column string, refs []projections.Ref, cond string) {
	if len(refs) == 0 {
		return
	}
	ws, ids := make([]string, len(refs)), make([]string, len(refs))
	for i, r := range refs {
		ws[i], ids[i] = r.Workspace, r.ID.String()
	}
	q.with("del"+strconv.Itoa(len(q.ctes)), `DELETE FROM `+table+` t USING unnest(`+q.arg(ws)+`::text[], `+q.arg(ids)+`::text[]) AS d(ws, id)
		WHERE t.workspace = d.ws AND t.`+column+` = d.id AND `+cond+` RETURNING 1`)
}

// FindIdentities returns the live contacts matching any of q's blind
// indexes, each index an index probe.
func (s *Store) FindIdentities(ctx context.Context, workspace string, q ledger.IdentityQuery) ([]ledger.IdentityMatch, error) {
	if q.ExtIndex == "" && q.EmailIndex == "" && q.PhoneIndex == "" {
		return nil, nil
	}
	// Only the non-empty indexes become conditions, so each is an index probe.
	var conds []string
	for _, c := range []struct{ col, v string }{{"ext_bidx", q.ExtIndex}, {"email_bidx", q.EmailIndex}, {"phone_bidx", q.PhoneIndex}} {
		if c.v != "" {
			conds = append(conds, c.col+" = $"+map[string]string{"ext_bidx": "2", "email_bidx": "3", "phone_bidx": "4"}[c.col])
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT id, state, spam, ext_bidx = $2 AND $2 <> '', email_bidx = $3 AND $3 <> '', phone_bidx = $4 AND $4 <> ''
		FROM `+identityTable+` WHERE workspace = $1 AND (`+strings.Join(conds, " OR ")+`)
		ORDER BY id`, workspace, q.ExtIndex, q.EmailIndex, q.PhoneIndex)
	if err != nil {
		return nil, fmt.Errorf("find identities: %w", err)
	}
	defer rows.Close()
	var out []ledger.IdentityMatch
	for rows.Next() {
		var (
			m     ledger.IdentityMatch
			id    string
			state string
		)
		if err := rows.Scan(&id, &state, &m.Spam, &m.ByExt, &m.ByEmail, &m.ByPhone); err != nil {
			return nil, err
		}
		if m.ID, err = contact.ParseID(id); err != nil {
			return nil, fmt.Errorf("identity row %q: %w", id, err)
		}
		m.State = contact.State(state)
		out = append(out, m)
	}
	return out, rows.Err()
}

var _ ledger.IdentityBatchFinder = (*Store)(nil)

// FindIdentitiesMany looks up many queries in one statement: each kind of
// index probed once per distinct value.
func (s *Store) FindIdentitiesMany(ctx context.Context, workspace string, qs []ledger.IdentityQuery) ([][]ledger.IdentityMatch, error) {
	ext, email, phone := ledger.IdentityIndexes(qs)
	found := [3]map[string][]ledger.IdentityRow{{}, {}, {}}
	if len(ext)+len(email)+len(phone) == 0 {
		return ledger.MatchIdentities(qs, found[0], found[1], found[2]), nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT 0, i.ext_bidx, i.id, i.state, i.spam FROM `+identityTable+` i WHERE i.workspace = $1 AND i.ext_bidx = ANY($2)
		UNION ALL
		SELECT 1, i.email_bidx, i.id, i.state, i.spam FROM `+identityTable+` i WHERE i.workspace = $1 AND i.email_bidx = ANY($3)
		UNION ALL
		SELECT 2, i.phone_bidx, i.id, i.state, i.spam FROM `+identityTable+` i WHERE i.workspace = $1 AND i.phone_bidx = ANY($4)`,
		workspace, ext, email, phone)
	if err != nil {
		return nil, fmt.Errorf("find identities: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind         int32
			v, id, state string
			r            ledger.IdentityRow
		)
		if err := rows.Scan(&kind, &v, &id, &state, &r.Spam); err != nil {
			return nil, err
		}
		if r.ID, err = contact.ParseID(id); err != nil {
			return nil, fmt.Errorf("identity row %q: %w", id, err)
		}
		r.State = contact.State(state)
		found[kind][v] = append(found[kind][v], r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return ledger.MatchIdentities(qs, found[0], found[1], found[2]), nil
}

// List returns one page of a view, newest first.
func (s *Store) List(ctx context.Context, q ledger.ListQuery) ([]ledger.ListItem, error) {
	query, args, err := listQuery(q)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", q.View, err)
	}
	defer rows.Close()
	var out []ledger.ListItem
	for rows.Next() {
		var (
			it  ledger.ListItem
			doc []byte
		)
		if err := rows.Scan(&doc, &it.SortAt); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(doc, &it.Contact); err != nil {
			return nil, fmt.Errorf("row of %s: %w", q.View, err)
		}
		it.SortAt = it.SortAt.UTC()
		out = append(out, it)
	}
	return out, rows.Err()
}

// listQuery builds the statement of one page of a view.
func listQuery(q ledger.ListQuery) (string, []any, error) {
	table, err := viewTable(q.View)
	if err != nil {
		return "", nil, err
	}
	var (
		where = []string{"workspace = $1"}
		args  = []any{q.Workspace}
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.Q != "" {
		lq := strings.ToLower(q.Q)
		a := arg(lq)
		cond := "strpos(lower(name), " + a + ") > 0 OR strpos(lower(email), " + a + ") > 0 OR id = " + arg(strings.ToUpper(q.Q))
		if d := strings.TrimPrefix(contact.NormalizePhone(q.Q), "+"); len(d) >= 3 {
			cond += " OR strpos(phone_norm, " + arg(d) + ") > 0"
		}
		where = append(where, "("+cond+")")
	}
	if q.EmailIndex != "" {
		// "<> ''" lets the planner use the partial index, which holds non-empty indexes only.
		where = append(where, "email_bidx = "+arg(q.EmailIndex)+" AND email_bidx <> ''")
	}
	if q.PhoneIndex != "" {
		where = append(where, "phone_bidx = "+arg(q.PhoneIndex)+" AND phone_bidx <> ''")
	}
	if q.TagIndex != "" {
		where = append(where, "tags @> ARRAY["+arg(q.TagIndex)+"]::text[]")
	}
	if q.DeletedBy != "" {
		where = append(where, "trashed_by = "+arg(q.DeletedBy))
	}
	if len(q.Operations) > 0 {
		where = append(where, "trashed_op <> '' AND trashed_op = ANY("+arg(q.Operations)+"::text[])")
	}
	// In the trash view, sort_at is the time of trashing: a range of it
	// walks the view's order index and stops at the page's end.
	deletedAt := "trashed_at"
	if q.View == "trash" {
		deletedAt = "sort_at"
	}
	if !q.DeletedAfter.IsZero() {
		where = append(where, deletedAt+" >= "+arg(q.DeletedAfter))
	}
	if !q.DeletedBefore.IsZero() {
		where = append(where, deletedAt+" < "+arg(q.DeletedBefore))
	}
	if q.After != nil {
		at, id := arg(q.After.SortAt), arg(q.After.ID)
		where = append(where, "(sort_at, id) < ("+at+", "+id+")")
	}
	limit := arg(q.Limit)
	return `SELECT doc, sort_at FROM ` + table + ` WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY sort_at DESC, id DESC LIMIT ` + limit, args, nil
}

// personalTables are the tables that hold personal data in clear (the views)
// or key material (the key vault).
func personalTables() []string {
	out := []string{"data_keys", "idempotency", identityTable, "identity_claims"}
	for _, n := range ledger.ViewNames {
		t, _ := viewTable(n)
		out = append(out, t)
	}
	return out
}

// Compact runs after an erasure: VACUUM removes the erased rows' dead tuples
// (and their index entries) from the tables that held personal data. It
// returns at once and vacuums in the background, one run at a time: a burst
// of erasures costs one more run, not one each.
func (s *Store) Compact(ctx context.Context) error {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	if s.compacting {
		s.compactAgain = true
		return nil
	}
	s.compacting = true
	s.wg.Go(func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-s.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		for {
			if err := s.Vacuum(ctx, false); err != nil && ctx.Err() == nil {
				s.log.Warn("vacuum after erasure failed", "err", err)
			}
			s.compactMu.Lock()
			if !s.compactAgain || ctx.Err() != nil {
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

// Vacuum vacuums the tables that held personal data. Without full it is a
// plain VACUUM that neither truncates nor analyzes: it takes no transaction
// id (which would hold every reader of the log back until it ended) and no
// exclusive lock. With full it rewrites them (VACUUM FULL: the old files,
// with any bytes of deleted rows, are removed; it locks each table while it
// runs), then checkpoints and switches to a new WAL segment so the old
// segments can be removed.
func (s *Store) Vacuum(ctx context.Context, full bool) error {
	verb := "VACUUM (TRUNCATE false) "
	if full {
		verb = "VACUUM (FULL, ANALYZE) "
	}
	for _, t := range personalTables() {
		if _, err := s.pool.Exec(ctx, verb+t); err != nil {
			return fmt.Errorf("%s%s: %w", verb, t, err)
		}
	}
	if full {
		for _, stmt := range []string{"CHECKPOINT", "SELECT pg_switch_wal()", "CHECKPOINT"} {
			if _, err := s.pool.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w (needs a superuser or the pg_checkpoint role)", stmt, err)
			}
		}
	}
	return nil
}

// ErasureCaveats names the server settings under which copies of erased
// rows outlive Vacuum(ctx, true) in the server's files or beyond them: WAL
// segments recycled with their old bytes inside (wal_recycle), kept for
// standbys (wal_keep_size, replication slots), or archived (archive_mode).
// Each is a sentence for the operator; none means the data directory holds
// no copy once Vacuum(ctx, true) has returned.
func (s *Store) ErasureCaveats(ctx context.Context) ([]string, error) {
	settings := map[string]string{}
	for _, name := range []string{"wal_recycle", "wal_keep_size", "archive_mode"} {
		var v string
		if err := s.pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			return nil, fmt.Errorf("setting %s: %w", name, err)
		}
		settings[name] = v
	}
	var slots int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots").Scan(&slots); err != nil {
		return nil, fmt.Errorf("replication slots: %w", err)
	}
	return erasureCaveats(settings, slots), nil
}

func erasureCaveats(settings map[string]string, slots int) []string {
	var out []string
	if settings["wal_recycle"] != "off" {
		out = append(out, "wal_recycle is on: old WAL segments are renamed for reuse with erased rows still inside, until new WAL overwrites them; set wal_recycle = off")
	}
	if k := settings["wal_keep_size"]; k != "" && k != "0" && k != "0MB" {
		out = append(out, "wal_keep_size is "+k+": that much old WAL, erased rows included, stays in pg_wal; set it to 0 or accept that copies last until it is overwritten")
	}
	if a := settings["archive_mode"]; a != "" && a != "off" {
		out = append(out, "archive_mode is "+a+": archived WAL segments hold erased rows for as long as the archive keeps them")
	}
	if slots > 0 {
		out = append(out, fmt.Sprintf("%d replication slots: their standbys or consumers keep WAL with erased rows, and each standby keeps its own copy of the tables", slots))
	}
	return out
}

// tagColumn is what a row's tag column holds: its tags' blind indexes.
func tagColumn(r projections.Row) []string {
	if r.TagIndexes == nil {
		return []string{}
	}
	return r.TagIndexes
}

// holdID is what the identity index's hold column holds: the id of the
// contact's legal hold, or "".
func holdID(s contact.Snapshot) string {
	if s.Hold == nil {
		return ""
	}
	return s.Hold.ID
}
