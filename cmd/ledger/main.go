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
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/contactledger/ledger/adapters/console"
	"github.com/contactledger/ledger/adapters/httpapi"
	"github.com/contactledger/ledger/adapters/keyring"
	"github.com/contactledger/ledger/adapters/metrics"
	"github.com/contactledger/ledger/adapters/postgres"
	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/adapters/webhookhttp"
	"github.com/contactledger/ledger/delivery"
	"github.com/contactledger/ledger/domain/kernel"
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
	// PreviousKEKURLs name key services of earlier KEKs, still needed to
	// unwrap keys until `ledger keys rotate` has re-wrapped them.
	PreviousKEKURLs []string
	// DatabaseURL selects PostgreSQL for the log and the state store;
	// empty means the embedded store in the data directory.
	DatabaseURL string
	// EventStoreURL puts the log in EventStoreDB/KurrentDB (esdb://...);
	// the state store stays where DatabaseURL says.
	EventStoreURL string
	// RetentionInterval is how often the server sweeps trash for contacts
	// past their workspace's retention (a Go duration; 0 turns the sweeper off).
	RetentionInterval string
	// RestoreRate bounds how many contacts a restore job restores per second (0: no bound).
	RestoreRate string
	// ConsoleIdle and ConsoleMaxAge end a console session unused for that
	// long, and that long after sign-in (Go durations).
	ConsoleIdle, ConsoleMaxAge string
	// TrustForwardedProto takes X-Forwarded-Proto: https from a proxy as
	// TLS, for the console cookie's Secure flag.
	TrustForwardedProto bool
	// WebhookAllow names addresses that may receive webhooks although they
	// are not public: CIDR prefixes or host names, for internal receivers.
	WebhookAllow []string
	// WebhookAttemptRetention is how long delivery attempts are kept (a Go duration).
	WebhookAttemptRetention string
}

// DefaultConfig returns the defaults, overridden by LEDGER_* environment variables.
func DefaultConfig() Config {
	return Config{
		// This machine only by default: a first run on a laptop should not
		// serve its admin token's workspace to the network. The Docker
		// image listens on every interface (LEDGER_ADDR=:8080).
		Addr:          env("LEDGER_ADDR", "127.0.0.1:8080"),
		DataDir:       env("LEDGER_DATA_DIR", "./data"),
		LogLevel:      env("LEDGER_LOG_LEVEL", "info"),
		LogFormat:     env("LEDGER_LOG_FORMAT", "auto"),
		KEKURL:        env("LEDGER_KEK_URL", ""),
		DatabaseURL:   env("LEDGER_DATABASE_URL", ""),
		EventStoreURL: env("LEDGER_EVENTSTORE_URL", ""),
		// LEDGER_PREVIOUS_KEK_URL is named after its flag; the plural is
		// what earlier versions read, and is still read.
		PreviousKEKURLs: strings.FieldsFunc(env("LEDGER_PREVIOUS_KEK_URL", env("LEDGER_PREVIOUS_KEK_URLS", "")), func(r rune) bool { return r == ',' || r == ' ' }),

		RetentionInterval: env("LEDGER_RETENTION_INTERVAL", "1h"),
		RestoreRate:       env("LEDGER_RESTORE_RATE", "0"),

		ConsoleIdle:             env("LEDGER_CONSOLE_IDLE", "30m"),
		ConsoleMaxAge:           env("LEDGER_CONSOLE_MAX_AGE", "12h"),
		TrustForwardedProto:     env("LEDGER_TRUST_FORWARDED_PROTO", "") == "true",
		WebhookAllow:            strings.FieldsFunc(env("LEDGER_WEBHOOK_ALLOW", ""), func(r rune) bool { return r == ',' || r == ' ' }),
		WebhookAttemptRetention: env("LEDGER_WEBHOOK_ATTEMPT_RETENTION", "168h"),
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
	// JobScan overrides how often the restore-job runner looks for
	// admitted jobs besides being woken (2 s), for tests of its races.
	JobScan time.Duration
	// Webhook overrides the delivery runner's retry schedule, failing time
	// before disabling, batch and scan (tests); zero values keep the defaults.
	Webhook delivery.Options
	// StreamLifetime and StreamHeartbeat override the event stream's (tests).
	StreamLifetime, StreamHeartbeat time.Duration
	// Middleware, when set, wraps the API's handler: the end-to-end tests
	// check every request and answer against the served description with it.
	Middleware func(http.Handler) http.Handler

	// AdminToken is set when Run bootstrapped an empty data directory.
	AdminToken string

	log         *slog.Logger
	events      kernel.EventStore // the log: the state store, or EventStoreDB (eventstore.go)
	closeEvents func() error
	state       projections.StateStore
	keys        *keyring.Keyring
	Svc         *ledger.Service
	capabilities
	vault  *ledger.Vault
	Runner *projections.Runner
	API    *httpapi.Server
	// Console is the browser console, served at /console/.
	Console *console.Console
	// Metrics are served at /metrics.
	Metrics *metrics.Metrics
	// Deliveries delivers webhooks (while serving).
	Deliveries *delivery.Runner
	sender     *webhookhttp.Sender

	ln        net.Listener
	srv       *http.Server
	unlock    func() // releases the embedded data directory's serve lock
	closeOnce sync.Once
	closeErr  error
	runCtx    context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
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
		m.keys, err = keyring.OpenURL(ctx, m.Config.KEKURL, m.Config.PreviousKEKURLs...)
	} else {
		m.keys, err = keyring.OpenLocal(filepath.Join(m.Config.DataDir, "keys"))
	}
	if err != nil {
		return err
	}
	if err := m.openStores(ctx); err != nil {
		return err
	}
	if es, closeES, err := openEventStore(ctx, m.Config.EventStoreURL, log); err != nil {
		return err
	} else if es != nil {
		m.events, m.closeEvents = es, closeES
	}
	vault := ledger.NewVault(m.state, m.keys)
	m.vault = vault
	m.Runner = projections.NewRunner(m.events, m.state, vault, log)
	m.Runner.Leaser = m.lease()
	m.Metrics = metrics.New(m.Runner.Status)
	vault.Observe = m.Metrics.VaultOp
	m.Runner.Observe = m.Metrics.Rebuild
	if m.sender, err = webhookhttp.New(webhookhttp.Options{Allow: m.Config.WebhookAllow, Guard: DialGuard, Resolver: WebhookResolver}); err != nil {
		return err
	}
	// When the log and the key vault share a database, a create stores its
	// key and its first event in one commit.
	var keysWithLog ledger.KeyedAppender
	if ka, ok := m.events.(ledger.KeyedAppender); ok && any(m.events) == any(m.state) {
		keysWithLog = ka
	}
	m.Svc = ledger.New(ledger.Options{
		Events: m.events, Vault: vault, Directory: m.state, Views: m.state, Identities: m.state, Claims: m.state,
		Progress: m.Runner, Now: m.Now, Logger: log, Metrics: m.Metrics, KeysWithLog: keysWithLog, Sessions: m.state,
		Webhooks: m.state, Sender: m.sender,
	})
	m.capabilities = capabilitiesOf(m.Svc)
	m.Metrics.WatchWebhooks(m.webhooks.WebhookStatuses)
	return nil
}

// DialGuard, when set, is asked before every connection to a webhook
// receiver, with the address about to be dialled; an error refuses it.
// Tests set it to make sure nothing but 127.0.0.1 is ever dialled.
var DialGuard func(netip.AddrPort) error

// WebhookResolver, when set, resolves webhook hosts instead of the system's
// resolver. Tests set one that knows only localhost, so that no name ever
// leads to a lookup on the network.
var WebhookResolver webhookhttp.Resolver

// lease returns the store's lease for background tasks that one replica at
// a time should run, or nil when the store serves one process.
func (m *Main) lease() ledger.Lease {
	if l, ok := m.state.(ledger.Lease); ok {
		return l
	}
	return nil
}

// StartProjections runs the projections in the background until Close, so
// that commands that read views (import, retention sweep) see current ones.
func (m *Main) StartProjections(ctx context.Context) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.runCtx, m.cancel = runCtx, cancel
	m.wg.Go(func() { _ = m.Runner.Run(runCtx) })
}

// openStores opens PostgreSQL when a database URL is set, else the
// embedded store in the data directory.
func (m *Main) openStores(ctx context.Context) error {
	if m.Config.DatabaseURL != "" {
		pg, err := postgres.Open(ctx, m.Config.DatabaseURL, m.log)
		if err != nil {
			return err
		}
		m.events, m.state = pg, pg
		return nil
	}
	db, err := sqlite.Open(ctx, m.Config.DataDir, m.log)
	if err != nil {
		return err
	}
	m.events, m.state = db, db
	return nil
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
	times, err := m.consoleTimes()
	if err != nil {
		return err
	}
	attempts, err := time.ParseDuration(m.Config.WebhookAttemptRetention)
	if err != nil || attempts <= 0 {
		return fmt.Errorf("webhook attempt retention %q: use a duration such as 168h", m.Config.WebhookAttemptRetention)
	}
	if err := m.lockDataDir(); err != nil {
		return err
	}
	if err := m.Open(ctx); err != nil {
		return err
	}
	if err := m.bootstrap(ctx); err != nil {
		return err
	}
	// The receipt-signing key exists from the first start on, so every
	// backup holds it and `erasures reapply` can check receipts against it.
	if _, err := m.audit.SigningPublicKey(ctx); err != nil {
		return err
	}
	m.StartProjections(ctx)
	runCtx, lease := m.runCtx, m.lease()
	if interval > 0 {
		m.wg.Go(func() { _ = m.retention.RunRetention(runCtx, interval, lease) })
	}
	m.wg.Go(func() {
		_ = m.jobs.RunRestoreJobs(runCtx, ledger.JobOptions{Rate: restoreRate, Lease: lease, Scan: m.JobScan})
	})
	m.wg.Go(func() { m.expireIdempotency(runCtx) })
	m.wg.Go(func() { m.expireSessions(runCtx, times) })
	m.wg.Go(func() { _ = m.feed.WatchLog(runCtx) })
	wo := m.Webhook
	wo.Service, wo.Store, wo.Sender, wo.Logger, wo.Observe, wo.Now = m.Svc, m.state, m.sender, m.log, m.Metrics, m.Now
	if wo.AttemptRetention == 0 {
		wo.AttemptRetention = attempts
	}
	if l, ok := m.state.(delivery.Leases); ok {
		wo.Leases = l
	}
	m.Deliveries = delivery.New(wo)
	m.wg.Go(func() { _ = m.Deliveries.Run(runCtx) })

	spool := filepath.Join(m.Config.DataDir, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return fmt.Errorf("spool directory: %w", err)
	}
	m.API = httpapi.New(m.Svc, httpapi.Options{Logger: m.log, Ready: m.ready, Idempotency: m.state, SpoolDir: spool,
		Projections: m.Runner, Metrics: m.Metrics, StreamLifetime: m.StreamLifetime, StreamHeartbeat: m.StreamHeartbeat, Webhooks: m.Deliveries})
	ln, err := net.Listen("tcp", m.Config.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.Config.Addr, err)
	}
	m.ln = ln
	var api http.Handler = m.API
	if m.Middleware != nil {
		api = m.Middleware(api)
	}
	// The console is beside the API, not inside it: its HTML pages are no
	// operations of the JSON API, so the API's middleware never sees them.
	handler, err := m.withConsole(api, times)
	if err != nil {
		return err
	}
	m.srv = &http.Server{
		Handler:           handler,
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

// lockDataDir refuses to serve an embedded data directory another server
// serves: two processes would each run the projections, the retention
// sweeper and the job runner over one SQLite file, unsafely. PostgreSQL
// is made for several servers, so only the embedded store is locked.
func (m *Main) lockDataDir() error {
	if m.Config.DatabaseURL != "" {
		return nil
	}
	if err := os.MkdirAll(m.Config.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	unlock, ok, err := sqlite.LockServing(m.Config.DataDir)
	if err != nil {
		return fmt.Errorf("lock the data directory: %w", err)
	}
	if !ok {
		return fmt.Errorf("another ledger serve is serving the data directory %s (it holds %s): stop it first, or give this one its own --data-dir; "+
			"the embedded store is served by one process at a time (run several on PostgreSQL)", m.Config.DataDir, filepath.Join(m.Config.DataDir, sqlite.ServeLock))
	}
	m.unlock = unlock
	return nil
}

func (m *Main) ready(ctx context.Context) error {
	if err := m.state.Ping(ctx); err != nil {
		return err
	}
	_, err := m.events.Head(ctx)
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
	ws, err := m.state.Workspaces(ctx)
	if err != nil || len(ws) > 0 {
		return err
	}
	if _, err := m.access.CreateWorkspace(ctx, "default"); err != nil {
		if errors.Is(err, ledger.ErrWorkspaceExists) {
			return nil // another replica bootstrapped at the same time
		}
		return err
	}
	secret, _, err := m.access.CreateToken(ctx, "default", kernel.RoleAdmin, "bootstrap admin")
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
// projections and closes the stores. Closing twice does nothing more.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
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
	if m.closeEvents != nil {
		errs = append(errs, m.closeEvents())
	}
	if m.state != nil {
		errs = append(errs, m.state.Close())
	}
	if m.keys != nil {
		errs = append(errs, m.keys.Close())
	}
	if m.sender != nil {
		m.sender.Close()
	}
	if m.unlock != nil {
		m.unlock()
	}
	return errors.Join(errs...)
}

// State returns the state store (for tests and maintenance commands).
func (m *Main) State() any { return m.state }

// Events returns the log Main opened (for tests: they check what was
// written, beneath the service).
func (m *Main) Events() kernel.EventStore { return m.events }

// Vault returns the key vault Main wired into the service (for tests: they
// check that a key was destroyed, or make one).
func (m *Main) Vault() *ledger.Vault { return m.vault }

// RotationGrace is how long `keys rotate` waits before its last pass.
var RotationGrace = 2 * time.Second

// RotateKeys re-wraps every live data key under the active key-encryption
// key; with the local keyring it first makes a new one, and afterwards
// destroys the old ones.
func (m *Main) RotateKeys(ctx context.Context) error {
	rw := m.state
	local := m.Config.KEKURL == ""
	if local {
		if _, err := m.keys.AddLocal(); err != nil {
			return err
		}
	}
	bar := newMeter(m.Stderr, "re-wrapping data keys", "keys", 0)
	n, removed, err := m.access.RotateKeys(ctx, rw, func(done int) { bar.Set(int64(done)) })
	bar.Finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "Re-wrapped %d keys under %s.\n", n, m.keys.Active())
	if removed > 0 {
		fmt.Fprintf(m.Stdout, "Destroyed %d orphan key(s) left by creates that died before their first event.\n", removed)
	}
	if !local {
		fmt.Fprintln(m.Stdout, "Disable the previous key in the key service once every replica runs with the new --kek-url.")
		return nil
	}
	// A server may have wrapped a new key under the old KEK just before it
	// saw the new one: wait a moment, re-wrap again, and retire only once no
	// key is left under an old KEK.
	for attempt := 0; ; attempt++ {
		time.Sleep(RotationGrace)
		more, _, err := m.access.RotateKeys(ctx, rw, nil)
		if err != nil {
			return err
		}
		left, err := rw.KeysNotWrappedBy(ctx, m.keys.Active(), 1)
		if err != nil {
			return err
		}
		if more == 0 && len(left) == 0 {
			break
		}
		if attempt == 10 {
			return errors.New("keys keep appearing under an old key-encryption key; is a server running with another keyring?")
		}
	}
	retired, err := m.keys.Retire()
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "Retired and destroyed %d old key-encryption keys.\n", len(retired))
	return nil
}

// expireIdempotency deletes stored idempotent answers once they expire.
func (m *Main) expireIdempotency(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if n, err := m.state.ExpireIdempotency(ctx, time.Now()); err != nil && ctx.Err() == nil {
			m.log.Warn("expiring idempotency keys failed", "err", err)
		} else if n > 0 {
			m.log.Debug("expired idempotency keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
