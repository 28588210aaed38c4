package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/spf13/cobra"
)

// findWebhook finds a subscription by id, in workspace when it is set.
func findWebhook(ctx context.Context, m *Main, workspace, id string) (ledger.Webhook, error) {
	all, err := m.webhooks.Webhooks(ctx, workspace)
	if err != nil {
		return ledger.Webhook{}, err
	}
	for _, w := range all {
		if w.ID == id {
			return w, nil
		}
	}
	return ledger.Webhook{}, fmt.Errorf("webhook %s: %w", id, kernel.ErrNotFound)
}

func webhooksCommand(stdout, stderr io.Writer, withMain mainRunner) *cobra.Command {
	root := &cobra.Command{Use: "webhooks", Short: "Webhook subscriptions: their delivery status, test messages, replays"}
	var workspace string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List subscriptions (every workspace's, or one's) with their checkpoint, lag, pending retries and health",
		Args:  cobra.NoArgs,
		RunE: withMain(func(ctx context.Context, m *Main, _ []string) error {
			all, err := m.webhooks.Webhooks(ctx, workspace)
			if err != nil {
				return err
			}
			var out []wire.WebhookJSON
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(tw, "ID\tWORKSPACE\tSTATE\tTYPES\tCHECKPOINT\tLAG (EVENTS)\tLAG (S)\tPENDING\tFAILING SINCE\tURL")
			}
			for _, w := range all {
				st, err := m.webhooks.WebhookStatus(ctx, w.Workspace, w.ID)
				if errors.Is(err, kernel.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				j := wire.WebhookStatusOf(st)
				if asJSON {
					out = append(out, j)
					continue
				}
				state, types, failing := "enabled", "all", "-"
				if !w.Enabled {
					state = "disabled: " + w.DisabledReason
				}
				if len(w.Types) > 0 {
					types = strings.Join(w.Types, ",")
				}
				if j.Status.FailingSince != nil {
					failing = j.Status.FailingSince.Format(time.RFC3339) + " (" + j.Status.LastError + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%.1f\t%d\t%s\t%s\n", w.ID, w.Workspace, state, types, j.Status.Position,
					j.Status.LagEvents, j.Status.LagSeconds, j.Status.Pending, failing, w.URL)
			}
			if asJSON {
				if out == nil {
					out = []wire.WebhookJSON{}
				}
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			return tw.Flush()
		}),
	}
	list.Flags().StringVar(&workspace, "workspace", "", "only this workspace's subscriptions")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var testWorkspace string
	test := &cobra.Command{
		Use:   "test-send <webhook-id>",
		Short: "Send a subscription a signed test message (type webhook.test) now and print the answer",
		Args:  cobra.ExactArgs(1),
		RunE: withMain(func(ctx context.Context, m *Main, args []string) error {
			w, err := findWebhook(ctx, m, testWorkspace, args[0])
			if err != nil {
				return err
			}
			a, err := m.webhooks.TestWebhook(ctx, w.Workspace, w.ID)
			if err != nil {
				return err
			}
			if a.Outcome != ledger.AttemptDelivered {
				return fmt.Errorf("the receiver did not take the test message: %s (%.1f ms)", a.Error, float64(a.Latency.Microseconds())/1000)
			}
			fmt.Fprintf(stdout, "Delivered %s to %s: HTTP %d in %.1f ms.\n", a.EventID, w.ID, a.Status, float64(a.Latency.Microseconds())/1000)
			return nil
		}),
	}
	test.Flags().StringVar(&testWorkspace, "workspace", "", "the subscription's workspace (default: found by id)")

	var replayWorkspace, after, since string
	replay := &cobra.Command{
		Use:   "replay <webhook-id> (--after POSITION | --since TIME)",
		Short: "Deliver again every event after a position, or from a time on; running servers pick it up within seconds",
		Args:  cobra.ExactArgs(1),
		RunE: withMain(func(ctx context.Context, m *Main, args []string) error {
			if (after == "") == (since == "") {
				return errors.New("give either --after POSITION or --since TIME")
			}
			var pos kernel.Position
			var from time.Time
			var err error
			if after != "" {
				if pos, err = kernel.ParsePosition(after); err != nil {
					return fmt.Errorf("--after %q is not a position the ledger returned", after)
				}
			} else if from, err = time.Parse(time.RFC3339Nano, since); err != nil {
				return fmt.Errorf("--since %q: use a time such as 2026-01-31T00:00:00Z", since)
			}
			w, err := findWebhook(ctx, m, replayWorkspace, args[0])
			if err != nil {
				return err
			}
			if err := m.webhooks.ReplayWebhook(ctx, w.Workspace, w.ID, pos, from.UTC()); err != nil {
				return err
			}
			what := "after " + after
			if since != "" {
				what = "from " + since
			}
			fmt.Fprintf(stdout, "Replaying %s %s: its events are delivered again, in order.\n", w.ID, what)
			return nil
		}),
	}
	replay.Flags().StringVar(&replayWorkspace, "workspace", "", "the subscription's workspace (default: found by id)")
	replay.Flags().StringVar(&after, "after", "", "a position (from the change feed or the attempts log): deliver every event after it")
	replay.Flags().StringVar(&since, "since", "", "an RFC 3339 time: deliver every event from then on")
	root.AddCommand(list, test, replay)
	return root
}

// printPropagation prints a receipt's unsigned propagation section, if any.
func printPropagation(w io.Writer, doc []byte) error {
	p, err := ledger.ReceiptPropagationOf(doc)
	if err != nil || p == nil {
		return err
	}
	acked := 0
	for _, s := range p.Subscriptions {
		if s.Status == ledger.NoticeAcknowledged {
			acked++
		}
	}
	fmt.Fprintf(w, "Erasure notice (not signed; as of %s): acknowledged by %d of %d webhook subscriptions.\n", p.AsOf.Format(time.RFC3339), acked, len(p.Subscriptions))
	for _, s := range p.Subscriptions {
		line := "  " + s.Subscription + ": " + s.Status
		if s.AcknowledgedAt != nil {
			line += " at " + s.AcknowledgedAt.Format(time.RFC3339)
		} else if s.NotifiedAt != nil {
			line += ", first sent at " + s.NotifiedAt.Format(time.RFC3339)
		}
		fmt.Fprintln(w, line)
	}
	return nil
}
