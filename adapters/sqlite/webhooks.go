package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

var _ ledger.WebhookStore = (*Store)(nil)

// optMicros stores a time that may be absent.
func optMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: micros(t), Valid: true}
}

func fromOpt(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromMicros(n.Int64)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

const webhookColumns = `id, workspace, url, description, types, include_personal, enabled, disabled_reason, disabled_at,
	secrets, created_at, updated_at, created_by, revision`

func scanWebhook(row scanner) (ledger.Webhook, error) {
	var (
		w                   ledger.Webhook
		types, secrets      string
		personal, enabled   int
		disabledAt          sql.NullInt64
		createdAt, updateAt int64
	)
	if err := row.Scan(&w.ID, &w.Workspace, &w.URL, &w.Description, &types, &personal, &enabled, &w.DisabledReason, &disabledAt,
		&secrets, &createdAt, &updateAt, &w.CreatedBy, &w.Revision); err != nil {
		return ledger.Webhook{}, err
	}
	if err := json.Unmarshal([]byte(types), &w.Types); err != nil {
		return ledger.Webhook{}, fmt.Errorf("types of %s: %w", w.ID, err)
	}
	if err := json.Unmarshal([]byte(secrets), &w.Secrets); err != nil {
		return ledger.Webhook{}, fmt.Errorf("secrets of %s: %w", w.ID, err)
	}
	w.IncludePersonal, w.Enabled = personal == 1, enabled == 1
	w.DisabledAt, w.CreatedAt, w.UpdatedAt = fromOpt(disabledAt), fromMicros(createdAt), fromMicros(updateAt)
	return w, nil
}

func webhookArgs(w ledger.Webhook) ([]any, error) {
	if w.Types == nil {
		w.Types = []string{}
	}
	types, err := json.Marshal(w.Types)
	if err != nil {
		return nil, err
	}
	secrets, err := json.Marshal(w.Secrets)
	if err != nil {
		return nil, err
	}
	return []any{w.ID, w.Workspace, w.URL, w.Description, string(types), boolInt(w.IncludePersonal), boolInt(w.Enabled),
		w.DisabledReason, optMicros(w.DisabledAt), string(secrets), micros(w.CreatedAt), micros(w.UpdatedAt), w.CreatedBy}, nil
}

// CreateWebhook stores a new subscription and its checkpoint.
func (s *Store) CreateWebhook(ctx context.Context, w ledger.Webhook, start kernel.Position) error {
	args, err := webhookArgs(w)
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhooks (`+webhookColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`, args...); err != nil {
			if isConstraint(err) {
				return kernel.Errorf(kernel.ErrAlreadyExists, "webhook %s exists", w.ID)
			}
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO webhook_progress (webhook, commit_pos, prepare_pos, generation, last_error, updated_at)
			VALUES (?, ?, ?, 1, '', ?)`, w.ID, start.Commit, start.Prepare, micros(w.CreatedAt))
		return err
	}, nil)
}

// Webhook returns one subscription of a workspace.
func (s *Store) Webhook(ctx context.Context, workspace, id string) (ledger.Webhook, error) {
	w, err := scanWebhook(s.r.QueryRowContext(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE workspace = ? AND id = ?`, workspace, id))
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Webhook{}, kernel.ErrNotFound
	}
	return w, err
}

// Webhooks lists a workspace's subscriptions, or every one.
func (s *Store) Webhooks(ctx context.Context, workspace string) ([]ledger.Webhook, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE ? = '' OR workspace = ? ORDER BY id`, workspace, workspace)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	defer rows.Close()
	var out []ledger.Webhook
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// UpdateWebhook replaces a subscription's settings and bumps its revision.
func (s *Store) UpdateWebhook(ctx context.Context, w ledger.Webhook) error {
	args, err := webhookArgs(w)
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhooks SET url = ?, description = ?, types = ?, include_personal = ?, enabled = ?,
			disabled_reason = ?, disabled_at = ?, secrets = ?, updated_at = ?, revision = revision + 1 WHERE workspace = ? AND id = ?`,
			args[2], args[3], args[4], args[5], args[6], args[7], args[8], args[9], args[11], w.Workspace, w.ID)
		return affected(res, err)
	}, nil)
}

// affected turns an update or delete that touched no row into ErrNotFound.
func affected(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return kernel.ErrNotFound
	}
	return nil
}

// DeleteWebhook deletes a subscription with its progress, pending events
// and attempts (ON DELETE CASCADE); its erasure acknowledgments stay.
func (s *Store) DeleteWebhook(ctx context.Context, workspace, id string) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webhooks WHERE workspace = ? AND id = ?`, workspace, id)
		return affected(res, err)
	}, nil)
}

// WebhookProgress returns how far delivery to a subscription has got.
func (s *Store) WebhookProgress(ctx context.Context, id string) (ledger.WebhookProgress, error) {
	p := ledger.WebhookProgress{Webhook: id}
	var since, success, failing sql.NullInt64
	var updated int64
	err := s.r.QueryRowContext(ctx, `SELECT commit_pos, prepare_pos, since, generation, last_success_at, failing_since, last_error, updated_at,
		(SELECT count(*) FROM webhook_pending WHERE webhook = ?) FROM webhook_progress WHERE webhook = ?`, id, id).
		Scan(&p.Position.Commit, &p.Position.Prepare, &since, &p.Generation, &success, &failing, &p.LastError, &updated, &p.Pending)
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.WebhookProgress{}, kernel.ErrNotFound
	}
	if err != nil {
		return ledger.WebhookProgress{}, fmt.Errorf("progress of %s: %w", id, err)
	}
	p.Since, p.LastSuccessAt, p.FailingSince, p.UpdatedAt = fromOpt(since), fromOpt(success), fromOpt(failing), fromMicros(updated)
	return p, nil
}

// PendingDeliveries returns a subscription's pending events after a position, in log order.
func (s *Store) PendingDeliveries(ctx context.Context, id string, after kernel.Position, limit int) ([]ledger.PendingDelivery, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT commit_pos, prepare_pos, stream, event_id, attempts, next_at, first_at FROM webhook_pending
		WHERE webhook = ? AND (commit_pos, prepare_pos) > (?, ?) ORDER BY commit_pos, prepare_pos LIMIT ?`, id, after.Commit, after.Prepare, limit)
	if err != nil {
		return nil, fmt.Errorf("pending deliveries of %s: %w", id, err)
	}
	defer rows.Close()
	var out []ledger.PendingDelivery
	for rows.Next() {
		p := ledger.PendingDelivery{Webhook: id}
		var next, first sql.NullInt64
		if err := rows.Scan(&p.Position.Commit, &p.Position.Prepare, &p.Stream, &p.EventID, &p.Attempts, &next, &first); err != nil {
			return nil, err
		}
		p.NextAt, p.FirstAt = fromOpt(next), fromOpt(first)
		out = append(out, p)
	}
	return out, rows.Err()
}

// CommitDeliveries writes a deliverer's batch in one transaction.
func (s *Store) CommitDeliveries(ctx context.Context, b ledger.DeliveryBatch) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var cur kernel.Position
		var gen int64
		err := tx.QueryRowContext(ctx, `SELECT commit_pos, prepare_pos, generation FROM webhook_progress WHERE webhook = ?`, b.Webhook).
			Scan(&cur.Commit, &cur.Prepare, &gen)
		if errors.Is(err, sql.ErrNoRows) {
			return kernel.ErrNotFound
		}
		if err != nil {
			return err
		}
		if cur != b.From || gen != b.Generation {
			return kernel.Errorf(kernel.ErrConcurrency, "webhook %s is at %s (generation %d), not %s (%d)", b.Webhook, cur, gen, b.From, b.Generation)
		}
		set := `commit_pos = ?, prepare_pos = ?, updated_at = ?`
		args := []any{b.To.Commit, b.To.Prepare, micros(b.At)}
		if b.ClearSince {
			set += `, since = NULL`
		}
		if !b.LastSuccessAt.IsZero() {
			set, args = set+`, last_success_at = ?`, append(args, micros(b.LastSuccessAt))
		}
		if b.Healthy {
			set += `, failing_since = NULL`
		} else if !b.FailingSince.IsZero() {
			set, args = set+`, failing_since = COALESCE(failing_since, ?)`, append(args, micros(b.FailingSince))
		}
		if b.LastError != "" {
			set, args = set+`, last_error = ?`, append(args, b.LastError)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_progress SET `+set+` WHERE webhook = ?`, append(args, b.Webhook)...); err != nil {
			return err
		}
		if err := insertAttempts(ctx, tx, b.Webhook, b.Attempts); err != nil {
			return err
		}
		for _, p := range b.Done {
			if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_pending WHERE webhook = ? AND commit_pos = ? AND prepare_pos = ?`,
				b.Webhook, p.Commit, p.Prepare); err != nil {
				return err
			}
		}
		for _, p := range b.Pending {
			if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_pending (webhook, commit_pos, prepare_pos, stream, event_id, attempts, next_at, first_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (webhook, commit_pos, prepare_pos) DO UPDATE SET
				attempts = excluded.attempts, next_at = excluded.next_at, first_at = excluded.first_at`,
				b.Webhook, p.Position.Commit, p.Position.Prepare, p.Stream, p.EventID, p.Attempts, optMicros(p.NextAt), optMicros(p.FirstAt)); err != nil {
				return err
			}
		}
		for _, a := range b.Acks {
			if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_erasures (workspace, contact_id, webhook, event_id, notified_at, acknowledged_at)
				VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace, contact_id, webhook) DO UPDATE SET
				acknowledged_at = COALESCE(webhook_erasures.acknowledged_at, excluded.acknowledged_at)`,
				a.Workspace, a.Contact, b.Webhook, a.EventID, micros(a.NotifiedAt), optMicros(a.AcknowledgedAt)); err != nil {
				return err
			}
		}
		if b.Disable != "" {
			if _, err := tx.ExecContext(ctx, `UPDATE webhooks SET enabled = 0, disabled_reason = ?, disabled_at = ?, updated_at = ?, revision = revision + 1
				WHERE id = ?`, b.Disable, micros(b.At), micros(b.At), b.Webhook); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}

// attemptChunk is how many attempts one INSERT writes: a batch of
// deliveries writes hundreds, and a statement per row cost an eighth of a
// delivery's time.
const attemptChunk = 64

var attemptInsert = func() [attemptChunk + 1]string {
	var out [attemptChunk + 1]string
	for n := 1; n <= attemptChunk; n++ {
		out[n] = `INSERT INTO webhook_attempts (id, webhook, event_id, event_type, contact_id, commit_pos, prepare_pos,
			attempt, at, status, outcome, latency_us, error) VALUES ` + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), ", n), ", ")
	}
	return out
}()

func insertAttempts(ctx context.Context, tx *sql.Tx, webhook string, attempts []ledger.DeliveryAttempt) error {
	for len(attempts) > 0 {
		// Whole chunks, then the rest one by one: few distinct statements to cache.
		n := attemptChunk
		if len(attempts) < attemptChunk {
			n = 1
		}
		args := make([]any, 0, 13*n)
		for _, a := range attempts[:n] {
			args = append(args, a.ID, webhook, a.EventID, a.EventType, a.ContactID, a.Position.Commit, a.Position.Prepare, a.Attempt, micros(a.At),
				a.Status, a.Outcome, a.Latency.Microseconds(), a.Error)
		}
		if _, err := tx.ExecContext(ctx, attemptInsert[n], args...); err != nil {
			return fmt.Errorf("attempts of %s: %w", webhook, err)
		}
		attempts = attempts[n:]
	}
	return nil
}

// AddAttempts records attempts made outside delivery.
func (s *Store) AddAttempts(ctx context.Context, attempts []ledger.DeliveryAttempt) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, a := range attempts {
			if err := insertAttempts(ctx, tx, a.Webhook, []ledger.DeliveryAttempt{a}); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}

// ReplayWebhook moves a subscription's checkpoint back (never forward) and forgets its pending events after it.
func (s *Store) ReplayWebhook(ctx context.Context, workspace, id string, after kernel.Position, since time.Time) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhooks SET revision = revision + 1, updated_at = ? WHERE workspace = ? AND id = ?`, micros(nowUTC()), workspace, id)
		if err := affected(res, err); err != nil {
			return err
		}
		// Never forward: a replay after a position the checkpoint has not
		// reached yet leaves it where it is (nothing is skipped).
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_progress SET
			commit_pos = CASE WHEN (commit_pos, prepare_pos) > (?, ?) THEN ? ELSE commit_pos END,
			prepare_pos = CASE WHEN (commit_pos, prepare_pos) > (?, ?) THEN ? ELSE prepare_pos END,
			since = ?, generation = generation + 1, updated_at = ? WHERE webhook = ?`,
			after.Commit, after.Prepare, after.Commit, after.Commit, after.Prepare, after.Prepare, optMicros(since), micros(nowUTC()), id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM webhook_pending WHERE webhook = ? AND (commit_pos, prepare_pos) > (?, ?)`, id, after.Commit, after.Prepare)
		return err
	}, nil)
}

// DeliveryAttempts returns one page of a subscription's attempts, newest first.
func (s *Store) DeliveryAttempts(ctx context.Context, workspace, id string, q ledger.AttemptQuery) ([]ledger.DeliveryAttempt, error) {
	where, args := `a.webhook = ? AND w.workspace = ?`, []any{id, workspace}
	if q.Before != "" {
		where, args = where+` AND a.id < ?`, append(args, q.Before)
	}
	if q.EventID != "" {
		where, args = where+` AND a.event_id = ?`, append(args, q.EventID)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT a.id, a.event_id, a.event_type, a.contact_id, a.commit_pos, a.prepare_pos, a.attempt, a.at,
		a.status, a.outcome, a.latency_us, a.error FROM webhook_attempts a JOIN webhooks w ON w.id = a.webhook
		WHERE `+where+` ORDER BY a.id DESC LIMIT ?`, append(args, q.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("attempts of %s: %w", id, err)
	}
	defer rows.Close()
	var out []ledger.DeliveryAttempt
	for rows.Next() {
		a := ledger.DeliveryAttempt{Webhook: id}
		var at, latency int64
		if err := rows.Scan(&a.ID, &a.EventID, &a.EventType, &a.ContactID, &a.Position.Commit, &a.Position.Prepare, &a.Attempt, &at,
			&a.Status, &a.Outcome, &latency, &a.Error); err != nil {
			return nil, err
		}
		a.At, a.Latency = fromMicros(at), time.Duration(latency)*time.Microsecond
		out = append(out, a)
	}
	return out, rows.Err()
}

// ErasureAcks returns the erasure acknowledgments of a contact.
func (s *Store) ErasureAcks(ctx context.Context, workspace, contactID string) ([]ledger.ErasureAck, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT webhook, event_id, notified_at, acknowledged_at FROM webhook_erasures
		WHERE workspace = ? AND contact_id = ? ORDER BY webhook`, workspace, contactID)
	if err != nil {
		return nil, fmt.Errorf("erasure acknowledgments: %w", err)
	}
	defer rows.Close()
	var out []ledger.ErasureAck
	for rows.Next() {
		a := ledger.ErasureAck{Workspace: workspace, Contact: contactID}
		var notified int64
		var acked sql.NullInt64
		if err := rows.Scan(&a.Webhook, &a.EventID, &notified, &acked); err != nil {
			return nil, err
		}
		a.NotifiedAt, a.AcknowledgedAt = fromMicros(notified), fromOpt(acked)
		out = append(out, a)
	}
	return out, rows.Err()
}

// PruneAttempts deletes attempts made before a time.
func (s *Store) PruneAttempts(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webhook_attempts WHERE at < ?`, micros(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	}, nil)
	return int(n), err
}
