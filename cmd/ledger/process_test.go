package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
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
)

// TestMain lets the test binary serve as the ledger itself: a test that
// needs a real server process (to kill it with SIGKILL, or to run several)
// re-executes the binary with LEDGER_TEST_SERVE=1, and it runs `ledger
// serve` configured by the LEDGER_* environment.
func TestMain(m *testing.M) {
	if os.Getenv("LEDGER_TEST_SERVE") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		cmd := main.NewRootCommand(os.Stdout, os.Stderr)
		cmd.SetArgs([]string{"serve"})
		err := cmd.ExecuteContext(ctx)
		stop()
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	closeBrowser()
	os.Exit(code)
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
