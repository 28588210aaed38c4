package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
	"github.com/jackc/pgx/v5"
)

// The figures of issue 16 (throughput): group commit, batched work on
// many contacts, imports, the identity index's catch-up.

// aloneAppender is PostgreSQL's append without group commit (a statement
// and a commit of its own), the path every append took before it.
type aloneAppender interface {
	AppendAlone(ctx context.Context, stream string, expected uint64, events []kernel.Record) (kernel.Position, error)
}

// groupCommitBench measures, on PostgreSQL, the port's 8-writer append
// (port8, measured by appendBench in the same run) beside the commit
// ceiling (single-row INSERT commits from 8 connections: what the
// database's commits allow, with nothing else done) and beside the same
// append without group commit (the path of every append before it).
func (b *bench) groupCommitBench(ctx context.Context, e *benchEnv, m Ledger, key shred.DataKey, port8 float64) error {
	alone, ok := m.Log().(aloneAppender)
	if !ok {
		return fmt.Errorf("the %s store has no append without group commit", e.store)
	}
	b.logf("%s: the commit ceiling: single-row INSERT commits from 8 connections, %s", e.store, b.opts.duration)
	conns := make([]*pgx.Conn, 8)
	for i := range conns {
		c, err := pgx.Connect(ctx, e.dbURL)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		conns[i] = c
	}
	if _, err := conns[0].Exec(ctx, `CREATE TABLE ceiling_events (LIKE events INCLUDING ALL)`); err != nil {
		return err
	}
	ceiling, err := measure(ctx, 8, b.opts.duration, func(ctx context.Context, w, i int) error {
		stream, recs, err := benchRecord(key, i)
		if err != nil {
			return err
		}
		r := recs[0]
		_, err = conns[w].Exec(ctx, `INSERT INTO ceiling_events (id, stream, version, type, time, workspace, actor, actor_role,
			correlation_id, causation_id, schema, data, sealed, prev_hash, hash) VALUES ($1,$2,1,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)`,
			r.ID[:], stream, r.Type, r.Time, r.Workspace, r.Actor.Principal, string(r.Actor.Role), r.CorrelationID, r.CausationID,
			r.Schema, r.Data, r.Sealed, r.PrevHash, r.Hash)
		return err
	})
	if err != nil {
		return err
	}
	b.logf("%s: the port's append without group commit, 8 writers, %s", e.store, b.opts.duration)
	ungrouped, err := measure(ctx, 8, b.opts.duration, func(ctx context.Context, w, i int) error {
		stream, recs, err := benchRecord(key, i)
		if err != nil {
			return err
		}
		_, err = alone.AppendAlone(ctx, stream, 0, recs)
		return err
	})
	if err != nil {
		return err
	}
	b.report(figure{Name: "append.commit-ceiling.8c", Store: e.store, Value: ceiling, Unit: "commits/s"}, 0, true, 0)
	b.report(figure{Name: "append.port.8w.vs-ceiling", Store: e.store, Value: port8, Unit: "appends/s",
		BaselineName: "single-row INSERT commits from 8 connections"}, ceiling, true, 0)
	b.report(figure{Name: "append.port.8w.group-commit", Store: e.store, Value: port8, Unit: "appends/s",
		BaselineName: "the same append without group commit", Target: "ratio>=1.5"}, ungrouped, true, 1.5)
	return nil
}

// projectionStatus is a projection's status as GET /v1/projections shows it.
type projectionStatus struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	LagEvents  int64  `json:"lag_events"`
	Checkpoint string `json:"checkpoint"`
	Head       string `json:"head"`
}

// projections returns the server's projections' statuses.
func (s *server) projections(ctx context.Context) ([]projectionStatus, error) {
	var st struct {
		Projections []projectionStatus `json:"projections"`
	}
	code, err := s.call(ctx, "GET", "/v1/projections", nil, &st)
	if err == nil && code != 200 {
		err = fmt.Errorf("projections: %d", code)
	}
	return st.Projections, err
}

// identityCatchUp waits for the identity index of a server started (at
// start) on a log it has not indexed, and reports its rate: the events of
// the log over the time it took to reach the head.
func (b *bench) identityCatchUp(ctx context.Context, s *server, store string, start time.Time, events int, rawInsert float64) error {
	b.logf("%s: the identity index catches up with %d events it has not indexed", store, events)
	for deadline := time.Now().Add(30 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		ps, err := s.projections(ctx)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Name == projections.Identities && p.LagEvents == 0 && p.Checkpoint == p.Head {
				secs := time.Since(start).Seconds()
				b.report(figure{Name: "identities.catch-up", Store: store, Value: float64(events) / secs, Unit: "events/s", Target: ">=20000/s",
					BaselineName: rawInsertName[store]}, rawInsert, true, 20000)
				return nil
			}
		}
	}
	return fmt.Errorf("the identity index did not catch up")
}

// importFile writes a CSV import of n new contacts (their emails made
// unique by tag) and returns its path.
func importFile(dir, tag string, n int) (string, error) {
	path := filepath.Join(dir, "import-"+tag+".csv")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("name,email,phone,job_title,external_id,tags\n")
	for i := range n {
		fmt.Fprintf(w, "Import Person %d,import%d.%s@example.com,+1 555 %07d,Analyst,%s-%d,imported\n", i, i, tag, i%10_000_000, tag, i)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// hugeFieldFile writes a CSV import whose second row has one quoted field
// of size bytes, and returns its path.
func hugeFieldFile(dir string, size int) (string, error) {
	path := filepath.Join(dir, "import-huge-field.csv")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("name,email\nAda,ada@example.com\n\"")
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for left := size; left > 0; left -= len(chunk) {
		w.Write(chunk[:min(len(chunk), left)])
	}
	w.WriteString("\",huge@example.com\n")
	if err := w.Flush(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// importHTTP posts an import file to the server and returns the created
// rows and how long the whole answer took.
func (s *server) importHTTP(ctx context.Context, path, source string) (int, int, time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	req, err := http.NewRequestWithContext(ctx, "POST", s.base+"/v1/contacts/import?source="+source, f)
	if err != nil {
		return 0, 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "text/csv")
	t0 := time.Now()
	// A million rows can take longer than the client's usual bound; the
	// server bounds an import itself (an hour).
	client := &http.Client{Transport: s.http.Transport}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Totals map[string]int `json:"totals"`
		Error  any            `json:"error"`
	}
	if resp.StatusCode == 200 {
		err = json.NewDecoder(resp.Body).Decode(&out)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	d := time.Since(t0)
	if err == nil && out.Error != nil {
		err = fmt.Errorf("import stopped: %v", out.Error)
	}
	return resp.StatusCode, out.Totals[ledger.RowCreated], d, err
}

// importCLI runs `ledger import` on an env as its own process and returns
// how long it took and its peak RSS in MiB.
func (b *bench) importCLI(ctx context.Context, e *benchEnv, path, source string) (time.Duration, float64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.CommandContext(ctx, exe, "import", path, "--workspace", benchWS, "--source", source, "--no-progress")
	cmd.Env = append(os.Environ(), "LEDGER_DATA_DIR="+e.dir, "LEDGER_DATABASE_URL="+e.dbURL, "LEDGER_LOG_LEVEL=error",
		"LEDGER_KEK_URL=", "LEDGER_EVENTSTORE_URL=")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	// Not the child's rusage: Go starts a child with vfork (CLONE_VM), and
	// Linux carries the parent's peak RSS into the child's maxrss at exec,
	// so it would report this bench process's memory. The child's own
	// VmHWM, read every millisecond while it runs, is the child's alone.
	exited, watched := make(chan struct{}), make(chan float64)
	go func() {
		peak := 0.0
		for {
			peak = max(peak, vmHWM(cmd.Process.Pid))
			select {
			case <-exited:
				watched <- peak
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	err = cmd.Wait()
	d := time.Since(t0)
	close(exited)
	rss := <-watched
	if err != nil {
		return d, rss, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return d, rss, nil
}

// importBench imports 100,000 new contacts (at scale 1) over HTTP and
// with the command line, then a 1,000,000-row file over HTTP for the
// server's peak memory, and a file with one 500 MiB field (refused while
// read) both ways, each on a fresh store.
func (b *bench) importBench(ctx context.Context, store string) error {
	n, big := b.opts.contacts/10, b.opts.contacts
	fresh := func() (*benchEnv, *server, error) {
		e, err := b.newEnv(ctx, store)
		if err != nil {
			return nil, nil, err
		}
		m, err := e.open(ctx)
		if err != nil {
			e.drop()
			return nil, nil, err
		}
		_, err = m.CreateWorkspace(ctx, benchWS)
		var token string
		if err == nil {
			token, _, err = m.CreateToken(ctx, benchWS, kernel.RoleAdmin, "bench")
		}
		m.Close()
		if err != nil {
			e.drop()
			return nil, nil, err
		}
		s, err := b.serve(ctx, e, token)
		if err != nil {
			e.drop()
			return nil, nil, err
		}
		return e, s, nil
	}

	e, s, err := fresh()
	if err != nil {
		return err
	}
	defer e.drop()
	httpFile, err := importFile(e.dir, "http", n)
	if err != nil {
		s.stop()
		return err
	}
	b.logf("%s: importing %d new contacts over HTTP", store, n)
	st, created, d, err := s.importHTTP(ctx, httpFile, "bench")
	s.stop()
	if err == nil && (st != 200 || created != n) {
		err = fmt.Errorf("import over HTTP: %d, %d of %d created", st, created, n)
	}
	if err != nil {
		return err
	}
	b.report(figure{Name: "import.http", Store: store, Value: float64(n) / d.Seconds(), Unit: fmt.Sprintf("rows/s, %d new contacts", n), Target: ">=20000/s", BaselineName: raw8Name}, b.raw8[store], true, 20000)
	cliFile, err := importFile(e.dir, "cli", n)
	if err != nil {
		return err
	}
	b.logf("%s: importing %d new contacts with the command line", store, n)
	d, _, err = b.importCLI(ctx, e, cliFile, "bench")
	if err != nil {
		return err
	}
	b.report(figure{Name: "import.cli", Store: store, Value: float64(n) / d.Seconds(), Unit: fmt.Sprintf("rows/s, %d new contacts", n), Target: ">=20000/s", BaselineName: raw8Name}, b.raw8[store], true, 20000)
	huge, err := hugeFieldFile(e.dir, 500<<20)
	if err != nil {
		return err
	}
	b.logf("%s: a file with one 500 MiB field, with the command line", store)
	if _, rss, err := b.importCLI(ctx, e, huge, "bench"); err == nil || !strings.Contains(err.Error(), "longer than") {
		return fmt.Errorf("the 500 MiB field was not refused as too long: %v", err)
	} else {
		b.report(figure{Name: "memory.import-cli.500mib-field", Store: store, Value: rss, Unit: "MiB peak RSS (refused)", Target: "<200MiB"}, 0, false, 200)
	}

	e2, s2, err := fresh()
	if err != nil {
		return err
	}
	defer e2.drop()
	defer s2.stop()
	b.logf("%s: a file with one 500 MiB field over HTTP", store)
	if st, _, _, err := s2.importHTTP(ctx, huge, "bench"); err != nil || st != 400 {
		return fmt.Errorf("the 500 MiB field over HTTP: %d %v, want 400", st, err)
	}
	b.report(figure{Name: "memory.import-http.500mib-field", Store: store, Value: s2.peakRSS(), Unit: "MiB peak RSS (refused)", Target: "<200MiB"}, 0, false, 200)
	os.Remove(huge)
	bigFile, err := importFile(e2.dir, "big", big)
	if err != nil {
		return err
	}
	b.logf("%s: importing %d new contacts over HTTP, for the server's memory", store, big)
	st, created, d, err = s2.importHTTP(ctx, bigFile, "bench")
	if err == nil && (st != 200 || created != big) {
		err = fmt.Errorf("import of %d rows over HTTP: %d, %d created", big, st, created)
	}
	if err != nil {
		return err
	}
	b.report(figure{Name: "import.http.large", Store: store, Value: float64(big) / d.Seconds(), Unit: fmt.Sprintf("rows/s, %d new contacts", big)}, 0, true, 0)
	b.report(figure{Name: "memory.import-http.large", Store: store, Value: s2.peakRSS(), Unit: fmt.Sprintf("MiB peak RSS, %d-row file", big), Target: "<200MiB"}, 0, false, 200)
	return nil
}
