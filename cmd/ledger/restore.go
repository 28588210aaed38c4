package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/spf13/cobra"
)

// restoreActor is who command-line restores are recorded as: whoever runs
// the command holds the deployment's keys, an admin of every workspace.
var restoreActor = kernel.Actor{Principal: "cli:restore", Role: kernel.RoleAdmin}

// restoreCommand returns `ledger restore`: a restore job (as POST
// /v1/restore-jobs makes), run to its end by this process, typically to
// undo one operation: "restore everything this bulk request trashed".
func restoreCommand(stdout io.Writer, withMain mainRunner) *cobra.Command {
	var (
		workspace, operation, deletedBy, after, before, reason, onConflict string
		dryRun, asJSON                                                     bool
	)
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore every trashed contact that one operation (or a token between two times) moved to trash",
		Long: lines(
			"restore plans a restore job of the contacts in trash that match (--operation: the bulk request, import,",
			"restore job or single request that trashed them, as history and answers name it, e.g. bulk:01J...;",
			"--deleted-by, --deleted-after, --deleted-before: a token between two times), runs it to its end in this",
			"process and prints what it did. --dry-run prints what it would do and changes nothing."),
		Args: cobra.NoArgs,
		RunE: withMain(func(ctx context.Context, m *Main, _ []string) error {
			f := ledger.RestoreFilter{Operation: operation, DeletedBy: deletedBy, Reason: reason}
			for _, t := range []struct {
				flag, v string
				dst     *time.Time
			}{{"--deleted-after", after, &f.DeletedAfter}, {"--deleted-before", before, &f.DeletedBefore}} {
				if t.v == "" {
					continue
				}
				at, err := time.Parse(time.RFC3339Nano, t.v)
				if err != nil {
					return fmt.Errorf("%s: use an RFC 3339 time such as 2026-01-31T00:00:00Z", t.flag)
				}
				*t.dst = at.UTC()
			}
			switch onConflict {
			case "", "refuse":
			case "keep_both":
				f.KeepBoth = true
			default:
				return fmt.Errorf("--on-conflict: use refuse or keep_both")
			}
			if f.Operation == "" && f.DeletedBy == "" && f.DeletedAfter.IsZero() && f.DeletedBefore.IsZero() {
				return fmt.Errorf("name what to restore: --operation, or --deleted-by and/or --deleted-after/--deleted-before")
			}
			m.StartProjections(ctx)
			meta := ledger.Meta{Actor: restoreActor, CorrelationID: "restore-" + contact.NewID().String()}
			enc := json.NewEncoder(stdout)
			if dryRun {
				pv, err := m.jobs.PreviewRestoreJob(ctx, workspace, meta, f)
				if err != nil {
					return err
				}
				if asJSON {
					type item struct {
						ID     string `json:"id"`
						Status string `json:"status"`
						Reason string `json:"reason,omitempty"`
					}
					items := make([]item, len(pv.Items))
					for i, it := range pv.Items {
						items[i] = item{ID: it.ID, Status: "ok"}
						if it.Err != nil {
							items[i].Status, items[i].Reason = "error", it.Err.Error()
						}
					}
					return enc.Encode(map[string]any{"dry_run": true, "total": pv.Total, "ok": pv.OK, "failed": pv.Failed, "results": items, "truncated": pv.Truncated})
				}
				fmt.Fprintf(stdout, "dry run: %d contacts in trash match; %d would be restored, %d would fail\n", pv.Total, pv.OK, pv.Failed)
				for _, it := range pv.Items {
					if it.Err != nil {
						fmt.Fprintf(stdout, "  %s: %v\n", it.ID, it.Err)
					}
				}
				return nil
			}
			j, err := m.jobs.StartRestoreJob(ctx, workspace, meta, f)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "restore job %s (operation %s%s): %d contacts planned\n", j.ID, ledger.OperationJob, j.ID, j.Total)
			if j, err = m.jobs.RunRestoreJob(ctx, workspace, j.ID, ledger.JobOptions{Lease: m.lease()}); err != nil {
				return err
			}
			if asJSON {
				return enc.Encode(map[string]any{"id": j.ID, "operation": ledger.OperationJob + j.ID, "state": j.State, "total": j.Total,
					"restored": j.Restored, "failures": j.Failures})
			}
			fmt.Fprintf(stdout, "%s: restored %d of %d, %d failed\n", j.State, j.Restored, j.Total, len(j.Failures))
			for _, fl := range j.Failures {
				fmt.Fprintf(stdout, "  %s: %s\n", fl.ID, fl.Reason)
			}
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&workspace, "workspace", "default", "the workspace")
	fl.StringVar(&operation, "operation", "", "restore what this operation trashed (bulk:<request id>, import:<id>, job:<job id>, or a request id)")
	fl.StringVar(&deletedBy, "deleted-by", "", "restore what this token trashed")
	fl.StringVar(&after, "deleted-after", "", "restore what was trashed at or after this time (RFC 3339)")
	fl.StringVar(&before, "deleted-before", "", "restore what was trashed before this time (RFC 3339)")
	fl.StringVar(&reason, "reason", "", "the restores' reason (kept in clear in the job: no email or phone)")
	fl.StringVar(&onConflict, "on-conflict", "refuse", "refuse, or keep_both: restore a contact whose email or phone a live contact holds now")
	fl.BoolVar(&dryRun, "dry-run", false, "print what would be restored, and change nothing")
	fl.BoolVar(&asJSON, "json", false, "print the job (or the dry run) as JSON")
	return cmd
}
