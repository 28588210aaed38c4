package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/internal/hooktest"
)

// TestMain lets the test binary serve as the ledger itself: a test that
// needs a real server process (to kill it with SIGKILL, or to run several)
// re-executes the binary with LEDGER_TEST_SERVE=1, and it runs `ledger
// serve` configured by the LEDGER_* environment.
func TestMain(m *testing.M) {
	// No test may connect anywhere but 127.0.0.1: every webhook dial, in
	// this process and in the servers it spawns, goes through this guard.
	main.DialGuard = hooktest.OnlyLoopback
	main.WebhookResolver = hooktest.LocalhostOnly{}
	if os.Getenv("LEDGER_TEST_SERVE") == "1" {
		os.Exit(serveChild())
	}
	code := m.Run()
	closeBrowser()
	if code == 0 {
		code = contractCoverage()
	}
	os.Exit(code)
}

// serveChild is the child process's `ledger serve`: the real wiring,
// configured by the LEDGER_* environment as serve is without flags, with
// its traffic checked against the description it serves. A violation is a
// log line with contractViolation, which fails the test that spawned it.
func serveChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := main.NewMain()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	m.Middleware = func(next http.Handler) http.Handler {
		contract.once.Do(func() { contract.checker, contract.err = servedChecker(next) })
		if contract.err != nil {
			log.Error(contractViolation, "violation", "the served description: "+contract.err.Error())
			return next
		}
		return contract.checker.Handler(next, func(v string) { log.Error(contractViolation, "violation", v) })
	}
	if err := m.Run(ctx); err != nil {
		m.Close()
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	<-ctx.Done()
	if err := m.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	return 0
}

// contractViolation is the message of a child server's log line that
// reports an exchange the description does not allow.
const contractViolation = "the answer breaks the API description"

// contractCoverage fails a full run of the package in which some operation
// of the description was never called: its answers were never checked
// against the description, so a drift there would go unseen.
func contractCoverage() int {
	if f := flag.Lookup("test.run"); f == nil || f.Value.String() != "" || contract.checker == nil {
		return 0
	}
	missing := contract.checker.Uncovered()
	if len(missing) == 0 {
		return 0
	}
	fmt.Fprintf(os.Stderr, "FAIL: no end-to-end test called these operations of the API description, so their answers were never checked against it: %s.\n"+
		"Call each from a test on a server started with start(t, store) (cmd/ledger/helpers_test.go).\n", strings.Join(missing, ", "))
	return 1
}

// process is a ledger server running as a child process.
type process struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	dir  string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
}

// spawn starts `ledger serve` as a child process on dataDir with the given
// environment (LEDGER_* settings), on a port it picks itself (read from its
// "serving" log line), and returns once it answers /healthz. The process is
// killed when the test ends.
func spawn(t *testing.T, dataDir string, env ...string) *process {
	t.Helper()
	p := &process{t: t, dir: dataDir, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), "LEDGER_TEST_SERVE=1", "LEDGER_ADDR=127.0.0.1:0", "LEDGER_DATA_DIR="+dataDir,
		"LEDGER_LOG_FORMAT=json", "LEDGER_LOG_LEVEL=info")
	p.cmd.Env = append(p.cmd.Env, env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				select {
				case addr <- line.Addr:
				default:
				}
			}
			p.mu.Lock()
			p.logs.Write(append(sc.Bytes(), '\n'))
			p.mu.Unlock()
		}
	}()
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		for _, line := range strings.Split(p.log(), "\n") {
			var l struct{ Msg, Violation string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == contractViolation {
				t.Errorf("%s: %s", contractViolation, l.Violation)
			}
		}
		if t.Failed() {
			lines := strings.Split(strings.TrimSpace(p.log()), "\n")
			t.Logf("the last lines of the log of the server on %s:\n%s", p.url, strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.done:
		t.Fatalf("server exited at start:\n%s", p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not listen within 30s:\n%s", p.log())
	}
	resp, err := http.Get(p.url + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("server does not answer /healthz (%v):\n%s", err, p.log())
	}
	resp.Body.Close()
	return p
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// count counts the log lines that contain s.
func (p *process) count(s string) int { return strings.Count(p.log(), s) }

// kill sends SIGKILL: no shutdown, no flush, as a crash or an OOM kill
// would; it returns once the process is gone.
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// client returns a ledgerUnderTest-like client of the process.
func (p *process) client(t *testing.T, token string) *remote {
	return &remote{t: t, base: p.url, token: token}
}

// ledger returns a client of the process with its admin token.
func (p *process) ledger(t *testing.T, store string) *ledgerUnderTest {
	return &ledgerUnderTest{t: t, store: store, admin: p.adminToken(), base: p.url}
}

// adminToken reads the admin token the process wrote on its first start.
func (p *process) adminToken() string {
	b, err := os.ReadFile(filepath.Join(p.dir, "admin.token"))
	if err != nil {
		p.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestSecondServerRefused starts a second `ledger serve` on a data
// directory a first one serves: it is refused with a message that says
// why and what to do, whether it runs in another process (the flock) or
// in this one, and the directory can be served again once the first
// server is gone, even after a crash.
func TestSecondServerRefused(t *testing.T) {
	dir := t.TempDir()
	first := spawn(t, dir)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	second.Env = append(os.Environ(), "LEDGER_TEST_SERVE=1", "LEDGER_ADDR=127.0.0.1:0", "LEDGER_DATA_DIR="+dir, "LEDGER_DATABASE_URL=")
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another ledger serve is serving the data directory") || !strings.Contains(string(out), "--data-dir") {
		t.Fatalf("a second server on %s: got %v\n%s\nwant a refusal that says why", dir, err, out)
	}

	m := main.NewMain()
	m.Config.DataDir, m.Config.Addr, m.Config.DatabaseURL, m.Config.KEKURL = dir, "127.0.0.1:0", "", ""
	m.Stdout, m.Stderr = io.Discard, io.Discard
	err = m.Run(context.Background())
	m.Close()
	if err == nil || !strings.Contains(err.Error(), "another ledger serve") {
		t.Fatalf("a second server in this process: got %v, want a refusal", err)
	}

	first.kill() // a crash: the system releases the lock
	spawn(t, dir)
}
