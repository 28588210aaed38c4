package main_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
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
// needs a real server process (to kill it, or to run several) re-executes
// the binary with LEDGER_TEST_SERVE=1 and the command line in LEDGER_TEST_ARGS.
func TestMain(m *testing.M) {
	args, child := os.Getenv(childArgs), os.Getenv("LEDGER_TEST_SERVE") == "1"
	if child || args != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		cmd := main.NewRootCommand(os.Stdout, os.Stderr)
		if args != "" {
			cmd.SetArgs(strings.Split(args, "\x1f"))
		} else {
			cmd.SetArgs(strings.Fields(os.Getenv("LEDGER_TEST_ARGS")))
		}
		err := cmd.ExecuteContext(ctx)
		stop()
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
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

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// spawn starts `ledger serve` as a child process with the given
// environment (LEDGER_* settings) and waits until it answers /healthz.
func spawn(t *testing.T, dataDir string, env ...string) *process {
	t.Helper()
	port := freePort(t)
	p := &process{t: t, url: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dataDir, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0])
	p.cmd.Env = append(os.Environ(), "LEDGER_TEST_SERVE=1", "LEDGER_TEST_ARGS=serve",
		fmt.Sprintf("LEDGER_ADDR=127.0.0.1:%d", port), "LEDGER_DATA_DIR="+dataDir,
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
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.Write(append(sc.Bytes(), '\n'))
			p.mu.Unlock()
		}
	}()
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("server exited at start:\n%s", p.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up:\n%s", p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// count counts the log lines that contain s.
func (p *process) count(s string) int { return strings.Count(p.log(), s) }

// kill kills the process with SIGKILL and waits for it.
func (p *process) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// client returns a ledgerUnderTest-like client of the process.
func (p *process) client(t *testing.T, token string) *remote {
	return &remote{t: t, base: p.url, token: token}
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
