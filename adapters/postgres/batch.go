package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var (
	_ kernel.BatchAppender = (*Store)(nil)
	_ ledger.KeyedAppender = (*Store)(nil)
)

// batchSQL appends many streams in one statement: it looks up each
// stream's last version and workspace (one index probe each), stores the
// new keys of the streams that pass their check, and inserts the events of
// the streams that pass and whose key (if any) was stored. It answers one
// row per stream, in the batch's order, saying what became of it. %s is
// empty, or ON CONFLICT DO NOTHING when a race made the plain statement fail.
const batchSQL = `
WITH b AS (
	SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::timestamptz[])
		WITH ORDINALITY AS b(stream, expected, workspace, key_owner, key_ws, key_id, kek_id, wrapped, key_at, n)
),
cur AS (
	SELECT b.*, COALESCE(l.version, 0) AS v, COALESCE(l.workspace <> b.workspace, false) AS foreign_ws
	FROM b LEFT JOIN LATERAL (
		SELECT e.version, e.workspace FROM events e WHERE e.stream = b.stream ORDER BY e.version DESC LIMIT 1
	) l ON true
),
cl AS (
	SELECT * FROM unnest($24::text[], $25::text[], $26::text[], $27::text[], $28::timestamptz[]) AS cl(stream, kind, bidx, contact_id, at)
),
c AS (
	INSERT INTO identity_claims (workspace, kind, bidx, contact_id, claimed_at)
	SELECT cur.workspace, cl.kind, cl.bidx, cl.contact_id, cl.at FROM cl JOIN cur ON cur.stream = cl.stream
	WHERE cur.v = cur.expected AND NOT cur.foreign_ws
	ORDER BY cur.workspace, cl.kind, cl.bidx
	ON CONFLICT (workspace, kind, bidx) DO UPDATE SET contact_id = EXCLUDED.contact_id
		WHERE identity_claims.contact_id = EXCLUDED.contact_id
	RETURNING kind, bidx, contact_id
),
ctaken AS (
	SELECT DISTINCT cl.stream FROM cl
	WHERE NOT EXISTS (SELECT 1 FROM c WHERE c.kind = cl.kind AND c.bidx = cl.bidx AND c.contact_id = cl.contact_id)
),
k AS (
	INSERT INTO data_keys (owner, workspace, key_id, kek_id, wrapped, created_at)
	SELECT key_owner, key_ws, key_id, kek_id, wrapped, key_at FROM cur WHERE key_owner <> '' AND v = expected AND NOT foreign_ws
		AND stream NOT IN (SELECT stream FROM ctaken)
	ON CONFLICT DO NOTHING
	RETURNING owner
),
pass AS (
	SELECT stream, workspace FROM cur
	WHERE v = expected AND NOT foreign_ws AND (key_owner = '' OR key_owner IN (SELECT owner FROM k))
		AND stream NOT IN (SELECT stream FROM ctaken)
),
ins AS (
	INSERT INTO events (id, stream, version, type, time, workspace, actor, actor_role,
		correlation_id, causation_id, schema, data, sealed, prev_hash, hash)
	SELECT e.id, e.stream, e.version, e.type, e.time, pass.workspace, e.actor, e.actor_role, e.corr, e.caus, e.schema, e.data, e.sealed, e.prev_hash, e.hash
	FROM unnest($10::text[], $11::bytea[], $12::bigint[], $13::text[], $14::timestamptz[], $15::text[], $16::text[], $17::text[], $18::text[],
		$19::int[], $20::bytea[], $21::bytea[], $22::bytea[], $23::bytea[])
		WITH ORDINALITY AS e(stream, id, version, type, time, actor, actor_role, corr, caus, schema, data, sealed, prev_hash, hash, ord)
	JOIN pass ON pass.stream = e.stream
	ORDER BY e.ord
	%s
	RETURNING stream, tx, seq
)
SELECT cur.v, cur.foreign_ws, cur.stream IN (SELECT stream FROM ctaken) AS claim_taken,
	cur.key_owner <> '' AND cur.v = cur.expected AND NOT cur.foreign_ws AND cur.key_owner NOT IN (SELECT owner FROM k) AS key_taken,
	COALESCE(i.cnt, 0), COALESCE(i.tx, ''), COALESCE(i.seq, 0)
FROM cur LEFT JOIN (SELECT stream, count(*) AS cnt, min(tx::text) AS tx, max(seq) AS seq FROM ins GROUP BY stream) i ON i.stream = cur.stream
ORDER BY cur.n`

var (
	batchPlain    = fmt.Sprintf(batchSQL, "")
	batchRacing   = "/* racing */" + fmt.Sprintf(batchSQL, "ON CONFLICT DO NOTHING") // the comment names it in pg_stat_activity, whose text is cut at 1 kB
	errLostInsert = kernel.Errorf(kernel.ErrConcurrency, "another append to the stream won")
)

// item is one stream of a batch, with the new key stored with it, if any,
// and its contact's identity claims.
type item struct {
	kernel.StreamAppend
	key    ledger.KeyRow // Owner "" when the stream brings no key
	claims []ledger.IdentityClaim
}

// AppendMany appends to many streams in one statement and one commit (see
// kernel.BatchAppender).
func (s *Store) AppendMany(ctx context.Context, batch []kernel.StreamAppend) ([]kernel.AppendResult, error) {
	items := make([]item, len(batch))
	for i, a := range batch {
		items[i].StreamAppend = a
	}
	return s.appendItems(ctx, items)
}

// AppendWithKeys stores each new contact's key and appends its stream in
// one statement and one commit: a create is one commit, not two. A stream
// whose key owner already has a key fails with kernel.ErrAlreadyExists,
// and nothing of it is stored.
func (s *Store) AppendWithKeys(ctx context.Context, keys []ledger.KeyRow, batch []kernel.StreamAppend) ([]kernel.AppendResult, error) {
	if len(keys) != len(batch) {
		return nil, fmt.Errorf("append with keys: %d keys for %d streams", len(keys), len(batch))
	}
	items := make([]item, len(batch))
	for i, a := range batch {
		items[i] = item{StreamAppend: a, key: keys[i]}
	}
	return s.appendItems(ctx, items)
}

// AppendClaimed stores each new contact's key (keys may be nil) and each
// stream's identity claims with its append, in one statement and one
// commit: a batch's claims cost no round trip of their own. A claim
// another contact holds, committed or not, fails its stream with
// ledger.ErrClaimTaken (the unique key decides between racing batches, on
// every replica); what the statement claimed for a stream that then
// failed is taken back at once.
func (s *Store) AppendClaimed(ctx context.Context, keys []ledger.KeyRow, claims [][]ledger.IdentityClaim, batch []kernel.StreamAppend) ([]kernel.AppendResult, error) {
	if (keys != nil && len(keys) != len(batch)) || len(claims) != len(batch) {
		return nil, fmt.Errorf("append claimed: %d keys and %d claim lists for %d streams", len(keys), len(claims), len(batch))
	}
	items := make([]item, len(batch))
	for i, a := range batch {
		items[i] = item{StreamAppend: a, claims: claims[i]}
		if keys != nil {
			items[i].key = keys[i]
		}
	}
	return s.appendItems(ctx, items)
}

func (s *Store) appendItems(ctx context.Context, items []item) ([]kernel.AppendResult, error) {
	if len(items) == 1 {
		// One stream (a command's create): it shares a group commit.
		r, err := s.enqueue(ctx, items[0])
		if err != nil {
			return nil, err
		}
		return []kernel.AppendResult{r}, nil
	}
	batch := make([]kernel.StreamAppend, len(items))
	for i, it := range items {
		batch[i] = it.StreamAppend
	}
	errs, err := kernel.CheckBatch(batch)
	if err != nil {
		return nil, err
	}
	out := make([]kernel.AppendResult, len(items))
	var sound []int
	claimed := map[claimValue]bool{} // one statement may claim a value once
	for i, it := range items {
		if errs[i] == nil && slices.ContainsFunc(it.claims, func(c ledger.IdentityClaim) bool { return claimed[valueOf(c)] }) {
			errs[i] = ledger.ErrClaimTaken
		}
		if errs[i] != nil {
			out[i].Err = errs[i]
			continue
		}
		for _, c := range it.claims {
			claimed[valueOf(c)] = true
		}
		sound = append(sound, i)
	}
	if len(sound) == 0 {
		return out, nil
	}
	part := make([]item, len(sound))
	for j, i := range sound {
		part[j] = items[i]
	}
	res, err := s.commitItems(ctx, part)
	if err != nil {
		return nil, err
	}
	for j, i := range sound {
		out[i] = res[j]
	}
	return out, nil
}

// commitItems appends sound, distinct streams in one commit. Its rows go
// in the order of their streams, so two batches that race on streams wait
// for each other's keys in one order; should PostgreSQL still find a
// deadlock (it aborts one side, which wrote nothing), that batch runs
// again.
func (s *Store) commitItems(ctx context.Context, items []item) ([]kernel.AppendResult, error) {
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(items[a].Stream, items[b].Stream) })
	sorted := make([]item, len(items))
	for j, i := range order {
		sorted[j] = items[i]
	}
	for attempt := 1; ; attempt++ {
		res, err := s.commitSorted(ctx, sorted)
		if isDeadlock(err) && attempt < 5 && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return nil, err
		}
		out := make([]kernel.AppendResult, len(items))
		for j, i := range order {
			out[i] = res[j]
		}
		return out, nil
	}
}

// commitSorted appends items in one commit. The plain statement is one
// round trip in an implicit transaction; when a concurrent append races it
// to a (stream, version) the statement fails whole, and the batch runs
// again in a transaction that skips the rows that collide and takes back
// what it inserted of the streams that lost.
func (s *Store) commitSorted(ctx context.Context, items []item) ([]kernel.AppendResult, error) {
	args := batchArgs(items)
	rows, err := s.batches.Query(ctx, batchPlain, args...)
	var out []kernel.AppendResult
	if err == nil {
		out, err = scanBatch(rows, items)
	}
	if err == nil {
		s.appendedLocally()
		if err := dropClaims(ctx, s.batches, items, out); err != nil {
			return nil, fmt.Errorf("append to %d streams: taking back claims: %w", len(items), err)
		}
		return out, nil
	}
	if !isUnique(err) {
		return nil, fmt.Errorf("append to %d streams: %w", len(items), err)
	}
	err = pgx.BeginFunc(ctx, s.batches, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, batchRacing, args...)
		if err != nil {
			return err
		}
		if out, err = scanBatch(rows, items); err != nil {
			return err
		}
		var lost, keys []string
		for i, r := range out {
			if r.Err == errLostInsert {
				lost = append(lost, items[i].Stream)
				if items[i].key.Owner != "" {
					keys = append(keys, items[i].key.Owner)
				}
			}
		}
		if err := dropClaims(ctx, tx, items, out); err != nil {
			return err
		}
		if len(lost) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM events WHERE tx = pg_current_xact_id() AND stream = ANY($1)`, lost); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM data_keys WHERE owner = ANY($1)`, keys)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("append to %d streams: %w", len(items), err)
	}
	s.appendedLocally()
	return out, nil
}

// dropClaims takes back the claims the statement made for streams that
// failed (a key taken, a claim of another value taken, or an insert lost):
// each deleted only if it is the one made (its contact and time).
func dropClaims(ctx context.Context, q interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, items []item, out []kernel.AppendResult) error {
	var ws, kinds, bidxs, ids []string
	var ats []time.Time
	for i, it := range items {
		if out[i].Err == nil {
			continue
		}
		for _, c := range it.claims {
			ws, kinds, bidxs, ids, ats = append(ws, c.Workspace), append(kinds, c.Kind), append(bidxs, c.Index), append(ids, c.Contact.String()), append(ats, c.At)
		}
	}
	if len(ws) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, `DELETE FROM identity_claims ic USING unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS d(workspace, kind, bidx, contact_id, at)
		WHERE ic.workspace = d.workspace AND ic.kind = d.kind AND ic.bidx = d.bidx AND ic.contact_id = d.contact_id AND ic.claimed_at = d.at`,
		ws, kinds, bidxs, ids, ats)
	return err
}

// scanBatch reads the statement's answer: one row per stream, in order.
func scanBatch(rows pgx.Rows, items []item) ([]kernel.AppendResult, error) {
	defer rows.Close()
	out := make([]kernel.AppendResult, 0, len(items))
	for rows.Next() {
		var (
			v, cnt, seq                int64
			foreign, claimTaken, taken bool
			tx                         string
		)
		if err := rows.Scan(&v, &foreign, &claimTaken, &taken, &cnt, &tx, &seq); err != nil {
			return nil, err
		}
		it := items[len(out)]
		var r kernel.AppendResult
		switch {
		case foreign:
			r.Err = kernel.ErrNotFound
		case uint64(v) != it.Expected:
			r.Err = kernel.Errorf(kernel.ErrConcurrency, "stream is at version %d, not %d", v, it.Expected)
		case claimTaken:
			r.Err = ledger.ErrClaimTaken
		case taken:
			r.Err = kernel.Errorf(kernel.ErrAlreadyExists, "a key for this owner exists")
		case int(cnt) != len(it.Events):
			r.Err = errLostInsert
		default:
			p, err := position(tx, seq)
			if err != nil {
				return nil, err
			}
			r.Position = p
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) != len(items) {
		return nil, fmt.Errorf("append: %d answers for %d streams", len(out), len(items))
	}
	return out, nil
}

// batchArgs lays a batch out as the statement's arrays: one element per
// stream, then one per event.
func batchArgs(items []item) []any {
	n := 0
	for _, it := range items {
		n += len(it.Events)
	}
	var (
		streams, workspaces                         = make([]string, len(items)), make([]string, len(items))
		expected                                    = make([]int64, len(items))
		owners, keyWS, keyIDs, keks                 = make([]string, len(items)), make([]string, len(items)), make([]string, len(items)), make([]string, len(items))
		wrapped                                     = make([][]byte, len(items))
		keyAt                                       = make([]time.Time, len(items))
		evStreams, types, actors, roles, corrs, cau = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ids, data, sealed, prev, hash               = make([][]byte, n), make([][]byte, n), make([][]byte, n), make([][]byte, n), make([][]byte, n)
		versions                                    = make([]int64, n)
		schemas                                     = make([]int32, n)
		times                                       = make([]time.Time, n)
	)
	j := 0
	for i, it := range items {
		streams[i], expected[i], workspaces[i] = it.Stream, int64(it.Expected), it.Events[0].Workspace
		k := it.key
		owners[i], keyWS[i], keyIDs[i], keks[i], wrapped[i], keyAt[i] = k.Owner, k.Workspace, k.KeyID, k.KEKID, k.Wrapped, k.CreatedAt
		if k.Owner == "" {
			wrapped[i], keyAt[i] = []byte{}, time.Unix(0, 0).UTC()
		}
		for _, e := range it.Events {
			evStreams[j], ids[j], versions[j], types[j], times[j] = it.Stream, e.ID[:], int64(e.Version), e.Type, e.Time
			actors[j], roles[j], corrs[j], cau[j] = e.Actor.Principal, string(e.Actor.Role), e.CorrelationID, e.CausationID
			schemas[j], data[j], sealed[j], prev[j], hash[j] = int32(e.Schema), e.Data, e.Sealed, e.PrevHash, e.Hash
			j++
		}
	}
	var clStreams, clKinds, clBidx, clIDs []string
	var clAt []time.Time
	for _, it := range items {
		for _, c := range it.claims {
			clStreams, clKinds, clBidx, clIDs, clAt = append(clStreams, it.Stream), append(clKinds, c.Kind), append(clBidx, c.Index), append(clIDs, c.Contact.String()), append(clAt, c.At)
		}
	}
	return []any{streams, expected, workspaces, owners, keyWS, keyIDs, keks, wrapped, keyAt,
		evStreams, ids, versions, types, times, actors, roles, corrs, cau, schemas, data, sealed, prev, hash,
		clStreams, clKinds, clBidx, clIDs, clAt}
}

// Group commit. Appends of one stream each (commands over HTTP) queue,
// and up to `committers` of their callers at a time lead: a leader takes
// everything queued (up to maxGroup streams, no stream twice) and commits
// it as one batch, one statement and one WAL flush where each append alone
// would pay its own. A caller is answered only once its group has committed
// (synchronous_commit stays on), and the batch commits per stream, so one
// append's version conflict fails that append alone. A caller that finds a
// free slot leads at once, so a lone append waits for no other goroutine;
// a leader whose own append is done hands the lead to the oldest waiting
// caller.
const (
	maxGroup   = 256
	committers = 2
)

// queued is an append waiting for its group.
type queued struct {
	ctx  context.Context
	it   item
	res  kernel.AppendResult
	err  error // the store failed: the group was not committed
	done chan struct{}
	lead chan struct{} // the lead handed over to this caller
	// handed is set (under the queue's lock) when the lead is handed over.
	handed bool
}

// groupQueue is the queue of appends waiting for a group.
type groupQueue struct {
	mu      sync.Mutex
	waiting []*queued
	leaders int
	closed  bool
	pending sync.WaitGroup // appends queued and not yet answered
}

// stopCommitters refuses new appends and waits for the queued ones.
func (s *Store) stopCommitters() {
	s.group.mu.Lock()
	s.group.closed = true
	s.group.mu.Unlock()
	s.group.pending.Wait()
}

var errClosed = errors.New("store is closed")

// appendQueued appends one stream through group commit.
func (s *Store) appendQueued(ctx context.Context, it item) (kernel.Position, error) {
	r, err := s.enqueue(ctx, it)
	if err != nil {
		return kernel.Position{}, err
	}
	return r.Position, r.Err
}

// enqueue appends one stream through group commit: its result, or the
// failure of the store that kept it from being appended.
func (s *Store) enqueue(ctx context.Context, it item) (kernel.AppendResult, error) {
	if err := kernel.Validate(it.Stream, it.Expected, it.Events); err != nil {
		return kernel.AppendResult{Err: err}, nil
	}
	if err := ctx.Err(); err != nil {
		return kernel.AppendResult{}, err
	}
	q := &queued{ctx: ctx, it: it, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	g := &s.group
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return kernel.AppendResult{}, errClosed
	}
	g.pending.Add(1)
	g.waiting = append(g.waiting, q)
	leads := g.leaders < committers
	if leads {
		g.leaders++
	}
	g.mu.Unlock()
	if leads {
		s.lead(q)
	}
	// Once queued, the append happens or is skipped as a whole: wait for
	// its outcome even if ctx ends, so a committed append is never
	// reported as failed.
	for {
		select {
		case <-q.lead:
			s.lead(q)
			continue
		case <-q.done:
		}
		break
	}
	// A lead handed over just as another leader committed this append.
	select {
	case <-q.lead:
		s.lead(q)
	default:
	}
	return q.res, q.err
}

// lead commits groups until its own caller's append is done, then hands
// the lead to the oldest waiting caller, or gives it up when none waits.
func (s *Store) lead(own *queued) {
	g := &s.group
	for {
		g.mu.Lock()
		select {
		case <-own.done:
			i := slices.IndexFunc(g.waiting, func(q *queued) bool { return !q.handed })
			if i < 0 {
				g.leaders--
			} else {
				g.waiting[i].handed = true
				g.waiting[i].lead <- struct{}{}
			}
			g.mu.Unlock()
			return
		default:
		}
		group := takeGroup(&g.waiting)
		g.mu.Unlock()
		s.commitGroup(group)
	}
}

// claimValue is the value an identity claim names.
type claimValue struct{ workspace, kind, index string }

func valueOf(c ledger.IdentityClaim) claimValue { return claimValue{c.Workspace, c.Kind, c.Index} }

// takeGroup takes from waiting up to maxGroup appends of distinct
// streams and distinct identity claims, oldest first; the others stay, in
// order (a later claim of a value then finds the earlier one committed).
func takeGroup(waiting *[]*queued) []*queued {
	var group, rest []*queued
	streams := map[string]bool{}
	claimed := map[claimValue]bool{}
	for _, q := range *waiting {
		if streams[q.it.Stream] || len(group) == maxGroup ||
			slices.ContainsFunc(q.it.claims, func(c ledger.IdentityClaim) bool { return claimed[valueOf(c)] }) {
			rest = append(rest, q)
			continue
		}
		streams[q.it.Stream] = true
		for _, c := range q.it.claims {
			claimed[valueOf(c)] = true
		}
		group = append(group, q)
	}
	*waiting = rest
	return group
}

// commitGroup commits one group and answers each of its appends.
func (s *Store) commitGroup(group []*queued) {
	var (
		live  []*queued
		items []item
	)
	answer := func(q *queued) {
		close(q.done)
		s.group.pending.Done()
	}
	for _, q := range group {
		if err := q.ctx.Err(); err != nil {
			q.err = err
			answer(q)
			continue
		}
		live, items = append(live, q), append(items, q.it)
	}
	if len(live) == 0 {
		return
	}
	res, err := s.commitItems(context.Background(), items)
	for i, q := range live {
		if err != nil {
			q.err = err
		} else {
			q.res = res[i]
		}
		answer(q)
	}
}
