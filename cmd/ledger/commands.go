package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// NewRootCommand returns the ledger command with every subcommand.
func NewRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "ledger",
		Short:         "An event-sourced ledger of a workspace's contacts, with crypto-shredding",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	cfg := DefaultConfig()
	pf := root.PersistentFlags()
	pf.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory of the embedded store and local keys (LEDGER_DATA_DIR)")
	pf.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error (LEDGER_LOG_LEVEL)")
	pf.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "auto (text on a terminal, else JSON), json or text (LEDGER_LOG_FORMAT)")
	pf.StringVar(&cfg.KEKURL, "kek-url", cfg.KEKURL, "key service that wraps data keys, e.g. awskms://..., hashivault://...; empty: local keys in <data-dir>/keys (LEDGER_KEK_URL)")
	pf.StringSliceVar(&cfg.PreviousKEKURLs, "previous-kek-url", cfg.PreviousKEKURLs, "key service of an earlier KEK, needed until 'ledger keys rotate' has re-wrapped its keys; repeat it or separate URLs with commas (LEDGER_PREVIOUS_KEK_URL)")
	pf.StringVar(&cfg.DatabaseURL, "database-url", cfg.DatabaseURL, "PostgreSQL URL for the log and state (postgres://...); empty: the embedded store in the data directory (LEDGER_DATABASE_URL)")
	pf.StringVar(&cfg.EventStoreURL, "eventstore-url", cfg.EventStoreURL, "keep the log in EventStoreDB/KurrentDB, e.g. esdb://localhost:2113?tls=false; empty: the log stays in the state store (LEDGER_EVENTSTORE_URL)")

	newMain := func() *Main {
		m := NewMain()
		m.Config, m.Stdout, m.Stderr = cfg, stdout, stderr
		return m
	}
	// withMain opens the data directory for a command that works on it directly.
	var withMain mainRunner = func(run func(ctx context.Context, m *Main, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			m := newMain()
			if err := m.Open(cmd.Context()); err != nil {
				return err
			}
			defer m.Close()
			return run(cmd.Context(), m, args)
		}
	}

	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API (creates the default workspace and an admin token on first start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m := newMain()
			if err := m.Run(cmd.Context()); err != nil {
				m.Close()
				return err
			}
			<-cmd.Context().Done()
			m.log.Info("shutting down")
			return m.Close()
		},
	}
	serve.Flags().StringVar(&cfg.Addr, "addr", cfg.Addr, "address to listen on; :8080 for every interface (LEDGER_ADDR)")
	serve.Flags().StringVar(&cfg.RetentionInterval, "retention-interval", cfg.RetentionInterval, "how often to purge contacts past their workspace's retention in trash; 0 turns the sweeper off (LEDGER_RETENTION_INTERVAL)")
	serve.Flags().StringVar(&cfg.ConsoleIdle, "console-idle", cfg.ConsoleIdle, "ends a console session unused this long (LEDGER_CONSOLE_IDLE)")
	serve.Flags().StringVar(&cfg.ConsoleMaxAge, "console-max-age", cfg.ConsoleMaxAge, "ends a console session this long after sign-in (LEDGER_CONSOLE_MAX_AGE)")
	serve.Flags().BoolVar(&cfg.TrustForwardedProto, "trust-forwarded-proto", cfg.TrustForwardedProto, "take X-Forwarded-Proto: https from the proxy in front as TLS, so the console's cookie is Secure (LEDGER_TRUST_FORWARDED_PROTO=true)")
	serve.Flags().StringVar(&cfg.RestoreRate, "restore-rate", cfg.RestoreRate, "contacts a restore job restores per second at most; 0 for no bound (LEDGER_RESTORE_RATE)")
	serve.Flags().StringVar(&cfg.WebhookAttemptRetention, "webhook-attempt-retention", cfg.WebhookAttemptRetention, "how long webhook delivery attempts are kept (LEDGER_WEBHOOK_ATTEMPT_RETENTION)")
	pf.StringSliceVar(&cfg.WebhookAllow, "webhook-allow", cfg.WebhookAllow, "addresses that may receive webhooks although not public: CIDR prefixes or host names, for internal receivers (LEDGER_WEBHOOK_ALLOW, comma-separated)")

	var workspace string
	replay := replayCommand(stdout, stderr, withMain)
	audit := auditCommand(stdout, stderr, withMain)
	receipts := receiptsCommand(stdout, stderr, withMain)
	projectionsCmd := projectionsCommand(stdout, stderr, withMain)

	versionCmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			v := version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						v += "+" + s.Value
					}
				}
				v += " (" + bi.GoVersion + ")"
			}
			fmt.Fprintln(stdout, "ledger", v)
		},
	}

	workspaces := &cobra.Command{Use: "workspaces", Short: "Manage workspaces"}
	workspaces.AddCommand(&cobra.Command{
		Use:   "create <name>",
		Short: "Create a workspace with the default policy",
		Args:  cobra.ExactArgs(1),
		RunE: withMain(func(ctx context.Context, m *Main, args []string) error {
			w, err := m.access.CreateWorkspace(ctx, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Created workspace %q. Create its first token with: ledger tokens create --workspace %s --role admin\n", w.Name, w.Name)
			return nil
		}),
	}, &cobra.Command{
		Use:   "list",
		Short: "List workspaces",
		Args:  cobra.NoArgs,
		RunE: withMain(func(ctx context.Context, m *Main, _ []string) error {
			ws, err := m.access.Workspaces(ctx)
			if err != nil {
				return err
			}
			for _, w := range ws {
				fmt.Fprintln(stdout, w.Name)
			}
			return nil
		}),
	})

	var role, label string
	tokens := &cobra.Command{Use: "tokens", Short: "Manage API tokens"}
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token and print it once (only its hash is stored)",
		Args:  cobra.NoArgs,
		RunE: withMain(func(ctx context.Context, m *Main, _ []string) error {
			r, err := kernel.ParseRole(role)
			if err != nil {
				return err
			}
			secret, t, err := m.access.CreateToken(ctx, workspace, r, label)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "Created token %s (%s in %s). It is shown only now:\n", t.ID, t.Role, t.Workspace)
			fmt.Fprintln(stdout, secret)
			return nil
		}),
	}
	create.Flags().StringVar(&workspace, "workspace", "default", "workspace the token belongs to")
	create.Flags().StringVar(&role, "role", "member", "member, admin, auditor or operator")
	create.Flags().StringVar(&label, "label", "", "a note for whom or what the token is (no personal data)")
	var listWorkspace string
	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets): id, workspace, role, label, when created and revoked",
		Args:  cobra.NoArgs,
		RunE: withMain(func(ctx context.Context, m *Main, _ []string) error {
			return listTokens(ctx, m, stdout, listWorkspace, listJSON)
		}),
	}
	list.Flags().StringVar(&listWorkspace, "workspace", "", "list only this workspace's tokens (default: every workspace)")
	list.Flags().BoolVar(&listJSON, "json", false, "print one JSON object per token")
	tokens.AddCommand(create, list, &cobra.Command{
		Use:   "revoke <token-id | secret>",
		Short: "Revoke a token, named by its id (tok_...) or by its secret (lgr_..., such as a leaked one): requests with it fail from now on",
		Args:  cobra.ExactArgs(1),
		RunE: withMain(func(ctx context.Context, m *Main, args []string) error {
			t, err := m.access.FindToken(ctx, strings.TrimSpace(args[0]))
			if err != nil {
				return err
			}
			if !t.RevokedAt.IsZero() {
				fmt.Fprintf(stdout, "%s (%s in %s) was already revoked at %s.\n", t.ID, t.Role, t.Workspace, t.RevokedAt.Format(time.RFC3339))
				return nil
			}
			if err := m.access.RevokeToken(ctx, t.ID); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Revoked %s (%s in %s).\n", t.ID, t.Role, t.Workspace)
			return nil
		}),
	})

	keys := &cobra.Command{Use: "keys", Short: "Manage the key-encryption keys that wrap contacts' data keys"}
	keys.AddCommand(&cobra.Command{
		Use:   "rotate",
		Short: "Re-wrap every live data key under a new key-encryption key and retire the old ones",
		Long: lines(
			"With the local keyring, rotate creates a new KEK, re-wraps every live data key under it, and then",
			"destroys the old KEK files: any copy of a data key wrapped under them (a backup, a dead tuple, a",
			"WAL segment, including copies of keys shredded since) can no longer be unwrapped.",
			"With --kek-url, point --kek-url at the new key and --previous-kek-url at the old ones; rotate",
			"re-wraps everything under the new one, after which the old key can be disabled in the KMS."),
		Args: cobra.NoArgs,
		RunE: withMain(func(ctx context.Context, m *Main, _ []string) error {
			return m.RotateKeys(ctx)
		}),
	})
	var full bool
	maintenance := &cobra.Command{Use: "maintenance", Short: "Maintenance of the stores"}
	compact := &cobra.Command{
		Use:   "compact",
		Short: "Compact the tables that held personal data, so no copy of erased rows stays in their files",
		Long: lines(
			"Embedded store: VACUUM rewrites the database file and the WAL is truncated.",
			"PostgreSQL: VACUUM the views and the key vault; with --full, VACUUM FULL rewrites them (each is",
			"locked while it runs), then CHECKPOINT and a WAL switch let the old segments go (needs a superuser,",
			"or the pg_checkpoint role and pg_switch_wal granted). See the README's operating notes."),
		Args: cobra.NoArgs,
		RunE: withMain(func(ctx context.Context, m *Main, _ []string) error {
			v, ok := m.state.(interface {
				Vacuum(ctx context.Context, full bool) error
			})
			if !ok {
				return fmt.Errorf("this store has no compaction")
			}
			if err := v.Vacuum(ctx, full); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "Compacted.")
			if c, ok := m.state.(interface {
				ErasureCaveats(ctx context.Context) ([]string, error)
			}); ok && full {
				caveats, err := c.ErasureCaveats(ctx)
				if err != nil {
					return err
				}
				for _, w := range caveats {
					fmt.Fprintln(stdout, "Warning: "+w+".")
				}
			}
			return nil
		}),
	}
	compact.Flags().BoolVar(&full, "full", false, "PostgreSQL: rewrite the tables (VACUUM FULL) and let old WAL segments go")
	maintenance.AddCommand(compact)

	var sweepWorkspace string
	retention := &cobra.Command{Use: "retention", Short: "Retention of contacts in trash"}
	sweep := &cobra.Command{
		Use:   "sweep",
		Short: "Purge now every contact in trash longer than its workspace's retention (the server also does this on its own)",
		Args:  cobra.NoArgs,
		RunE: withMain(func(ctx context.Context, m *Main, _ []string) error {
			m.StartProjections(ctx)
			reports, err := m.retention.SweepRetention(ctx, sweepWorkspace)
			for _, r := range reports {
				switch {
				case r.RetentionDays == 0:
					fmt.Fprintf(stdout, "%s: retention is off\n", r.Workspace)
				default:
					fmt.Fprintf(stdout, "%s: purged %d contacts in trash for over %d days", r.Workspace, len(r.Purged), r.RetentionDays)
					if r.SkippedHeld > 0 {
						fmt.Fprintf(stdout, "; skipped %d under legal hold", r.SkippedHeld)
					}
					if r.WorkspaceHold != "" {
						fmt.Fprintf(stdout, "; skipped %d: the workspace is under legal hold %s", r.SkippedWorkspaceHold, r.WorkspaceHold)
					}
					if len(r.Failed) > 0 {
						fmt.Fprintf(stdout, "; %d failed (see the log)", len(r.Failed))
					}
					fmt.Fprintf(stdout, " (operation %s)\n", r.Operation)
				}
				for id, ferr := range r.Failed {
					m.log.Error("retention purge failed", "workspace", r.Workspace, "contact", id.String(), "err", ferr)
				}
			}
			if err != nil {
				return err
			}
			if sweepWorkspace != "" && len(reports) == 0 {
				return fmt.Errorf("workspace %q: %w", sweepWorkspace, kernel.ErrWorkspaceNotFound)
			}
			return nil
		}),
	}
	sweep.Flags().StringVar(&sweepWorkspace, "workspace", "", "sweep only this workspace (default: every workspace)")
	retention.AddCommand(sweep)

	root.AddCommand(serve, replay, audit, receipts, projectionsCmd, versionCmd, workspaces, tokens, keys, maintenance, retention, newImportCommand(stdout, stderr, withMain),
		backupCommand(stdout, withMain), erasuresCommand(stdout, withMain), webhooksCommand(stdout, stderr, withMain), restoreCommand(stdout, withMain))
	addBenchCommand(root, stdout, stderr)
	return root
}

// benchCommand makes the bench command in bin/ledger-bench (bench.go, tag
// bench) and is nil in the production binary.
var benchCommand func(stdout, stderr io.Writer) *cobra.Command

func addBenchCommand(root *cobra.Command, stdout, stderr io.Writer) {
	if benchCommand != nil {
		root.AddCommand(benchCommand(stdout, stderr))
	}
}

func lines(s ...string) string { return strings.Join(s, "\n") }

// listTokens prints the tokens of a workspace, or of every workspace, as a
// table or as JSON lines.
func listTokens(ctx context.Context, m *Main, stdout io.Writer, workspace string, asJSON bool) error {
	names := []string{workspace}
	if workspace == "" {
		ws, err := m.access.Workspaces(ctx)
		if err != nil {
			return err
		}
		names = names[:0]
		for _, w := range ws {
			names = append(names, w.Name)
		}
	} else if _, err := m.access.Workspace(ctx, workspace); err != nil {
		return fmt.Errorf("workspace %q: %w", workspace, err)
	}
	enc := json.NewEncoder(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if !asJSON {
		fmt.Fprintln(tw, "ID\tWORKSPACE\tROLE\tCREATED\tREVOKED\tLABEL")
	}
	for _, name := range names {
		list, err := m.access.Tokens(ctx, name)
		if err != nil {
			return err
		}
		for _, t := range list {
			out := wire.TokenOf(t)
			if asJSON {
				if err := enc.Encode(out); err != nil {
					return err
				}
				continue
			}
			revoked := "-"
			if out.RevokedAt != nil {
				revoked = out.RevokedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", out.ID, out.Workspace, out.Role, out.CreatedAt.Format(time.RFC3339), revoked, out.Label)
		}
	}
	if asJSON {
		return nil
	}
	return tw.Flush()
}
