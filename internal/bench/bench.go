package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/contactledger/ledger/ledger"
	"github.com/jackc/pgx/v5"
	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"
	_ "modernc.org/sqlite" // the raw SQLite baselines
)

// figure is one measurement of `ledger bench`, printed as a JSON line.
type figure struct {
	Name     string   `json:"name"`
	Store    string   `json:"store"`
	Value    float64  `json:"value"`
	Unit     string   `json:"unit"`
	Baseline *float64 `json:"baseline"`
	Ratio    *float64 `json:"ratio"`
	// BaselineName says what the baseline is: the physical ceiling the figure is measured beside.
	BaselineName string `json:"baseline_name,omitempty"`
	Target       string `json:"target,omitempty"`
	Met          *bool  `json:"met,omitempty"`
}

// benchOptions are the settings of a bench run.
type benchOptions struct {
	stores      []string
	databaseURL string
	contacts    int
	duration    time.Duration
	only        map[string]bool
}

type bench struct {
	opts    benchOptions
	out     io.Writer // JSON lines
	log     io.Writer // progress and the table
	figures []figure
	raw8    map[string]float64 // the raw 8-writer append rate of each store
	open    Opener
}

// NewCommand returns the bench command, which measures the ledger that
// open wires, and runs the ledger binary it is part of (os.Executable) for
// the figures of a separate server or import process.
func NewCommand(open Opener, stdout, stderr io.Writer) *cobra.Command {
	var (
		o          benchOptions
		stores     string
		only       string
		scale      float64
		appendSecs float64
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the ledger beside the physical limits of its stores (see BENCHMARKS.md)",
		Long: strings.Join([]string{
			"bench sets up its own data on each store and prints one JSON object per figure on stdout, each with",
			"its baseline (the raw speed of the same work on the same database, measured in the same run) and",
			"the ratio, then a table on stderr. PostgreSQL figures need --database-url (a superuser URL: bench",
			"creates and drops its own databases); `make bench` starts a throwaway server for them.",
			"",
			"Figures: append through the event-store port (1 and 8 writers, beside the commit ceiling of single-row",
			"INSERTs) and over HTTP (8 clients), imports of 100,000 new contacts (CLI and HTTP) and their peak",
			"memory, rebuild of every view, identity-index catch-up, query latency at 1,000,000 contacts, fold of a",
			"10,000-event stream, the workspace log as NDJSON, restore jobs, bulk trash latency, purges, the",
			"server's peak memory, and webhook deliveries per second to a local receiver and the lag from commit to",
			"receipt at 1,000 commands/s (beside raw POSTs to the same receiver).",
		}, "\n"),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.stores = strings.Split(stores, ",")
			o.contacts = int(1_000_000 * scale)
			o.duration = time.Duration(appendSecs * float64(time.Second))
			if only != "" {
				o.only = map[string]bool{}
				for _, n := range strings.Split(only, ",") {
					o.only[n] = true
				}
			}
			if o.databaseURL == "" {
				o.databaseURL = os.Getenv("LEDGER_TEST_DATABASE_URL")
			}
			b := &bench{opts: o, out: stdout, log: stderr, raw8: map[string]float64{}, open: open}
			err := b.run(cmd.Context())
			b.table()
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&stores, "stores", "sqlite,postgres", "stores to measure, comma-separated")
	f.StringVar(&o.databaseURL, "database-url", "", "PostgreSQL superuser URL (default LEDGER_TEST_DATABASE_URL)")
	f.Float64Var(&scale, "scale", 1, "fraction of the full sizes (1,000,000 contacts) to use, for a quick run")
	f.Float64Var(&appendSecs, "append-seconds", 10, "how long each append measurement runs")
	f.StringVar(&only, "only", "", "run only these groups: append, http, import, dataset (rebuild, identity catch-up, queries, replay, jobs, bulk, purge, memory), webhooks")
	return cmd
}

func (b *bench) want(group string) bool { return b.opts.only == nil || b.opts.only[group] }

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// raw8Name is the baseline of figures that append an event per contact or
// row: the raw SQL append with 8 writers measured in the same run (the
// append group; without it those figures have no baseline).
const raw8Name = "raw SQL append, 8 writers"

// rawInsertName names the raw bulk load each store's rebuild and identity
// catch-up are measured beside.
var rawInsertName = map[string]string{"postgres": "raw COPY of as many rows", "sqlite": "raw batched inserts of as many rows"}

// report records a figure, with its baseline and target when it has them.
func (b *bench) report(f figure, baseline float64, higherIsBetter bool, target float64) {
	if baseline > 0 {
		r := f.Value / baseline
		f.Baseline, f.Ratio = &baseline, &r
	}
	if target > 0 {
		var met bool
		switch {
		case f.Ratio != nil && f.Target != "" && strings.HasPrefix(f.Target, "ratio"):
			met = *f.Ratio >= target
		case higherIsBetter:
			met = f.Value >= target
		default:
			met = f.Value <= target
		}
		f.Met = &met
	}
	b.figures = append(b.figures, f)
	j, _ := json.Marshal(f)
	fmt.Fprintln(b.out, string(j))
}

func (b *bench) table() {
	if len(b.figures) == 0 {
		return
	}
	tw := tabwriter.NewWriter(b.log, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "figure\tstore\tvalue\tunit\tbaseline\tratio\ttarget\tmet\t")
	for _, f := range b.figures {
		base, ratio, met := "-", "-", "-"
		if f.Baseline != nil {
			base = fmt.Sprintf("%.0f", *f.Baseline)
			ratio = fmt.Sprintf("%.2f", *f.Ratio)
		}
		if f.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*f.Met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", f.Name, f.Store, num(f.Value), f.Unit, base, ratio, f.Target, met)
	}
	tw.Flush()
}

func num(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func (b *bench) run(ctx context.Context) error {
	for _, store := range b.opts.stores {
		if store == "postgres" && b.opts.databaseURL == "" {
			return errors.New("bench: PostgreSQL needs --database-url or LEDGER_TEST_DATABASE_URL (make bench starts a server)")
		}
		if store != "sqlite" && store != "postgres" {
			return fmt.Errorf("bench: unknown store %q", store)
		}
		if b.want("append") {
			if err := b.appendBench(ctx, store); err != nil {
				return fmt.Errorf("append on %s: %w", store, err)
			}
		}
		if b.want("http") {
			if err := b.httpBench(ctx, store); err != nil {
				return fmt.Errorf("http on %s: %w", store, err)
			}
		}
		if b.want("import") {
			if err := b.importBench(ctx, store); err != nil {
				return fmt.Errorf("import on %s: %w", store, err)
			}
		}
		if b.want("dataset") {
			if err := b.datasetBench(ctx, store); err != nil {
				return fmt.Errorf("dataset on %s: %w", store, err)
			}
		}
		if b.want("webhooks") {
			if err := b.webhookBench(ctx, store); err != nil {
				return fmt.Errorf("webhooks on %s: %w", store, err)
			}
		}
	}
	return nil
}

// benchEnv is one fresh set of stores: a data directory and, for PostgreSQL, a database.
type benchEnv struct {
	store  string
	dir    string
	dbURL  string
	drop   func()
	opener Opener
}

func (b *bench) newEnv(ctx context.Context, store string) (*benchEnv, error) {
	dir, err := os.MkdirTemp("", "ledger-bench-")
	if err != nil {
		return nil, err
	}
	e := &benchEnv{store: store, dir: dir, drop: func() { os.RemoveAll(dir) }, opener: b.open}
	if store != "postgres" {
		return e, nil
	}
	name := "ledger_bench_" + strings.ToLower(ulid.Make().String())
	admin, err := pgx.Connect(ctx, b.opts.databaseURL)
	if err != nil {
		return nil, err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, err
	}
	u, err := url.Parse(b.opts.databaseURL)
	if err != nil {
		return nil, err
	}
	u.Path = "/" + name
	e.dbURL = u.String()
	e.drop = func() {
		os.RemoveAll(dir)
		c, err := pgx.Connect(context.Background(), b.opts.databaseURL)
		if err == nil {
			c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	}
	return e, nil
}

// open wires the ledger on an env in this process, as the command line does.
func (e *benchEnv) open(ctx context.Context) (Ledger, error) {
	return e.opener(ctx, e.dir, e.dbURL)
}

// measure runs op from workers goroutines for d and returns operations
// per second. Operations run to completion (their context is not the
// timer's): a cancelled query would close its connection.
func measure(ctx context.Context, workers int, d time.Duration, op func(ctx context.Context, w, i int) error) (float64, error) {
	opCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		n    atomic.Int64
		wg   sync.WaitGroup
		once sync.Once
		ferr error
	)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				if err := op(opCtx, w, i); err != nil {
					if ctx.Err() == nil {
						once.Do(func() { ferr = err; cancel() })
					}
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds(), ferr
}

// benchRecord is the one event a port-level append writes: a sealed
// ContactCreated as a command would.
func benchRecord(key shred.DataKey, i int) (string, []kernel.Record, error) {
	id := contact.NewID()
	now := time.Now().UTC().Truncate(time.Microsecond)
	actor := kernel.Actor{Principal: "tok_bench", Role: kernel.RoleMember}
	c, err := contact.Create(id, "bench", contact.Draft{Personal: contact.Personal{
		Name: fmt.Sprintf("Bench Person %d", i), Email: fmt.Sprintf("bench%d@example.com", i), Phone: "+1 555 0100 123",
	}, Tags: []string{"bench"}}, actor, now)
	if err != nil {
		return "", nil, err
	}
	recs, err := ledger.SealChanges(ledger.ContactKey{Key: key, KeyID: "dk_bench"}, id.Stream(), "bench", ledger.Meta{Actor: actor, CorrelationID: "bench"}, 0, nil, c.Changes())
	return id.Stream(), recs, err
}

// appendBench measures appends through the event-store port with 1 and 8
// writers, each a new stream of one event, beside the raw SQL of the same
// append on the same database with the same durability.
func (b *bench) appendBench(ctx context.Context, store string) error {
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
	key, _ := shred.NewDataKey()
	raw, closeRaw, err := b.rawAppender(ctx, e)
	if err != nil {
		return err
	}
	defer closeRaw()
	for _, writers := range []int{1, 8} {
		b.logf("%s: append through the port, %d writer(s), %s", store, writers, b.opts.duration)
		port, err := measure(ctx, writers, b.opts.duration, func(ctx context.Context, w, i int) error {
			stream, recs, err := benchRecord(key, i)
			if err != nil {
				return err
			}
			_, err = m.Log().Append(ctx, stream, 0, recs)
			return err
		})
		if err != nil {
			return err
		}
		b.logf("%s: the same append in raw SQL, %d writer(s)", store, writers)
		base, err := measure(ctx, writers, b.opts.duration, func(ctx context.Context, w, i int) error {
			stream, recs, err := benchRecord(key, i)
			if err != nil {
				return err
			}
			return raw(ctx, w, stream, recs[0])
		})
		if err != nil {
			return err
		}
		name := fmt.Sprintf("append.port.%dw", writers)
		f := figure{Name: name, Store: store, Value: port, Unit: "appends/s", BaselineName: "raw SQL append, same durability"}
		if writers == 8 {
			f.Target = "ratio>=0.80"
			b.report(f, base, true, 0.80)
		} else {
			b.report(f, base, true, 0)
		}
		if writers == 8 {
			b.raw8[store] = base
			if store == "postgres" {
				if err := b.groupCommitBench(ctx, e, m, key, port); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// rawAppender returns the raw SQL of an append, one transaction each: a
// version check and an insert, on the same database with the same
// durability (SQLite: WAL with synchronous=FULL; PostgreSQL: its defaults,
// fsync and synchronous_commit on).
func (b *bench) rawAppender(ctx context.Context, e *benchEnv) (func(ctx context.Context, w int, stream string, r kernel.Record) error, func(), error) {
	if e.store == "postgres" {
		pool, err := pgx.Connect(ctx, e.dbURL)
		if err != nil {
			return nil, nil, err
		}
		if _, err := pool.Exec(ctx, `CREATE TABLE raw_events (LIKE events INCLUDING ALL)`); err != nil {
			return nil, nil, err
		}
		pool.Close(ctx)
		conns := make([]*pgx.Conn, 8)
		for i := range conns {
			if conns[i], err = pgx.Connect(ctx, e.dbURL); err != nil {
				return nil, nil, err
			}
		}
		closeAll := func() {
			for _, c := range conns {
				c.Close(context.Background())
			}
		}
		return func(ctx context.Context, w int, stream string, r kernel.Record) error {
			return pgx.BeginFunc(ctx, conns[w], func(tx pgx.Tx) error {
				var v int64
				if err := tx.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM raw_events WHERE stream = $1`, stream).Scan(&v); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO raw_events (id, stream, version, type, time, workspace, actor, actor_role,
					correlation_id, causation_id, schema, data, sealed, prev_hash, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)`,
					r.ID[:], stream, v+1, r.Type, r.Time, r.Workspace, r.Actor.Principal, string(r.Actor.Role), r.CorrelationID, r.CausationID,
					r.Schema, r.Data, r.Sealed, r.PrevHash, r.Hash)
				return err
			})
		}, closeAll, nil
	}
	path := filepath.Join(e.dir, "raw.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(60000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return nil, nil, err
	}
	db.SetMaxOpenConns(8)
	if _, err := db.ExecContext(ctx, `CREATE TABLE raw_events (position INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL UNIQUE,
		stream TEXT NOT NULL, version INTEGER NOT NULL, type TEXT NOT NULL, time INTEGER NOT NULL, workspace TEXT NOT NULL,
		actor TEXT NOT NULL, actor_role TEXT NOT NULL, correlation_id TEXT NOT NULL, causation_id TEXT NOT NULL, schema INTEGER NOT NULL,
		data BLOB NOT NULL, sealed BLOB, prev_hash BLOB, hash BLOB NOT NULL, UNIQUE (stream, version))`); err != nil {
		return nil, nil, err
	}
	return func(ctx context.Context, w int, stream string, r kernel.Record) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var v int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM raw_events WHERE stream = ?`, stream).Scan(&v); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO raw_events (id, stream, version, type, time, workspace, actor, actor_role,
			correlation_id, causation_id, schema, data, sealed, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			r.ID[:], stream, v+1, r.Type, r.Time.UnixMicro(), r.Workspace, r.Actor.Principal, string(r.Actor.Role), r.CorrelationID,
			r.CausationID, r.Schema, r.Data, r.Sealed, r.PrevHash, r.Hash); err != nil {
			return err
		}
		return tx.Commit()
	}, func() { db.Close() }, nil
}

// server is a `ledger serve` child process, so its memory is its own.
type server struct {
	cmd   *exec.Cmd
	base  string
	token string
	http  *http.Client
	done  chan struct{}
}

func (b *bench) serve(ctx context.Context, e *benchEnv, token string, env ...string) (*server, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(exe, "serve")
	cmd.Env = append(os.Environ(), "LEDGER_ADDR="+addr, "LEDGER_DATA_DIR="+e.dir, "LEDGER_DATABASE_URL="+e.dbURL,
		"LEDGER_LOG_LEVEL=error", "LEDGER_LOG_FORMAT=json", "LEDGER_RETENTION_INTERVAL=0", "LEDGER_KEK_URL=", "LEDGER_EVENTSTORE_URL=")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = io.Discard, b.log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, base: "http://" + addr, done: make(chan struct{}),
		http: &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	go func() { cmd.Wait(); close(s.done) }()
	for deadline := time.Now().Add(5 * time.Minute); ; {
		resp, err := http.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-s.done:
			return nil, errors.New("the server exited at start")
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("the server did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.token = token
	if s.token == "" {
		t, err := os.ReadFile(filepath.Join(e.dir, "admin.token"))
		if err != nil {
			s.stop()
			return nil, err
		}
		s.token = strings.TrimSpace(string(t))
	}
	return s, nil
}

// peakRSS returns the server's peak resident memory, in MiB.
func (s *server) peakRSS() float64 { return vmHWM(s.cmd.Process.Pid) }

// vmHWM returns the peak RSS of process pid so far in MiB, or 0 once it
// has exited.
func vmHWM(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func (s *server) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// call sends one request and decodes a JSON answer into out (if not nil).
func (s *server) call(ctx context.Context, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, err
		}
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, nil
}

// httpBench measures commands over loopback: 8 clients, each creating a
// contact and trashing it, beside the raw 8-writer append of the same store.
func (b *bench) httpBench(ctx context.Context, store string) error {
	e, err := b.newEnv(ctx, store)
	if err != nil {
		return err
	}
	defer e.drop()
	s, err := b.serve(ctx, e, "")
	if err != nil {
		return err
	}
	defer s.stop()
	b.logf("%s: create and trash over HTTP, 8 clients, %s", store, b.opts.duration)
	rate, err := measure(ctx, 8, b.opts.duration, func(ctx context.Context, w, i int) error {
		var c struct{ ID string }
		st, err := s.call(ctx, "POST", "/v1/contacts", map[string]any{"name": fmt.Sprintf("Http Person %d-%d", w, i), "email": fmt.Sprintf("http%d.%d@example.com", w, i)}, &c)
		if err != nil || st != 201 {
			return fmt.Errorf("create: %d %v", st, err)
		}
		if st, err := s.call(ctx, "POST", "/v1/contacts/"+c.ID+"/trash", nil, nil); err != nil || st != 200 {
			return fmt.Errorf("trash: %d %v", st, err)
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return err
	}
	b.report(figure{Name: "append.http.8c", Store: store, Value: rate * 2, Unit: "commands/s", BaselineName: raw8Name, Target: "ratio>=0.50"},
		b.raw8[store], true, 0.50)
	b.report(figure{Name: "memory.http", Store: store, Value: s.peakRSS(), Unit: "MiB peak RSS"}, 0, false, 0)
	return nil
}
