// Command ledger is the contact ledger: one binary that serves the API and
// runs the operator's tasks (replay, workspaces, tokens, ...).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/contactledger/ledger/adapters/httpapi"
	"github.com/contactledger/ledger/adapters/keyring"
	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := NewRootCommand(os.Stdout, os.Stderr).ExecuteContext(ctx); err != nil {
		os.Exit(1)
	}
}

// Config is the configuration of the ledger; every field has a flag and an
// environment variable (see the README's configuration table).
type Config struct {
	Addr      string
	DataDir   string
	LogLevel  string
	LogFormat string
	// KEKURL names the key service that wraps data keys; empty means the
	// local keyring in <data-dir>/keys.
	KEKURL string
	// RetentionInterval is how often the server sweeps trash for contacts
	// past their workspace's retention (a Go duration; 0 turns the sweeper off).
	RetentionInterval string
	// RestoreRate bounds how many contacts a restore job restores per second (0: no bound).
	RestoreRate string
}

// DefaultConfig returns the defaults, overridden by LEDGER_* environment variables.
func DefaultConfig() Config {
	return Config{
		Addr:      env("LEDGER_ADDR", ":8080"),
		DataDir:   env("LEDGER_DATA_DIR", "./data"),
		LogLevel:  env("LEDGER_LOG_LEVEL", "info"),
		LogFormat: env("LEDGER_LOG_FORMAT", "auto"),
		KEKURL:    env("LEDGER_KEK_URL", ""),

		RetentionInterval: env("LEDGER_RETENTION_INTERVAL", "1h"),
		RestoreRate:       env("LEDGER_RESTORE_RATE", "0"),
	}
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// Main is the wired program. Tests start it on :0 with a temporary data
// directory and drive it over real HTTP.
type Main struct {
	Config Config
	Stdout io.Writer
	Stderr io.Writer
	// Logger overrides the logger Config describes.
	Logger *slog.Logger
	// Now overrides the clock, for tests of time-based behaviour.
	Now func() time.Time

	// AdminToken is set when Run bootstrapped an empty data directory.
	AdminToken string

	log    *slog.Logger
	store  *sqlite.Store
	keys   *keyring.Keyring
	Svc    *ledger.Service
	Runner *projections.Runner
	API    *httpapi.Server

	ln     net.Listener
	srv    *http.Server
	runCtx context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main {
	return &Main{Config: DefaultConfig(), Stdout: os.Stdout, Stderr: os.Stderr}
}

func (m *Main) logger() (*slog.Logger, error) {
	if m.Logger != nil {
		return m.Logger, nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(m.Config.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", m.Config.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch m.Config.LogFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(m.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(m.Stderr, opts)), nil
	case "auto", "":
		if f, ok := m.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return slog.New(slog.NewTextHandler(m.Stderr, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(m.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: use auto, json or text", m.Config.LogFormat)
}

// Open opens the stores and the key service and wires the service, without
// serving. Commands that work on the data directory directly use it.
func (m *Main) Open(ctx context.Context) error {
	log, err := m.logger()
	if err != nil {
		return err
	}
	m.log = log
	if err := os.MkdirAll(m.Config.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.Chmod(m.Config.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if m.Config.KEKURL != "" {
		m.keys, err = keyring.OpenURL(ctx, m.Config.KEKURL)
	} else {
		m.keys, err = keyring.OpenLocal(filepath.Join(m.Config.DataDir, "keys"))
	}
	if err != nil {
		return err
	}
	if m.store, err = sqlite.Open(ctx, m.Config.DataDir, log); err != nil {
		return err
	}
	vault := ledger.NewVault(m.store, m.keys)
	m.Runner = projections.NewRunner(m.store, m.store, vault, log)
	m.Svc = ledger.New(ledger.Options{
		Events: m.store, Vault: vault, Directory: m.store, Views: m.store, Identities: m.store,
		Progress: m.Runner, Now: m.Now, Logger: log,
	})
	return nil
}

// StartProjections runs the projections in the background until Close, so
// that commands that read views (import, retention sweep) see current ones.
func (m *Main) StartProjections(ctx context.Context) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.runCtx, m.cancel = runCtx, cancel
	m.wg.Go(func() { _ = m.Runner.Run(runCtx) })
}

// Run opens everything, bootstraps an empty data directory, starts the
// projections, the retention sweeper and the restore-job runner, and serves
// the API. It returns once the server listens.
func (m *Main) Run(ctx context.Context) error {
	interval, err := time.ParseDuration(m.Config.RetentionInterval)
	if err != nil || interval < 0 {
		return fmt.Errorf("retention interval %q: use a duration such as 1h or 15m, or 0 to turn the sweeper off", m.Config.RetentionInterval)
	}
	restoreRate, err := strconv.ParseFloat(m.Config.RestoreRate, 64)
	if err != nil || restoreRate < 0 {
		return fmt.Errorf("restore rate %q: use contacts per second, or 0 for no bound", m.Config.RestoreRate)
	}
	if err := m.Open(ctx); err != nil {
		return err
	}
	if err := m.bootstrap(ctx); err != nil {
		return err
	}
	m.StartProjections(ctx)
	runCtx := m.runCtx
	if interval > 0 {
		m.wg.Go(func() { _ = m.Svc.RunRetention(runCtx, interval, nil) })
	}
	m.wg.Go(func() { _ = m.Svc.RunRestoreJobs(runCtx, ledger.JobOptions{Rate: restoreRate}) })

	spool := filepath.Join(m.Config.DataDir, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return fmt.Errorf("spool directory: %w", err)
	}
	m.API = httpapi.New(m.Svc, httpapi.Options{Logger: m.log, Ready: m.ready, SpoolDir: spool})
	ln, err := net.Listen("tcp", m.Config.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.Config.Addr, err)
	}
	m.ln = ln
	m.srv = &http.Server{
		Handler:           m.API,
		ReadHeaderTimeout: 10 * time.Second,
		// Imports stream large bodies and long answers: they extend these
		// deadlines themselves as they go.
		ReadTimeout:    2 * time.Minute,
		WriteTimeout:   5 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	m.wg.Go(func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("server stopped", "err", err)
		}
	})
	m.log.Info("serving", "addr", ln.Addr().String(), "data_dir", m.Config.DataDir)
	return nil
}

func (m *Main) ready(ctx context.Context) error {
	_, err := m.store.Head(ctx)
	return err
}

// URL returns the base URL of the running server.
func (m *Main) URL() string {
	addr := m.ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(addr.Port))
}

// bootstrap creates the default workspace and an admin token the first time
// the ledger starts on an empty data directory, and shows the token once.
func (m *Main) bootstrap(ctx context.Context) error {
	ws, err := m.store.Workspaces(ctx)
	if err != nil || len(ws) > 0 {
		return err
	}
	if _, err := m.Svc.CreateWorkspace(ctx, "default"); err != nil {
		return err
	}
	secret, _, err := m.Svc.CreateToken(ctx, "default", contact.RoleAdmin, "bootstrap admin")
	if err != nil {
		return err
	}
	path := filepath.Join(m.Config.DataDir, "admin.token")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	m.AdminToken = secret
	fmt.Fprintf(m.Stdout, "Created workspace \"default\" and an admin token. It is shown only now, and kept in %s:\n\n    %s\n\n", path, secret)
	return nil
}

// Close stops serving (letting requests in flight finish), stops the
// projections and closes the stores.
func (m *Main) Close() error {
	var errs []error
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, m.srv.Shutdown(ctx))
		cancel()
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.store != nil {
		errs = append(errs, m.store.Close())
	}
	if m.keys != nil {
		errs = append(errs, m.keys.Close())
	}
	return errors.Join(errs...)
}

// Store returns the embedded store (for tests and maintenance commands).
func (m *Main) Store() *sqlite.Store { return m.store }
