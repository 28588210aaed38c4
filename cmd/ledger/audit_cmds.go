package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/spf13/cobra"
)

// mainRunner wraps a command's work with an opened Main.
type mainRunner func(run func(ctx context.Context, m *Main, args []string) error) func(*cobra.Command, []string) error

func replayCommand(stdout, stderr io.Writer, withMain mainRunner) *cobra.Command {
	var (
		workspace string
		asJSON    bool
		asOf      string
		version   uint64
	)
	contactRun := withMain(func(ctx context.Context, m *Main, args []string) error {
		id, err := contact.ParseID(args[0])
		if err != nil {
			return err
		}
		var at time.Time
		if asOf != "" {
			if at, err = time.Parse(time.RFC3339Nano, asOf); err != nil {
				return fmt.Errorf("--as-of: %q is not an RFC 3339 time such as 2026-01-31T00:00:00Z", asOf)
			}
		}
		tr, err := m.audit.Trail(ctx, workspace, id, at, version)
		if err != nil {
			return fmt.Errorf("contact %s in workspace %s: %w", id, workspace, err)
		}
		events := wire.HistoryJSON(tr.Entries, true)
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetEscapeHTML(false)
			for _, e := range events {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tPOSITION\tTIME\tTYPE\tACTOR\tDATA\tPERSONAL")
		for _, e := range events {
			personal := "-"
			switch {
			case e.Shredded:
				personal = "[shredded]"
			case e.Personal != nil:
				personal = string(e.Personal)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s (%s)\t%s\t%s\n", e.Version, e.Position, e.Time.Format("2006-01-02T15:04:05.000000Z"),
				e.Type, e.Actor.Principal, e.Actor.Role, string(e.Data), personal)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		st := tr.State
		fmt.Fprintf(stdout, "\nState at version %d of %d: %s", st.Version, tr.Current, st.State)
		if st.Shredded {
			fmt.Fprint(stdout, ", personal data shredded")
		}
		if st.Tombstone != nil {
			fmt.Fprintf(stdout, "; %s at %s by %s (%s), trigger %s", st.Tombstone.Type, st.Tombstone.At.Format(time.RFC3339), st.Tombstone.By.Principal,
				st.Tombstone.By.Role, st.Tombstone.Erasure.Trigger)
			if st.Tombstone.Erasure.Reason != "" {
				fmt.Fprintf(stdout, ", reason %q", st.Tombstone.Erasure.Reason)
			}
		}
		fmt.Fprintln(stdout)
		return nil
	})
	replay := &cobra.Command{
		Use:   "replay (contact <contact-id> | workspace <name> | <contact-id>)",
		Short: "Replay a contact's trail or export a workspace's log from the log itself",
		Long: lines(
			"replay contact <id> prints a contact's events (personal fields while its key exists, [shredded] after)",
			"and its state at the end; --as-of and --version stop at a point in time or a version.",
			"replay workspace <name> writes the workspace's events as NDJSON in global order, without personal",
			"data, with progress on stderr. `replay <id>` is short for `replay contact <id>`."),
		Args: cobra.ExactArgs(1),
		RunE: contactRun,
	}
	contactCmd := &cobra.Command{
		Use:   "contact <contact-id>",
		Short: "Print a contact's events and its state, optionally as of a time or version",
		Args:  cobra.ExactArgs(1),
		RunE:  contactRun,
	}
	for _, c := range []*cobra.Command{replay, contactCmd} {
		c.Flags().StringVar(&workspace, "workspace", "default", "workspace the contact belongs to")
		c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per event, with its ciphertext (so its chain hash can be recomputed)")
		c.Flags().StringVar(&asOf, "as-of", "", "stop at this time (RFC 3339, inclusive)")
		c.Flags().Uint64Var(&version, "version", 0, "stop at this version")
	}

	var since, until, types, actor, contactID, after, out string
	workspaceCmd := &cobra.Command{
		Use:   "workspace <name>",
		Short: "Write a workspace's events as NDJSON in global order (no personal data), with progress on stderr",
		Args:  cobra.ExactArgs(1),
		RunE: withMain(func(ctx context.Context, m *Main, args []string) error {
			if _, err := m.access.Workspace(ctx, args[0]); err != nil {
				return fmt.Errorf("workspace %s: %w", args[0], err)
			}
			q, err := wire.ParseLogQuery(args[0], map[string]string{"since": since, "until": until, "type": types, "actor": actor, "contact": contactID, "after": after})
			if err != nil {
				return err
			}
			var w io.Writer = stdout
			if out != "-" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			bw := bufio.NewWriterSize(w, 256<<10)
			enc := json.NewEncoder(bw)
			enc.SetEscapeHTML(false)
			bar := newMeter(stderr, "exporting", "events", 0)
			n := 0
			var last kernel.Position
			err = m.audit.AuditLog(ctx, q, func(recs []kernel.Record) error {
				for _, r := range recs {
					if err := enc.Encode(wire.EventJSON(r, true)); err != nil {
						return err
					}
				}
				n += len(recs)
				last = recs[len(recs)-1].Position
				bar.Add(len(recs))
				return bw.Flush()
			})
			bar.Finish()
			if err != nil {
				return fmt.Errorf("export stopped after %d events (resume with --after %s): %w", n, last, err)
			}
			fmt.Fprintf(stderr, "Wrote %d events of workspace %s", n, args[0])
			if out != "-" {
				fmt.Fprintf(stderr, " to %s", out)
			}
			if n > 0 {
				fmt.Fprintf(stderr, "; the last is at position %s", last)
			}
			fmt.Fprintln(stderr, ".")
			return nil
		}),
	}
	f := workspaceCmd.Flags()
	f.StringVar(&since, "since", "", "events at or after this time (RFC 3339)")
	f.StringVar(&until, "until", "", "events before this time (RFC 3339)")
	f.StringVar(&types, "type", "", "event types, comma-separated (e.g. ContactPurged,ContactAnonymized)")
	f.StringVar(&actor, "actor", "", "events caused by this principal (a token id)")
	f.StringVar(&contactID, "contact", "", "one contact's events")
	f.StringVar(&after, "after", "", "resume after this position")
	f.StringVar(&out, "out", "", "file to write (- for stdout)")
	_ = workspaceCmd.MarkFlagRequired("out")
	replay.AddCommand(contactCmd, workspaceCmd)
	return replay
}

func auditCommand(stdout, stderr io.Writer, withMain mainRunner) *cobra.Command {
	var (
		workspace, contactID string
		asJSON               bool
	)
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Recompute every event's hash chain and report the first break of each stream",
		Long: lines(
			"Each event carries the hash of its predecessor and a hash over its own stored bytes (ciphertext",
			"included, so crypto-shredding never breaks a chain). verify recomputes them for one contact",
			"(--contact, in --workspace), one workspace (--workspace), or the whole log, and reports any",
			"event that was changed, removed or reordered. It exits with status 1 when a chain is broken."),
		Args: cobra.NoArgs,
		RunE: withMain(func(ctx context.Context, m *Main, _ []string) error {
			scope := ledger.VerifyScope{Workspace: workspace}
			if contactID != "" {
				id, err := contact.ParseID(contactID)
				if err != nil {
					return err
				}
				if scope.Workspace == "" {
					scope.Workspace = "default"
				}
				scope.Contact = &id
			}
			bar := newMeter(stderr, "verifying", "events", 0)
			rep, err := m.audit.VerifyChains(ctx, scope, func(n int) { bar.Set(int64(n)) })
			bar.Finish()
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(stdout, "Checked %d events in %d streams.\n", rep.Events, rep.Streams)
				for _, b := range rep.Breaks {
					fmt.Fprintf(stdout, "BROKEN %s at version %d (event %s, position %s): %s: %s\n", b.Stream, b.Version, b.EventID, b.Position, b.Kind, b.Detail)
				}
				if len(rep.Breaks) == 0 {
					fmt.Fprintln(stdout, "Every chain holds.")
				}
			}
			if len(rep.Breaks) > 0 {
				return errChainBroken
			}
			return nil
		}),
	}
	verify.Flags().StringVar(&workspace, "workspace", "", "check one workspace (with --contact: the contact's workspace, default \"default\")")
	verify.Flags().StringVar(&contactID, "contact", "", "check one contact")
	verify.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	audit := &cobra.Command{Use: "audit", Short: "Check the log's tamper evidence"}
	audit.AddCommand(verify)
	return audit
}

var errChainBroken = errors.New("the log's hash chain is broken (see above)")

func receiptsCommand(stdout, stderr io.Writer, withMain mainRunner) *cobra.Command {
	var publicKey, trail, workspace, out string
	verify := &cobra.Command{
		Use:   "verify <receipt-file>",
		Short: "Verify an erasure receipt offline: its signature, and optionally its signer and trail",
		Long: lines(
			"verify needs no server and no database. It checks that the ed25519 signature holds under the public",
			"key the receipt names, over the receipt's RFC 8785 (JCS) canonical form (v1 receipts: their compact",
			"bytes as issued), so reformatting (whitespace, key order, other members beside receipt and signature)",
			"does not matter and any changed value fails. A receipt proves it came from your",
			"deployment only when that key is the deployment's: pass --public-key with the key published by",
			"GET /v1/receipts/public-key or `ledger receipts public-key` (the JSON or its PEM), obtained",
			"independently of the receipt. --trail recomputes the trail digest from the contact's events as",
			"`ledger replay contact <id> --json` prints them (each event's chain hash recomputed from its bytes)."),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var trusted ed25519.PublicKey
			if publicKey != "" {
				if trusted, err = readPublicKey(publicKey); err != nil {
					return err
				}
			}
			rc, err := ledger.VerifyReceipt(doc, trusted)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Signature valid: signed by %s.\n", rc.Signer.KeyID)
			if trusted != nil {
				fmt.Fprintln(stdout, "The signer is the trusted deployment key.")
			} else {
				fmt.Fprintln(stdout, "Not checked against a trusted key: pass --public-key with the deployment's published key to prove who signed it.")
			}
			fmt.Fprintf(stdout, "Contact %s in workspace %s was %s at %s by %s (%s), trigger %s", rc.Contact, rc.Workspace, rc.Outcome,
				rc.Erasure.At.Format(time.RFC3339), rc.Erasure.By.Principal, rc.Erasure.By.Role, rc.Erasure.Trigger)
			if rc.Erasure.Request != "" {
				fmt.Fprintf(stdout, ", request %s", rc.Erasure.Request)
			}
			fmt.Fprintf(stdout, "; key %s destroyed; fields erased: %v.\n", rc.Erased.KeyID, rc.Erased.Fields)
			if err := printPropagation(stdout, doc); err != nil {
				return err
			}
			if trail == "" {
				return nil
			}
			recs, err := readTrail(trail)
			if err != nil {
				return err
			}
			if err := ledger.CheckTrail(rc, recs); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Trail verified: %d events, digest %s.\n", len(recs), rc.Trail.Digest)
			return nil
		},
	}
	verify.Flags().StringVar(&publicKey, "public-key", "", "file with the deployment's public key (JSON from the API, or PEM)")
	verify.Flags().StringVar(&trail, "trail", "", "file with the contact's events, from 'ledger replay contact <id> --json'")
	publicKeyCmd := &cobra.Command{
		Use:   "public-key",
		Short: "Print the deployment's receipt-signing public key (JSON, with PEM), for publication",
		Args:  cobra.NoArgs,
		RunE: withMain(func(ctx context.Context, m *Main, _ []string) error {
			pub, err := m.audit.SigningPublicKey(ctx)
			if err != nil {
				return err
			}
			doc, err := wire.PublicKeyDoc(pub)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(doc)
		}),
	}
	issue := &cobra.Command{
		Use:   "issue <contact-id>",
		Short: "Issue the signed erasure receipt of a purged or anonymized contact",
		Args:  cobra.ExactArgs(1),
		RunE: withMain(func(ctx context.Context, m *Main, args []string) error {
			id, err := contact.ParseID(args[0])
			if err != nil {
				return err
			}
			doc, err := m.audit.ErasureReceipt(ctx, workspace, id)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = stdout.Write(doc)
				return err
			}
			return os.WriteFile(out, doc, 0o600)
		}),
	}
	issue.Flags().StringVar(&workspace, "workspace", "default", "workspace the contact belongs to")
	issue.Flags().StringVar(&out, "out", "-", "file to write")
	receipts := &cobra.Command{Use: "receipts", Short: "Erasure receipts: issue, verify offline, publish the signing key"}
	receipts.AddCommand(verify, publicKeyCmd, issue)
	return receipts
}

// readPublicKey reads a public key from the JSON the API publishes or a PEM file.
func readPublicKey(file string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an ed25519 key", file)
		}
		return pub, nil
	}
	var doc wire.PublicKeyJSON
	if err := json.Unmarshal(b, &doc); err != nil || doc.PublicKey == "" {
		return nil, fmt.Errorf("%s: neither a PEM public key nor the JSON of GET /v1/receipts/public-key", file)
	}
	pub, err := base64.RawURLEncoding.DecodeString(doc.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s: malformed public key", file)
	}
	return pub, nil
}

// readTrail reads a contact's events from NDJSON lines of `replay contact --json` or the audit log.
func readTrail(file string) ([]kernel.Record, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []kernel.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for n := 1; sc.Scan(); n++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var e wire.HistoryEventJSON
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", file, n, err)
		}
		r, err := wire.RecordOf(e)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", file, n, err)
		}
		recs = append(recs, r)
	}
	return recs, sc.Err()
}
