package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
	"github.com/spf13/cobra"
)

// BackupFormat names the format of a backup directory's manifest.
const BackupFormat = "contact-ledger/backup/v1"

// backupManifest is backup.json: what a backup holds and when it was taken.
type backupManifest struct {
	Format    string    `json:"format"`
	CreatedAt time.Time `json:"created_at"`
	Store     string    `json:"store"`    // sqlite, or postgres (the database is dumped with pg_dump)
	LogHead   string    `json:"log_head"` // the log's head when the backup began
	Keys      string    `json:"keys"`     // local (in keys/), or the key service's URL scheme
}

func backupCommand(stdout io.Writer, withMain mainRunner) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "backup --out DIR",
		Short: "Back up the embedded store (a consistent online snapshot) and the local keys into DIR",
		Long: lines(
			"backup writes DIR (mode 0700, which must not exist yet): ledger.db, a consistent snapshot of the embedded",
			"store taken while servers run (SQLite VACUUM INTO), keys/ with the local key-encryption keys (0600), and",
			"backup.json. With --database-url it copies the local keys only: dump the database with pg_dump (see the",
			"README's Backups section). A backup holds the data keys of every contact alive when it was taken: after",
			"restoring one, run `ledger erasures reapply` with the receipts of every erasure since, kept outside the ledger."),
		Args: cobra.NoArgs,
		RunE: withMain(func(ctx context.Context, m *Main, _ []string) error {
			if out == "" {
				return errors.New("--out DIR is required")
			}
			if _, err := os.Stat(out); err == nil {
				return fmt.Errorf("%s exists: a backup goes into a new directory", out)
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			head, err := m.events.Head(ctx)
			if err != nil {
				return err
			}
			man := backupManifest{Format: BackupFormat, CreatedAt: time.Now().UTC(), Store: "sqlite", LogHead: head.String(), Keys: "local"}
			if m.Config.DatabaseURL != "" {
				man.Store = "postgres"
			} else {
				b, ok := m.state.(interface {
					Backup(ctx context.Context, path string) error
				})
				if !ok {
					return errors.New("this store cannot back itself up")
				}
				if err := b.Backup(ctx, filepath.Join(out, "ledger.db")); err != nil {
					return err
				}
			}
			if m.Config.KEKURL != "" {
				man.Keys, _, _ = strings.Cut(m.Config.KEKURL, ":")
			} else if err := copyPrivateDir(filepath.Join(m.Config.DataDir, "keys"), filepath.Join(out, "keys")); err != nil {
				return fmt.Errorf("keys: %w", err)
			}
			mb, _ := json.MarshalIndent(man, "", "  ")
			if err := os.WriteFile(filepath.Join(out, "backup.json"), append(mb, '\n'), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Backed up to %s (log head %s).\n", out, man.LogHead)
			if man.Store == "postgres" {
				fmt.Fprintln(stdout, "The database itself is not in it: dump it with pg_dump -Fc (README, Backups).")
			}
			fmt.Fprintln(stdout, "After restoring it, run `ledger erasures reapply` with the receipts of every erasure made since.")
			return nil
		}),
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to create for the backup")
	return cmd
}

// copyPrivateDir copies the regular files of src into a new directory dst,
// readable by the owner only.
func copyPrivateDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func erasuresCommand(stdout io.Writer, withMain mainRunner) *cobra.Command {
	var publicKey string
	reapply := &cobra.Command{
		Use:   "reapply <receipt-file>...",
		Short: "After a restore, erase again every contact whose signed erasure receipt is given",
		Long: lines(
			"reapply first verifies every receipt against the deployment's receipt-signing key (the one in the",
			"restored key vault, or --public-key) and refuses them all if one fails. Then, for each, it destroys the",
			"contact's data key again, appends the tombstone when the restored log lost it (so views, history and",
			"the identity index agree), strips the stored idempotent answers about the contact, waits for the",
			"projections to apply it, and reports what it did. Running it again changes nothing more."),
		Args: cobra.MinimumNArgs(1),
		RunE: withMain(func(ctx context.Context, m *Main, args []string) error {
			var trusted ed25519.PublicKey
			if publicKey != "" {
				var err error
				if trusted, err = readPublicKey(publicKey); err != nil {
					return err
				}
			} else {
				var err error
				if trusted, err = m.audit.ExistingSigningPublicKey(ctx); err != nil {
					return fmt.Errorf("%w: pass --public-key with the key the receipts were signed with", err)
				}
			}
			receipts := make([]ledger.Receipt, 0, len(args))
			var bad []string
			for _, file := range args {
				doc, err := os.ReadFile(file)
				if err == nil {
					var rc ledger.Receipt
					if rc, err = ledger.VerifyReceipt(doc, trusted); err == nil {
						receipts = append(receipts, rc)
						continue
					}
				}
				bad = append(bad, fmt.Sprintf("%s: %v", file, err))
			}
			if len(bad) > 0 {
				return fmt.Errorf("nothing was re-applied; these receipts are refused:\n  %s", strings.Join(bad, "\n  "))
			}
			m.StartProjections(ctx)
			corr := ledger.NewCorrelation("reapply")
			answers, _ := m.state.(ledger.IdempotencyStore)
			for _, rc := range receipts {
				res, err := m.audit.Reapply(ctx, rc, corr)
				if err != nil {
					return fmt.Errorf("contact %s: %w", rc.Contact, err)
				}
				tomb := rc.Erasure.EventID
				if res.EventID != "" {
					tomb = res.EventID
				}
				stripped := 0
				if answers != nil && res.Tombstone != "no workspace" {
					if stripped, err = answers.EraseIdempotency(ctx, rc.Workspace, res.Contact, tomb); err != nil {
						return fmt.Errorf("contact %s: %w", rc.Contact, err)
					}
				}
				fmt.Fprintf(stdout, "%s %s (%s): %s\n", rc.Workspace, rc.Contact, rc.Outcome, describeReapply(res, stripped))
			}
			head, err := m.events.Head(ctx)
			if err != nil {
				return err
			}
			for _, name := range projections.Names() {
				if err := m.Runner.WaitFor(ctx, name, head); err != nil {
					return fmt.Errorf("waiting for projection %s: %w", name, err)
				}
			}
			fmt.Fprintf(stdout, "Re-applied %d erasure receipt(s); every projection has applied them.\n", len(receipts))
			return nil
		}),
	}
	reapply.Flags().StringVar(&publicKey, "public-key", "", "the deployment's receipt-signing public key (JSON or PEM), when the restored key vault lacks it")
	erasures := &cobra.Command{Use: "erasures", Short: "Erasures: re-apply them after a restore from a backup"}
	erasures.AddCommand(reapply)
	return erasures
}

func describeReapply(r ledger.Reapplied, stripped int) string {
	var parts []string
	switch r.Tombstone {
	case "written":
		parts = append(parts, "tombstone re-written (event "+r.EventID+")")
	case "present":
		parts = append(parts, "tombstone present")
	case "no contact":
		parts = append(parts, "not in this log (created after the backup)")
	case "no workspace":
		parts = append(parts, "its workspace is not in this deployment")
	}
	if r.KeyDestroyed {
		parts = append(parts, "data key destroyed again")
	} else {
		parts = append(parts, "no data key left")
	}
	if stripped > 0 {
		parts = append(parts, fmt.Sprintf("%d stored answer(s) stripped", stripped))
	}
	return strings.Join(parts, "; ")
}
