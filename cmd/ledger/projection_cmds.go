package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/projections"
	"github.com/spf13/cobra"
)

func projectionsCommand(stdout, stderr io.Writer, withMain mainRunner) *cobra.Command {
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show each projection's checkpoint, the log's head, the lag and the state (live, rebuilding, failed)",
		Args:  cobra.NoArgs,
		RunE: withMain(func(ctx context.Context, m *Main, _ []string) error {
			sts, err := m.Runner.Status(ctx)
			if err != nil {
				return err
			}
			out := wire.ProjectionsJSON(sts, func(projections.RebuildJob) bool { return true })
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PROJECTION\tSTATE\tCHECKPOINT\tHEAD\tLAG (EVENTS)\tLAG (S)\tVERSION")
			for _, p := range out {
				state := p.State
				if p.Rebuild != nil {
					state += fmt.Sprintf(" (%s: %d/%d events)", p.Rebuild.Phase, p.Rebuild.EventsDone, p.Rebuild.EventsTotal)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.1f\t%d\n", p.Name, state, p.Checkpoint, p.Head, p.LagEvents, p.LagSeconds, p.Version)
			}
			return tw.Flush()
		}),
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	rebuild := &cobra.Command{
		Use:   "rebuild <view|all|identities>",
		Short: "Rebuild a view (active, archived, trash, anonymized), all of them, or the identity index (identities) without downtime",
		Long: lines(
			"The rebuild folds every contact's stream into new tables beside the live ones, catches up with",
			"the log, then switches them in atomically: servers keep answering from the old tables until the",
			"switch and from the new ones after. A failed or interrupted rebuild leaves the live views as",
			"they were. It can run while servers run; only one rebuild of a view runs at a time."),
		Args: cobra.ExactArgs(1),
		RunE: withMain(func(ctx context.Context, m *Main, args []string) error {
			bar := newMeter(stderr, "rebuilding "+args[0], "events", 0)
			job, err := m.Runner.RunRebuild(ctx, args[0], "requested", "cli", func(j projections.RebuildJob) {
				bar.SetTotal(j.EventsTotal)
				bar.Describe(fmt.Sprintf("rebuilding %s (%s)", args[0], j.Phase))
				bar.Set(j.EventsDone)
			})
			bar.Finish()
			if err != nil && job.State == projections.RebuildCancelled {
				return fmt.Errorf("rebuild of %s cancelled; the live views are untouched", args[0])
			}
			if err != nil {
				return fmt.Errorf("rebuild %s: %w", args[0], err)
			}
			rate, _ := job.Rate()
			fmt.Fprintf(stdout, "Rebuilt %s (%s): %d events in %s, %.0f events/s.\n", args[0], job.ID, job.EventsDone,
				job.FinishedAt.Sub(job.StartedAt).Round(time.Millisecond), rate)
			return nil
		}),
	}
	p := &cobra.Command{Use: "projections", Short: "The read models: status and rebuilds"}
	p.AddCommand(status, rebuild)
	return p
}
