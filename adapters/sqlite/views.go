package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
)

var (
	_ projections.Store = (*Store)(nil)
	_ ledger.ReadModels = (*Store)(nil)
	_ ledger.Identities = (*Store)(nil)
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

// identityTableDDL creates a table shaped as the live identity index (its
// own CREATE statement, which migration 00003 wrote and a switch renames),
// with its primary key only.
func identityTableDDL(ctx context.Context, tx *sql.Tx, table string) (string, error) {
	var live string
	if err := tx.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?`, identityTable).Scan(&live); err != nil {
		return "", fmt.Errorf("the identity index's table: %w", err)
	}
	name := regexp.MustCompile(`^CREATE TABLE\s+"?` + identityTable + `"?`)
	if !name.MatchString(live) {
		return "", fmt.Errorf("the identity index's table is created by %.40q", live)
	}
	return name.ReplaceAllLiteralString(live, "CREATE TABLE "+table), nil
}

// tableIndexes creates a projection's secondary indexes.
func tableIndexes(table string) []string {
	if isIdentity(table) {
		return identityIndexes(table)
	}
	return viewIndexes(table)
}

// identityIndexes creates the identity index's lookups: the live table's
// are the names migration 00003 gave them, a rebuild's carry its table's
// name, which the switch renames to the live one.
func identityIndexes(table string) []string {
	return []string{
		`CREATE INDEX IF NOT EXISTS ` + table + `_ext ON ` + table + ` (workspace, ext_bidx)`,
		`CREATE INDEX IF NOT EXISTS ` + table + `_email ON ` + table + ` (workspace, email_bidx)`,
		`CREATE INDEX IF NOT EXISTS ` + table + `_phone ON ` + table + ` (workspace, phone_bidx)`,
	}
}

// viewDDL creates the table of one view. Its indexes are named after the
// table it is created as: a rebuilt table keeps its indexes' names when it
// is renamed to the live name, so names never collide.
func viewDDL(table string) string {
	return viewTableDDL(table) + "\n" + strings.Join(viewIndexes(table), ";\n") + ";"
}

// viewTableDDL creates a view's table with its primary key only: a
// rebuild loads it bare and builds the other indexes after (viewIndexes),
// sorting once instead of inserting a million random keys one by one.
func viewTableDDL(table string) string {
	return `CREATE TABLE ` + table + ` (
		workspace   TEXT    NOT NULL,
		id          TEXT    NOT NULL,
		sort_at     INTEGER NOT NULL,
		created_at  INTEGER NOT NULL,
		version     INTEGER NOT NULL,
		pos_commit  INTEGER NOT NULL,
		pos_prepare INTEGER NOT NULL,
		name        TEXT    NOT NULL,
		email       TEXT    NOT NULL,
		phone       TEXT    NOT NULL,
		phone_norm  TEXT    NOT NULL,
		email_bidx  TEXT    NOT NULL,
		phone_bidx  TEXT    NOT NULL,
		source      TEXT    NOT NULL,
		tags        TEXT    NOT NULL,
		trashed_at  INTEGER,
		trashed_by  TEXT,
		doc         TEXT    NOT NULL,
		trashed_op  TEXT    NOT NULL DEFAULT '',
		PRIMARY KEY (workspace, id)
	) WITHOUT ROWID;`
}

// viewIndexes creates a view's secondary indexes, one statement each,
// when they are missing.
func viewIndexes(table string) []string {
	return []string{
		`CREATE INDEX IF NOT EXISTS ` + table + `_order ON ` + table + ` (workspace, sort_at DESC, id DESC)`,
		`CREATE INDEX IF NOT EXISTS ` + table + `_email ON ` + table + ` (workspace, email_bidx) WHERE email_bidx <> ''`,
		`CREATE INDEX IF NOT EXISTS ` + table + `_phone ON ` + table + ` (workspace, phone_bidx) WHERE phone_bidx <> ''`,
		`CREATE INDEX IF NOT EXISTS ` + table + `_trashed ON ` + table + ` (workspace, trashed_at) WHERE trashed_at IS NOT NULL`,
		opIndex(table),
	}
}

// opIndex indexes the operation that trashed each contact of a view (only
// the trash view has any), so a restore job finds what one operation
// trashed with one probe.
func opIndex(table string) string {
	return `CREATE INDEX IF NOT EXISTS ` + table + `_op ON ` + table + ` (workspace, trashed_op) WHERE trashed_op <> ''`
}

// EnsureViews creates the tables of the views that don't exist yet.
func (s *Store) EnsureViews(ctx context.Context) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, n := range ledger.ViewNames {
			t, _ := viewTable(n)
			var exists int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, t).Scan(&exists); err != nil {
				return err
			}
			if exists > 0 {
				continue
			}
			if _, err := tx.ExecContext(ctx, viewDDL(t)); err != nil {
				return fmt.Errorf("create %s: %w", t, err)
			}
		}
		return nil
	}, nil)
}

// Checkpoint returns how far a projection has applied the log.
func (s *Store) Checkpoint(ctx context.Context, projection string) (kernel.Position, error) {
	var p kernel.Position
	err := s.r.QueryRowContext(ctx, `SELECT commit_pos, prepare_pos FROM projections WHERE name = ?`, projection).Scan(&p.Commit, &p.Prepare)
	if errors.Is(err, sql.ErrNoRows) {
		return kernel.Position{}, nil
	}
	return p, err
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
		list, _ := json.Marshal(ids)
		ext, tags := "''", "tags"
		if isIdentity(table) {
			ext, tags = "ext_bidx", "'[]'"
		}
		rows, err := s.r.QueryContext(ctx, `SELECT doc, sort_at, email_bidx, phone_bidx, `+ext+`, `+tags+`, pos_commit, pos_prepare FROM `+table+`
			WHERE workspace = ? AND id IN (SELECT value FROM json_each(?))`, ws, string(list))
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var (
				row    projections.Row
				doc    string
				tags   string
				sortAt int64
			)
			if err := rows.Scan(&doc, &sortAt, &row.EmailIndex, &row.PhoneIndex, &row.ExtIndex, &tags, &row.Position.Commit, &row.Position.Prepare); err != nil {
				rows.Close()
				return nil, err
			}
			if err := json.Unmarshal([]byte(doc), &row.Contact); err != nil {
				rows.Close()
				return nil, fmt.Errorf("row of %s: %w", projection, err)
			}
			row.SortAt = fromMicros(sortAt)
			if err := json.Unmarshal([]byte(tags), &row.TagIndexes); err != nil {
				rows.Close()
				return nil, fmt.Errorf("row of %s: %w", projection, err)
			}
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

// Commit writes a projection batch and moves its checkpoint, atomically.
func (s *Store) Commit(ctx context.Context, b projections.Batch) error {
	var table string
	if b.Projection != projections.Erasure {
		var err error
		if table, err = viewTable(b.Projection); err != nil {
			return err
		}
	}
	args, err := rowsArgs(table, b.Upserts)
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := moveCheckpoint(ctx, tx, b.Projection, b.From, b.To); err != nil {
			return err
		}
		if err := writeRows(ctx, tx, table, args); err != nil {
			return err
		}
		if err := deleteRows(ctx, tx, table, b.Deletes); err != nil {
			return err
		}
		for ws, ids := range byWorkspace(b.DestroyKeys) {
			list, _ := json.Marshal(ids)
			if _, err := tx.ExecContext(ctx, `DELETE FROM data_keys WHERE workspace = ? AND owner IN (SELECT value FROM json_each(?))`, ws, string(list)); err != nil {
				return err
			}
			// Their claims are blind indexes of their email and phone: they go too.
			if _, err := tx.ExecContext(ctx, `DELETE FROM identity_claims WHERE workspace = ? AND contact_id IN (SELECT value FROM json_each(?))`, ws, string(list)); err != nil {
				return err
			}
		}
		for _, ref := range b.DestroyKeys {
			// Stored answers about the contact hold its personal data: keep ids only.
			if _, err := eraseAnswers(ctx, tx, ref.Workspace, ref.ID.String(), b.Tombstones[ref.ID]); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}

func moveCheckpoint(ctx context.Context, tx *sql.Tx, name string, from, to kernel.Position) error {
	var cur kernel.Position
	err := tx.QueryRowContext(ctx, `SELECT commit_pos, prepare_pos FROM projections WHERE name = ?`, name).Scan(&cur.Commit, &cur.Prepare)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if cur != from {
		return kernel.Errorf(kernel.ErrConcurrency, "projection %s is at %s, not %s", name, cur, from)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO projections (name, commit_pos, prepare_pos, version, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET commit_pos = excluded.commit_pos, prepare_pos = excluded.prepare_pos, updated_at = excluded.updated_at,
			failed_at = NULL`,
		name, to.Commit, to.Prepare, projections.Version, micros(nowUTC()))
	return err
}

// rowsSQL returns the upsert of rows of table, a view's or the identity
// index's, up to the VALUES that follow.
func rowsSQL(table string) string {
	if isIdentity(table) {
		return `INSERT OR REPLACE INTO ` + table + ` (workspace, id, state, spam, email_bidx, phone_bidx, ext_bidx,
			sort_at, version, pos_commit, pos_prepare, doc, hold_id) VALUES `
	}
	return `INSERT OR REPLACE INTO ` + table + ` (workspace, id, sort_at, created_at, version, pos_commit, pos_prepare,
		name, email, phone, phone_norm, email_bidx, phone_bidx, source, tags, trashed_at, trashed_by, doc, trashed_op) VALUES `
}

// rowArgs returns the arguments of rowsSQL for r. It is the costly part of a
// row (JSON), so callers make them before they queue their write: the
// single writer then only executes.
func rowArgs(table string, r projections.Row) ([]any, error) {
	doc, err := json.Marshal(r.Contact)
	if err != nil {
		return nil, err
	}
	if isIdentity(table) {
		return []any{r.Contact.Workspace, r.Contact.ID.String(), string(r.Contact.State), r.Contact.Spam, r.EmailIndex, r.PhoneIndex, r.ExtIndex,
			micros(r.SortAt), r.Contact.Version, r.Position.Commit, r.Position.Prepare, string(doc), holdID(r.Contact)}, nil
	}
	tags, err := json.Marshal(tagColumn(r))
	if err != nil {
		return nil, err
	}
	var trashedAt sql.NullInt64
	var trashedBy sql.NullString
	if r.Contact.TrashedAt != nil {
		trashedAt = sql.NullInt64{Int64: micros(*r.Contact.TrashedAt), Valid: true}
	}
	if r.Contact.TrashedBy != nil {
		trashedBy = sql.NullString{String: r.Contact.TrashedBy.Principal, Valid: true}
	}
	p := r.Contact.Personal
	return []any{r.Contact.Workspace, r.Contact.ID.String(), micros(r.SortAt), micros(r.Contact.CreatedAt), r.Contact.Version,
		r.Position.Commit, r.Position.Prepare, p.Name, p.Email, p.Phone, contact.NormalizePhone(p.Phone),
		r.EmailIndex, r.PhoneIndex, r.Contact.Source, string(tags), trashedAt, trashedBy, string(doc), r.Contact.TrashedOperation}, nil
}

// holdID is what the identity index's hold column holds: the id of the
// contact's legal hold, or "".
func holdID(s contact.Snapshot) string {
	if s.Hold == nil {
		return ""
	}
	return s.Hold.ID
}

// rowsArgs makes the arguments of many rows.
func rowsArgs(table string, rows []projections.Row) ([][]any, error) {
	out := make([][]any, len(rows))
	for i, r := range rows {
		var err error
		if out[i], err = rowArgs(table, r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeRows upserts rows into table in tx, dozens of rows a statement.
func writeRows(ctx context.Context, tx *sql.Tx, table string, args [][]any) error {
	return insertRows(ctx, tx, rowsSQL(table), "", args, nil)
}

// deleteRows deletes the rows of refs from table in tx, one statement a workspace.
func deleteRows(ctx context.Context, tx *sql.Tx, table string, refs []projections.Ref) error {
	for ws, ids := range byWorkspace(refs) {
		list, _ := json.Marshal(ids)
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE workspace = ? AND id IN (SELECT value FROM json_each(?))`, ws, string(list)); err != nil {
			return err
		}
	}
	return nil
}

// byWorkspace groups refs' ids by workspace.
func byWorkspace(refs []projections.Ref) map[string][]string {
	out := map[string][]string{}
	for _, r := range refs {
		out[r.Workspace] = append(out[r.Workspace], r.ID.String())
	}
	return out
}

// identityLookupSQL finds the identities whose col is a value; args:
// workspace, value. likelihood() tells SQLite, which has no statistics,
// that a match is rare: else it could walk the whole workspace by the
// primary key. The lookup stays one probe of the column's index at any
// size (a plan test guards it; a rebuild renames the indexes).
func identityLookupSQL(col string) string {
	return `SELECT id, state, spam FROM ` + identityTable + ` WHERE workspace = ? AND likelihood(` + col + ` = ?, 0.000001)`
}

// identityBatchSQL finds the identities whose col is any of a JSON list of
// values, a probe of the column's index each; args: the list, workspace.
func identityBatchSQL(col string) string {
	return `SELECT i.` + col + `, i.id, i.state, i.spam FROM json_each(?) q
		CROSS JOIN ` + identityTable + ` i ON i.workspace = ? AND likelihood(i.` + col + ` = q.value, 0.000001)`
}

// FindIdentities returns the live contacts matching any of q's blind
// indexes. Each index is its own query, so each uses its own index.
func (s *Store) FindIdentities(ctx context.Context, workspace string, q ledger.IdentityQuery) ([]ledger.IdentityMatch, error) {
	byID := map[contact.ID]*ledger.IdentityMatch{}
	var order []contact.ID
	for _, c := range []struct{ col, v string }{
		{"ext_bidx", q.ExtIndex},
		{"email_bidx", q.EmailIndex},
		{"phone_bidx", q.PhoneIndex},
	} {
		if c.v == "" {
			continue
		}
		rows, err := s.r.QueryContext(ctx, identityLookupSQL(c.col), workspace, c.v)
		if err != nil {
			return nil, fmt.Errorf("find identities: %w", err)
		}
		for rows.Next() {
			var (
				id, state string
				spam      bool
			)
			if err := rows.Scan(&id, &state, &spam); err != nil {
				rows.Close()
				return nil, err
			}
			cid, err := contact.ParseID(id)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("identity row %q: %w", id, err)
			}
			m := byID[cid]
			if m == nil {
				m = &ledger.IdentityMatch{ID: cid, State: contact.State(state), Spam: spam}
				byID[cid] = m
				order = append(order, cid)
			}
			switch c.col {
			case "ext_bidx":
				m.ByExt = true
			case "email_bidx":
				m.ByEmail = true
			default:
				m.ByPhone = true
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(order, func(a, b contact.ID) int { return strings.Compare(a.String(), b.String()) })
	out := make([]ledger.IdentityMatch, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	return out, nil
}

var _ ledger.IdentityBatchFinder = (*Store)(nil)

// FindIdentitiesMany looks up many queries with one query per kind of index.
func (s *Store) FindIdentitiesMany(ctx context.Context, workspace string, qs []ledger.IdentityQuery) ([][]ledger.IdentityMatch, error) {
	ext, email, phone := ledger.IdentityIndexes(qs)
	var found [3]map[string][]ledger.IdentityRow
	for i, c := range []struct {
		col    string
		values []string
	}{
		{"ext_bidx", ext},
		{"email_bidx", email},
		{"phone_bidx", phone},
	} {
		found[i] = map[string][]ledger.IdentityRow{}
		if len(c.values) == 0 {
			continue
		}
		list, _ := json.Marshal(c.values)
		rows, err := s.r.QueryContext(ctx, identityBatchSQL(c.col), string(list), workspace)
		if err != nil {
			return nil, fmt.Errorf("find identities: %w", err)
		}
		for rows.Next() {
			var (
				v, id, state string
				r            ledger.IdentityRow
			)
			if err := rows.Scan(&v, &id, &state, &r.Spam); err != nil {
				rows.Close()
				return nil, err
			}
			if r.ID, err = contact.ParseID(id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("identity row %q: %w", id, err)
			}
			r.State = contact.State(state)
			found[i][v] = append(found[i][v], r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return ledger.MatchIdentities(qs, found[0], found[1], found[2]), nil
}

// List returns one page of a view, newest first.
func (s *Store) List(ctx context.Context, q ledger.ListQuery) ([]ledger.ListItem, error) {
	table, err := viewTable(q.View)
	if err != nil {
		return nil, err
	}
	var (
		where = []string{"workspace = ?"}
		args  = []any{q.Workspace}
	)
	if q.Q != "" {
		lq := strings.ToLower(q.Q)
		cond := "instr(lower(name), ?) > 0 OR instr(lower(email), ?) > 0 OR id = ?"
		args = append(args, lq, lq, strings.ToUpper(q.Q))
		if d := contact.NormalizePhone(q.Q); len(strings.TrimPrefix(d, "+")) >= 3 {
			cond += " OR instr(phone_norm, ?) > 0"
			args = append(args, strings.TrimPrefix(d, "+"))
		}
		where = append(where, "("+cond+")")
	}
	if q.EmailIndex != "" {
		// "<> ''" lets SQLite use the partial index, which holds non-empty
		// indexes only, and likelihood() tells the planner, which has no
		// statistics, that an exact match is rare: else it would walk the
		// whole view in order and test every row.
		where, args = append(where, "likelihood(email_bidx = ?, 0.000001) AND email_bidx <> ''"), append(args, q.EmailIndex)
	}
	if q.PhoneIndex != "" {
		where, args = append(where, "likelihood(phone_bidx = ?, 0.000001) AND phone_bidx <> ''"), append(args, q.PhoneIndex)
	}
	if q.TagIndex != "" {
		where, args = append(where, "EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ?)"), append(args, q.TagIndex)
	}
	if q.DeletedBy != "" {
		where, args = append(where, "trashed_by = ?"), append(args, q.DeletedBy)
	}
	if len(q.Operations) > 0 {
		ops, _ := json.Marshal(q.Operations)
		where, args = append(where, "trashed_op <> '' AND trashed_op IN (SELECT value FROM json_each(?))"), append(args, string(ops))
	}
	// In the trash view, sort_at is the time of trashing: a range of it
	// walks the view's order index and stops at the page's end.
	deletedAt := "trashed_at"
	if q.View == "trash" {
		deletedAt = "sort_at"
	}
	if !q.DeletedAfter.IsZero() {
		where, args = append(where, deletedAt+" >= ?"), append(args, micros(q.DeletedAfter))
	}
	if !q.DeletedBefore.IsZero() {
		where, args = append(where, deletedAt+" < ?"), append(args, micros(q.DeletedBefore))
	}
	if q.After != nil {
		at := micros(q.After.SortAt)
		where, args = append(where, "(sort_at < ? OR (sort_at = ? AND id < ?))"), append(args, at, at, q.After.ID)
	}
	args = append(args, q.Limit)
	rows, err := s.r.QueryContext(ctx, `SELECT doc, sort_at FROM `+table+` WHERE `+strings.Join(where, " AND ")+
		` ORDER BY sort_at DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", q.View, err)
	}
	defer rows.Close()
	var out []ledger.ListItem
	for rows.Next() {
		var (
			it     ledger.ListItem
			doc    string
			sortAt int64
		)
		if err := rows.Scan(&doc, &sortAt); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(doc), &it.Contact); err != nil {
			return nil, fmt.Errorf("row of %s: %w", q.View, err)
		}
		it.SortAt = fromMicros(sortAt)
		out = append(out, it)
	}
	return out, rows.Err()
}

// tagColumn is what a row's tag column holds: its tags' blind indexes.
func tagColumn(r projections.Row) []string {
	if r.TagIndexes == nil {
		return []string{}
	}
	return r.TagIndexes
}
