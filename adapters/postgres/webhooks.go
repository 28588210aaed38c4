package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var _ ledger.WebhookStore = (*Store)(nil)

// optTime stores a time that may be absent.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func fromOptTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

const webhookColumns = `id, workspace, url, description, types, include_personal, enabled, disabled_reason, disabled_at,
	secrets, created_at, updated_at, created_by, revision`

func scanWebhook(row pgx.Row) (ledger.Webhook, error) {
	var (
		w              ledger.Webhook
		types, secrets []byte
		disabledAt     *time.Time
	)
	if err := row.Scan(&w.ID, &w.Workspace, &w.URL, &w.Description, &types, &w.IncludePersonal, &w.Enabled, &w.DisabledReason, &disabledAt,
		&secrets, &w.CreatedAt, &w.UpdatedAt, &w.CreatedBy, &w.Revision); err != nil {
		return ledger.Webhook{}, err
	}
	if err := json.Unmarshal(types, &w.Types); err != nil {
		return ledger.Webhook{}, fmt.Errorf("types of %s: %w", w.ID, err)
	}
	if err := json.Unmarshal(secrets, &w.Secrets); err != nil {
		return ledger.Webhook{}, fmt.Errorf("secrets of %s: %w", w.ID, err)
	}
	w.DisabledAt, w.CreatedAt, w.UpdatedAt = fromOptTime(disabledAt), w.CreatedAt.UTC(), w.UpdatedAt.UTC()
	return w, nil
}

func webhookJSON(w ledger.Webhook) (types, secrets []byte, err error) {
	if w.Types == nil {
		w.Types = []string{}
	}
	if types, err = json.Marshal(w.Types); err != nil {
		return nil, nil, err
	}
	secrets, err = json.Marshal(w.Secrets)
	return types, secrets, err
}

// CreateWebhook stores a new subscription and its checkpoint.
func (s *Store) CreateWebhook(ctx context.Context, w ledger.Webhook, start kernel.Position) error {
	types, secrets, err := webhookJSON(w)
	if err != nil {
		return err
	}
	c, p := posArgs(start)
	return s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO webhooks (`+webhookColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1)`,
			w.ID, w.Workspace, w.URL, w.Description, types, w.IncludePersonal, w.Enabled, w.DisabledReason, optTime(w.DisabledAt),
			secrets, w.CreatedAt, w.UpdatedAt, w.CreatedBy)
		if isUnique(err) {
			return kernel.Errorf(kernel.ErrAlreadyExists, "webhook %s exists", w.ID)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO webhook_progress (webhook, commit_pos, prepare_pos, generation, last_error, updated_at)
			VALUES ($1, $2::numeric, $3::numeric, 1, '', $4)`, w.ID, c, p, w.CreatedAt)
		return err
	})
}

// Webhook returns one subscription of a workspace.
func (s *Store) Webhook(ctx context.Context, workspace, id string) (ledger.Webhook, error) {
	w, err := scanWebhook(s.pool.QueryRow(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE workspace = $1 AND id = $2`, workspace, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.Webhook{}, kernel.ErrNotFound
	}
	return w, err
}

// Webhooks lists a workspace's subscriptions, or every one.
func (s *Store) Webhooks(ctx context.Context, workspace string) ([]ledger.Webhook, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE $1 = '' OR workspace = $1 ORDER BY id`, workspace)
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

func found(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return kernel.ErrNotFound
	}
	return nil
}

// UpdateWebhook replaces a subscription's settings and bumps its revision.
func (s *Store) UpdateWebhook(ctx context.Context, w ledger.Webhook) error {
	types, secrets, err := webhookJSON(w)
	if err != nil {
		return err
	}
	return found(s.pool.Exec(ctx, `UPDATE webhooks SET url = $1, description = $2, types = $3, include_personal = $4, enabled = $5,
		disabled_reason = $6, disabled_at = $7, secrets = $8, updated_at = $9, revision = revision + 1 WHERE workspace = $10 AND id = $11`,
		w.URL, w.Description, types, w.IncludePersonal, w.Enabled, w.DisabledReason, optTime(w.DisabledAt), secrets, w.UpdatedAt, w.Workspace, w.ID))
}

// DeleteWebhook deletes a subscription with its progress, pending events
// and attempts (ON DELETE CASCADE); its erasure acknowledgments stay.
func (s *Store) DeleteWebhook(ctx context.Context, workspace, id string) error {
	return found(s.pool.Exec(ctx, `DELETE FROM webhooks WHERE workspace = $1 AND id = $2`, workspace, id))
}

// WebhookProgress returns how far delivery to a subscription has got.
func (s *Store) WebhookProgress(ctx context.Context, id string) (ledger.WebhookProgress, error) {
	p := ledger.WebhookProgress{Webhook: id}
	var (
		c, pr                   string
		since, success, failing *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT commit_pos::text, prepare_pos::text, since, generation, last_success_at, failing_since, last_error, updated_at,
		(SELECT count(*) FROM webhook_pending WHERE webhook = $1) FROM webhook_progress WHERE webhook = $1`, id).
		Scan(&c, &pr, &since, &p.Generation, &success, &failing, &p.LastError, &p.UpdatedAt, &p.Pending)
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.WebhookProgress{}, kernel.ErrNotFound
	}
	if err != nil {
		return ledger.WebhookProgress{}, fmt.Errorf("progress of %s: %w", id, err)
	}
	if p.Position, err = parsePos(c, pr); err != nil {
		return ledger.WebhookProgress{}, err
	}
	p.Since, p.LastSuccessAt, p.FailingSince, p.UpdatedAt = fromOptTime(since), fromOptTime(success), fromOptTime(failing), p.UpdatedAt.UTC()
	return p, nil
}

// PendingDeliveries returns a subscription's pending events after a position, in log order.
func (s *Store) PendingDeliveries(ctx context.Context, id string, after kernel.Position, limit int) ([]ledger.PendingDelivery, error) {
	c, p := posArgs(after)
	rows, err := s.pool.Query(ctx, `SELECT commit_pos::text, prepare_pos::text, stream, event_id, attempts, next_at, first_at FROM webhook_pending
		WHERE webhook = $1 AND (commit_pos, prepare_pos) > ($2::numeric, $3::numeric) ORDER BY commit_pos, prepare_pos LIMIT $4`, id, c, p, limit)
	if err != nil {
		return nil, fmt.Errorf("pending deliveries of %s: %w", id, err)
	}
	defer rows.Close()
	var out []ledger.PendingDelivery
	for rows.Next() {
		d := ledger.PendingDelivery{Webhook: id}
		var c, p string
		var next, first *time.Time
		if err := rows.Scan(&c, &p, &d.Stream, &d.EventID, &d.Attempts, &next, &first); err != nil {
			return nil, err
		}
		if d.Position, err = parsePos(c, p); err != nil {
			return nil, err
		}
		d.NextAt, d.FirstAt = fromOptTime(next), fromOptTime(first)
		out = append(out, d)
	}
	return out, rows.Err()
}

// CommitDeliveries writes a deliverer's batch in one transaction: the
// checkpoint moves only from where the batch started (FOR UPDATE), and the
// attempts go in with one statement.
func (s *Store) CommitDeliveries(ctx context.Context, b ledger.DeliveryBatch) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		var c, p string
		var gen int64
		err := tx.QueryRow(ctx, `SELECT commit_pos::text, prepare_pos::text, generation FROM webhook_progress WHERE webhook = $1 FOR UPDATE`, b.Webhook).
			Scan(&c, &p, &gen)
		if errors.Is(err, pgx.ErrNoRows) {
			return kernel.ErrNotFound
		}
		if err != nil {
			return err
		}
		cur, err := parsePos(c, p)
		if err != nil {
			return err
		}
		if cur != b.From || gen != b.Generation {
			return kernel.Errorf(kernel.ErrConcurrency, "webhook %s is at %s (generation %d), not %s (%d)", b.Webhook, cur, gen, b.From, b.Generation)
		}
		batch := &pgx.Batch{}
		tc, tp := posArgs(b.To)
		batch.Queue(`UPDATE webhook_progress SET commit_pos = $2::numeric, prepare_pos = $3::numeric, updated_at = $4,
			since = CASE WHEN $5 THEN NULL ELSE since END,
			last_success_at = COALESCE($6, last_success_at),
			failing_since = CASE WHEN $7 THEN NULL ELSE COALESCE(failing_since, $8) END,
			last_error = CASE WHEN $9 = '' THEN last_error ELSE $9 END
			WHERE webhook = $1`,
			b.Webhook, tc, tp, b.At, b.ClearSince, optTime(b.LastSuccessAt), b.Healthy, optTime(b.FailingSince), b.LastError)
		queueAttempts(batch, b.Webhook, b.Attempts)
		for _, d := range b.Done {
			dc, dp := posArgs(d)
			batch.Queue(`DELETE FROM webhook_pending WHERE webhook = $1 AND commit_pos = $2::numeric AND prepare_pos = $3::numeric`, b.Webhook, dc, dp)
		}
		for _, d := range b.Pending {
			dc, dp := posArgs(d.Position)
			batch.Queue(`INSERT INTO webhook_pending (webhook, commit_pos, prepare_pos, stream, event_id, attempts, next_at, first_at)
				VALUES ($1, $2::numeric, $3::numeric, $4, $5, $6, $7, $8) ON CONFLICT (webhook, commit_pos, prepare_pos) DO UPDATE SET
				attempts = excluded.attempts, next_at = excluded.next_at, first_at = excluded.first_at`,
				b.Webhook, dc, dp, d.Stream, d.EventID, d.Attempts, optTime(d.NextAt), optTime(d.FirstAt))
		}
		for _, a := range b.Acks {
			batch.Queue(`INSERT INTO webhook_erasures (workspace, contact_id, webhook, event_id, notified_at, acknowledged_at)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace, contact_id, webhook) DO UPDATE SET
				acknowledged_at = COALESCE(webhook_erasures.acknowledged_at, excluded.acknowledged_at)`,
				a.Workspace, a.Contact, b.Webhook, a.EventID, a.NotifiedAt, optTime(a.AcknowledgedAt))
		}
		if b.Disable != "" {
			batch.Queue(`UPDATE webhooks SET enabled = false, disabled_reason = $2, disabled_at = $3, updated_at = $3, revision = revision + 1 WHERE id = $1`,
				b.Webhook, b.Disable, b.At)
		}
		return tx.SendBatch(ctx, batch).Close()
	})
}

// queueAttempts inserts attempts of one subscription with one statement.
func queueAttempts(batch *pgx.Batch, webhook string, as []ledger.DeliveryAttempt) {
	n := len(as)
	if n == 0 {
		return
	}
	ids, events, types, contacts := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	commits, prepares, outcomes, errs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	attempts, statuses, ats, latencies := make([]int32, n), make([]int32, n), make([]time.Time, n), make([]int64, n)
	for i, a := range as {
		ids[i], events[i], types[i], contacts[i], outcomes[i], errs[i] = a.ID, a.EventID, a.EventType, a.ContactID, a.Outcome, a.Error
		commits[i], prepares[i] = posArgs(a.Position)
		attempts[i], statuses[i], ats[i], latencies[i] = int32(a.Attempt), int32(a.Status), a.At, a.Latency.Microseconds()
	}
	batch.Queue(`INSERT INTO webhook_attempts (id, webhook, event_id, event_type, contact_id, commit_pos, prepare_pos, attempt, at, status, outcome, latency_us, error)
		SELECT id, $1, ev, typ, cid, cp::numeric, pp::numeric, att, at, st, oc, lat, er
		FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::timestamptz[], $10::int[], $11::text[], $12::bigint[], $13::text[])
		AS a(id, ev, typ, cid, cp, pp, att, at, st, oc, lat, er)`,
		webhook, ids, events, types, contacts, commits, prepares, attempts, ats, statuses, outcomes, latencies, errs)
}

// AddAttempts records attempts made outside delivery.
func (s *Store) AddAttempts(ctx context.Context, attempts []ledger.DeliveryAttempt) error {
	batch := &pgx.Batch{}
	for _, a := range attempts {
		queueAttempts(batch, a.Webhook, []ledger.DeliveryAttempt{a})
	}
	return s.pool.SendBatch(ctx, batch).Close()
}

// ReplayWebhook moves a subscription's checkpoint back (never forward) and forgets its pending events after it.
func (s *Store) ReplayWebhook(ctx context.Context, workspace, id string, after kernel.Position, since time.Time) error {
	c, p := posArgs(after)
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := found(tx.Exec(ctx, `UPDATE webhooks SET revision = revision + 1, updated_at = now() WHERE workspace = $1 AND id = $2`, workspace, id)); err != nil {
			return err
		}
		// Never forward: a replay after a position the checkpoint has not
		// reached yet leaves it where it is (nothing is skipped).
		if _, err := tx.Exec(ctx, `UPDATE webhook_progress SET
			commit_pos = CASE WHEN (commit_pos, prepare_pos) > ($2::numeric, $3::numeric) THEN $2::numeric ELSE commit_pos END,
			prepare_pos = CASE WHEN (commit_pos, prepare_pos) > ($2::numeric, $3::numeric) THEN $3::numeric ELSE prepare_pos END,
			since = $4, generation = generation + 1, updated_at = now() WHERE webhook = $1`, id, c, p, optTime(since)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM webhook_pending WHERE webhook = $1 AND (commit_pos, prepare_pos) > ($2::numeric, $3::numeric)`, id, c, p)
		return err
	})
}

// DeliveryAttempts returns one page of a subscription's attempts, newest first.
func (s *Store) DeliveryAttempts(ctx context.Context, workspace, id string, q ledger.AttemptQuery) ([]ledger.DeliveryAttempt, error) {
	rows, err := s.pool.Query(ctx, `SELECT a.id, a.event_id, a.event_type, a.contact_id, a.commit_pos::text, a.prepare_pos::text, a.attempt, a.at,
		a.status, a.outcome, a.latency_us, a.error FROM webhook_attempts a JOIN webhooks w ON w.id = a.webhook
		WHERE a.webhook = $1 AND w.workspace = $2 AND ($3 = '' OR a.id < $3) AND ($4 = '' OR a.event_id = $4)
		ORDER BY a.id DESC LIMIT $5`, id, workspace, q.Before, q.EventID, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("attempts of %s: %w", id, err)
	}
	defer rows.Close()
	var out []ledger.DeliveryAttempt
	for rows.Next() {
		a := ledger.DeliveryAttempt{Webhook: id}
		var c, p string
		var latency int64
		if err := rows.Scan(&a.ID, &a.EventID, &a.EventType, &a.ContactID, &c, &p, &a.Attempt, &a.At, &a.Status, &a.Outcome, &latency, &a.Error); err != nil {
			return nil, err
		}
		if a.Position, err = parsePos(c, p); err != nil {
			return nil, err
		}
		a.At, a.Latency = a.At.UTC(), time.Duration(latency)*time.Microsecond
		out = append(out, a)
	}
	return out, rows.Err()
}

// ErasureAcks returns the erasure acknowledgments of a contact.
func (s *Store) ErasureAcks(ctx context.Context, workspace, contactID string) ([]ledger.ErasureAck, error) {
	rows, err := s.pool.Query(ctx, `SELECT webhook, event_id, notified_at, acknowledged_at FROM webhook_erasures
		WHERE workspace = $1 AND contact_id = $2 ORDER BY webhook`, workspace, contactID)
	if err != nil {
		return nil, fmt.Errorf("erasure acknowledgments: %w", err)
	}
	defer rows.Close()
	var out []ledger.ErasureAck
	for rows.Next() {
		a := ledger.ErasureAck{Workspace: workspace, Contact: contactID}
		var acked *time.Time
		if err := rows.Scan(&a.Webhook, &a.EventID, &a.NotifiedAt, &acked); err != nil {
			return nil, err
		}
		a.NotifiedAt, a.AcknowledgedAt = a.NotifiedAt.UTC(), fromOptTime(acked)
		out = append(out, a)
	}
	return out, rows.Err()
}

// PruneAttempts deletes attempts made before a time.
func (s *Store) PruneAttempts(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_attempts WHERE at < $1`, before)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
