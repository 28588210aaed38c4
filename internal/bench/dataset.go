package bench

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/jackc/pgx/v5"
)

// dataset is what the seed wrote.
type dataset struct {
	start   time.Time
	events  int
	active  []string // ids of some active contacts, for purges
	long    string   // the contact with 10,000 events
	emails  []string // emails of active contacts, for lookups
	trashed int
}

const benchWS = "bench"

// seed writes n contacts as commands would (a data key each, sealed and
// chained events), one in ten of them then moved to trash, and one contact
// of 10,000 events, with 32 writers.
func (b *bench) seed(ctx context.Context, m Ledger, n int) (dataset, error) {
	d := dataset{start: time.Now().UTC()}
	actor := kernel.Actor{Principal: "tok_bench", Role: kernel.RoleAdmin}
	meta := ledger.Meta{Actor: actor, CorrelationID: "bench-seed"}
	p := contact.DefaultPolicy()
	var (
		next, events, trashed atomic.Int64
		mu                    sync.Mutex
		wg                    sync.WaitGroup
		failed                atomic.Value
	)
	report := time.Now()
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil || ctx.Err() != nil {
					return
				}
				now := time.Now().UTC().Truncate(time.Microsecond)
				id := contact.NewID()
				email := fmt.Sprintf("bench%07d@example.com", i)
				tags := []string{fmt.Sprint("t", i%10)}
				inTrash := i%10 == 0
				if inTrash {
					tags = append(tags, "trashed")
				}
				c, err := contact.Create(id, benchWS, contact.Draft{Personal: contact.Personal{
					Name: fmt.Sprintf("Bench Person %07d", i), Email: email, Phone: fmt.Sprintf("+1 555 %07d", i),
					JobTitle: "Analyst", CustomFields: map[string]string{"tier": "gold"},
				}, Tags: tags}, actor, now)
				if err == nil && inTrash {
					err = c.Trash("", p, actor, now)
				}
				if err != nil {
					failed.Store(err)
					return
				}
				key, keyID, err := m.NewContactKey(ctx, benchWS, id, now)
				if err != nil {
					failed.Store(err)
					return
				}
				recs, err := ledger.SealChanges(ledger.ContactKey{Key: key, KeyID: keyID}, id.Stream(), benchWS, meta, 0, nil, c.Changes())
				if err == nil {
					_, err = m.Log().Append(ctx, id.Stream(), 0, recs)
				}
				if err != nil {
					failed.Store(err)
					return
				}
				events.Add(int64(len(recs)))
				if inTrash {
					trashed.Add(1)
				}
				mu.Lock()
				if !inTrash && len(d.active) < 20_000 {
					d.active = append(d.active, id.String())
				}
				if !inTrash && i%97 == 1 && len(d.emails) < 5_000 {
					d.emails = append(d.emails, email)
				}
				if time.Since(report) > 15*time.Second {
					report = time.Now()
					b.logf("  seeded %d of %d contacts", i, n)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return d, err
	}
	long, n2, err := b.seedLong(ctx, m, meta)
	if err != nil {
		return d, err
	}
	d.long, d.events, d.trashed = long, int(events.Load())+n2, int(trashed.Load())
	return d, nil
}

// seedLong writes a contact of 10,000 events: created, then updated.
func (b *bench) seedLong(ctx context.Context, m Ledger, meta ledger.Meta) (string, int, error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	id := contact.NewID()
	c, err := contact.Create(id, benchWS, contact.Draft{Personal: contact.Personal{Name: "Long History", Email: "long.history@example.com"}}, meta.Actor, now)
	if err != nil {
		return "", 0, err
	}
	for i := 1; i < 10_000; i++ {
		title := fmt.Sprintf("Title %d", i)
		if err := c.Update(contact.Patch{JobTitle: &title}, meta.Actor, now); err != nil {
			return "", 0, err
		}
	}
	key, keyID, err := m.NewContactKey(ctx, benchWS, id, now)
	if err != nil {
		return "", 0, err
	}
	recs, err := ledger.SealChanges(ledger.ContactKey{Key: key, KeyID: keyID}, id.Stream(), benchWS, meta, 0, nil, c.Changes())
	if err != nil {
		return "", 0, err
	}
	for from := 0; from < len(recs); from += 500 {
		to := min(from+500, len(recs))
		if _, err := m.Log().Append(ctx, id.Stream(), uint64(from), recs[from:to]); err != nil {
			return "", 0, err
		}
	}
	return id.String(), len(recs), nil
}

// rawBulkInsert inserts rows shaped like a view's into a scratch table as
// fast as the store allows (COPY on PostgreSQL, batched inserts in one
// writer on SQLite): the ceiling of a rebuild's writes. It returns rows/s.
func (b *bench) rawBulkInsert(ctx context.Context, e *benchEnv, rows int) (float64, error) {
	doc := `{"id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","workspace":"bench","state":"active","version":1,"created_at":"2026-11-25T10:00:00Z","updated_at":"2026-11-25T10:00:00Z","personal":{"name":"Bench Person 0000001","email":"bench0000001@example.com","phone":"+1 555 0000001","job_title":"Analyst","custom_fields":{"tier":"gold"}},"tags":["t1"],"lists":{},"links":[]}`
	now := time.Now().UTC()
	if e.store == "postgres" {
		conn, err := pgx.Connect(ctx, e.dbURL)
		if err != nil {
			return 0, err
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `CREATE TABLE raw_rows (LIKE rm_active INCLUDING ALL)`); err != nil {
			return 0, err
		}
		start := time.Now()
		i := 0
		src := pgx.CopyFromFunc(func() ([]any, error) {
			if i >= rows {
				return nil, nil
			}
			i++
			id := fmt.Sprintf("%026d", i)
			return []any{"bench", id, now, now, int64(1), "1", "1", "Bench Person", "bench@example.com", "+1 555 0000001", "+15550000001",
				"email-bidx-" + id, "phone-bidx-" + id, "", []string{"t1"}, nil, nil, doc}, nil
		})
		cols := []string{"workspace", "id", "sort_at", "created_at", "version", "pos_commit", "pos_prepare", "name", "email", "phone", "phone_norm",
			"email_bidx", "phone_bidx", "source", "tags", "trashed_at", "trashed_by", "doc"}
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"raw_rows"}, cols, src); err != nil {
			return 0, err
		}
		return float64(rows) / time.Since(start).Seconds(), nil
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, "raw-bulk.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE raw_rows (workspace TEXT NOT NULL, id TEXT NOT NULL, sort_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
		version INTEGER NOT NULL, pos_commit INTEGER NOT NULL, pos_prepare INTEGER NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL, phone TEXT NOT NULL,
		phone_norm TEXT NOT NULL, email_bidx TEXT NOT NULL, phone_bidx TEXT NOT NULL, source TEXT NOT NULL, tags TEXT NOT NULL, trashed_at INTEGER,
		trashed_by TEXT, doc TEXT NOT NULL, PRIMARY KEY (workspace, id)) WITHOUT ROWID;
		CREATE INDEX raw_rows_order ON raw_rows (workspace, sort_at DESC, id DESC);
		CREATE INDEX raw_rows_email ON raw_rows (workspace, email_bidx) WHERE email_bidx <> '';
		CREATE INDEX raw_rows_phone ON raw_rows (workspace, phone_bidx) WHERE phone_bidx <> ''`); err != nil {
		return 0, err
	}
	start := time.Now()
	for from := 0; from < rows; from += 10_000 {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return 0, err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO raw_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			tx.Rollback()
			return 0, err
		}
		for i := from; i < min(from+10_000, rows); i++ {
			id := fmt.Sprintf("%026d", i)
			if _, err := stmt.ExecContext(ctx, "bench", id, now.UnixMicro(), now.UnixMicro(), 1, 1, 1, "Bench Person", "bench@example.com",
				"+1 555 0000001", "+15550000001", "email-bidx-"+id, "phone-bidx-"+id, "", `["t1"]`, nil, nil, doc); err != nil {
				tx.Rollback()
				return 0, err
			}
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			return 0, err
		}
	}
	return float64(rows) / time.Since(start).Seconds(), nil
}

// latencies runs f n times and returns its p50 and p99 in milliseconds.
func latencies(n int, f func(i int) error) (float64, float64, error) {
	ds := make([]time.Duration, 0, n)
	for i := range n {
		t0 := time.Now()
		if err := f(i); err != nil {
			return 0, 0, err
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	ms := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))]) / float64(time.Millisecond) }
	return ms(0.50), ms(0.99), nil
}

// datasetBench seeds a workspace of a million contacts and measures the
// rebuild, queries, replays, a restore job, purges and the server's memory on it.
func (b *bench) datasetBench(ctx context.Context, store string) error {
	e, err := b.newEnv(ctx, store)
	if err != nil {
		return err
	}
	defer e.drop()
	m, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer m.Close()
	if _, err := m.CreateWorkspace(ctx, benchWS); err != nil {
		return err
	}
	token, _, err := m.CreateToken(ctx, benchWS, kernel.RoleAdmin, "bench")
	if err != nil {
		return err
	}
	n := b.opts.contacts
	b.logf("%s: seeding %d contacts (one in ten in trash) and a contact of 10,000 events", store, n)
	t0 := time.Now()
	d, err := b.seed(ctx, m, n)
	if err != nil {
		return err
	}
	b.logf("%s: seeded %d events in %s", store, d.events, time.Since(t0).Round(time.Second))

	b.logf("%s: rebuilding every view from the log", store)
	job, err := m.RunRebuild(ctx, "all", "requested", "bench", nil)
	if err != nil {
		return err
	}
	secs := job.FinishedAt.Sub(job.StartedAt).Seconds()
	if secs <= 0 {
		secs = time.Since(job.StartedAt).Seconds()
	}
	rebuildRate := float64(job.EventsDone) / secs
	b.logf("%s: rebuilt from %d events in %.1fs; now the raw bulk insert of as many rows", store, job.EventsDone, secs)
	base, err := b.rawBulkInsert(ctx, e, int(job.EventsDone))
	if err != nil {
		return err
	}
	b.report(figure{Name: "rebuild.all", Store: store, Value: rebuildRate, Unit: "events/s", BaselineName: rawInsertName[store], Target: "ratio>=0.50"},
		base, true, 0.50)
	m.Close()

	started := time.Now()
	s, err := b.serve(ctx, e, token)
	if err != nil {
		return err
	}
	defer s.stop()
	if err := b.identityCatchUp(ctx, s, store, started, d.events, base); err != nil {
		return err
	}
	b.logf("%s: waiting for the server's projections to reach the head of the log", store)
	if err := s.caughtUp(ctx); err != nil {
		return err
	}

	after := url.QueryEscape(d.start.Format(time.RFC3339Nano))
	p50, p99, err := latencies(1000, func(i int) error {
		st, err := s.call(ctx, "GET", "/v1/contacts?view=trash&limit=50&deleted_after="+after, nil, nil)
		if err == nil && st != 200 {
			err = fmt.Errorf("trash page: %d", st)
		}
		return err
	})
	if err != nil {
		return err
	}
	b.report(figure{Name: "query.trash-page.p50", Store: store, Value: p50, Unit: "ms"}, 0, false, 0)
	b.report(figure{Name: "query.trash-page.p99", Store: store, Value: p99, Unit: "ms", Target: "<5ms"}, 0, false, 5)
	if err := b.consoleBench(ctx, s, d, store); err != nil {
		return err
	}
	p50, p99, err = latencies(1000, func(i int) error {
		var page struct{ Items []any }
		st, err := s.call(ctx, "GET", "/v1/contacts?view=active&email="+d.emails[i%len(d.emails)], nil, &page)
		if err == nil && (st != 200 || len(page.Items) != 1) {
			err = fmt.Errorf("email lookup: %d, %d items", st, len(page.Items))
		}
		return err
	})
	if err != nil {
		return err
	}
	b.report(figure{Name: "query.email.p50", Store: store, Value: p50, Unit: "ms"}, 0, false, 0)
	b.report(figure{Name: "query.email.p99", Store: store, Value: p99, Unit: "ms", Target: "<5ms"}, 0, false, 5)

	p50, _, err = latencies(20, func(int) error {
		st, err := s.call(ctx, "GET", "/v1/contacts/"+d.long, nil, nil)
		if err == nil && st != 200 {
			err = fmt.Errorf("long contact: %d", st)
		}
		return err
	})
	if err != nil {
		return err
	}
	b.report(figure{Name: "replay.fold-10k-events", Store: store, Value: p50, Unit: "ms (p50, over HTTP)", Target: "<50ms"}, 0, false, 50)

	b.logf("%s: streaming the workspace log as NDJSON", store)
	lines, secs, err := s.ndjson(ctx)
	if err != nil {
		return err
	}
	b.report(figure{Name: "replay.workspace-ndjson", Store: store, Value: secs, Unit: fmt.Sprintf("s for %d events", lines)}, 0, false, 0)
	b.report(figure{Name: "replay.workspace-ndjson.rate", Store: store, Value: float64(lines) / secs, Unit: "events/s"}, 0, true, 0)

	b.logf("%s: a restore job for the %d contacts in trash", store, d.trashed)
	rate, err := s.restoreJob(ctx, d.trashed)
	if err != nil {
		return err
	}
	b.report(figure{Name: "restore-job", Store: store, Value: rate, Unit: fmt.Sprintf("contacts/s, %d contacts", d.trashed), Target: ">=10000/s", BaselineName: raw8Name}, b.raw8[store], true, 10000)

	purge := d.active[:min(10_000, len(d.active))]
	b.logf("%s: purging %d contacts", store, len(purge))
	rate, trashP50, err := s.purge(ctx, purge)
	if err != nil {
		return err
	}
	// A bulk trash of 1,000 contacts appends 1,000 events: its baseline is
	// the time the raw 8-writer append takes for as many.
	raw1000 := 0.0
	if b.raw8[store] > 0 {
		raw1000 = 1000 / b.raw8[store] * 1000
	}
	b.report(figure{Name: "bulk.trash-1000.p50", Store: store, Value: trashP50, Unit: fmt.Sprintf("ms, %d requests", (len(purge)+999)/1000), Target: "<300ms",
		BaselineName: "1,000 raw SQL appends, 8 writers"}, raw1000, false, 300)
	b.report(figure{Name: "purge", Store: store, Value: rate, Unit: "contacts/s", Target: ">=5000/s", BaselineName: raw8Name}, b.raw8[store], true, 5000)
	b.report(figure{Name: "memory.server", Store: store, Value: s.peakRSS(), Unit: fmt.Sprintf("MiB peak RSS, %d contacts", n), Target: "<300MiB"}, 0, false, 300)
	return nil
}

// caughtUp waits until every projection of the server has reached the head.
func (s *server) caughtUp(ctx context.Context) error {
	for deadline := time.Now().Add(30 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ps, err := s.projections(ctx)
		if err != nil {
			return err
		}
		done := len(ps) > 0
		for _, p := range ps {
			done = done && p.LagEvents == 0 && p.State == "live"
		}
		if done {
			return nil
		}
	}
	return fmt.Errorf("the projections did not catch up")
}

// ndjson streams the whole workspace log and counts its lines.
func (s *server) ndjson(ctx context.Context) (int, float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", s.base+"/v1/audit/events", nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	t0 := time.Now()
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, resp.Body)
		return 0, 0, fmt.Errorf("audit events: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
	}
	return n, time.Since(t0).Seconds(), sc.Err()
}

// restoreJob restores every trashed contact in one job and returns contacts/s.
func (s *server) restoreJob(ctx context.Context, want int) (float64, error) {
	var job struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		Total    int    `json:"total"`
		Restored int    `json:"restored"`
		Failed   int    `json:"failed"`
	}
	t0 := time.Now()
	st, err := s.call(ctx, "POST", "/v1/restore-jobs", map[string]any{"tag": "trashed"}, &job)
	if err != nil || st != 202 {
		return 0, fmt.Errorf("restore job: %d %v", st, err)
	}
	for job.State != "succeeded" {
		if job.State == "failed" || job.State == "cancelled" {
			return 0, fmt.Errorf("restore job %s", job.State)
		}
		time.Sleep(100 * time.Millisecond)
		if _, err := s.call(ctx, "GET", "/v1/restore-jobs/"+job.ID, nil, &job); err != nil {
			return 0, err
		}
	}
	if job.Restored != want || job.Failed != 0 {
		return 0, fmt.Errorf("restore job restored %d and failed %d of %d", job.Restored, job.Failed, want)
	}
	return float64(job.Restored) / time.Since(t0).Seconds(), nil
}

// purge trashes then purges ids in bulk requests of 1,000, and returns the
// purge rate in contacts/s and the p50 of the trash requests in ms.
func (s *server) purge(ctx context.Context, ids []string) (float64, float64, error) {
	bulk := func(action string, part []string) error {
		var out struct {
			Totals map[string]int `json:"totals"`
		}
		st, err := s.call(ctx, "POST", "/v1/contacts/bulk", map[string]any{"action": action, "ids": part, "expected_count": len(part)}, &out)
		if err != nil || st != 200 {
			return fmt.Errorf("bulk %s: %d %v", action, st, err)
		}
		if out.Totals["ok"] != len(part) {
			return fmt.Errorf("bulk %s: %v", action, out.Totals)
		}
		return nil
	}
	var trash []time.Duration
	for from := 0; from < len(ids); from += 1000 {
		t0 := time.Now()
		if err := bulk("trash", ids[from:min(from+1000, len(ids))]); err != nil {
			return 0, 0, err
		}
		trash = append(trash, time.Since(t0))
	}
	slices.Sort(trash)
	t0 := time.Now()
	for from := 0; from < len(ids); from += 1000 {
		if err := bulk("purge", ids[from:min(from+1000, len(ids))]); err != nil {
			return 0, 0, err
		}
	}
	return float64(len(ids)) / time.Since(t0).Seconds(), float64(trash[len(trash)/2]) / float64(time.Millisecond), nil
}
