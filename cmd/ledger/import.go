package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/contactledger/ledger/adapters/httpapi"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/ledger"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// importActor is who command-line imports are recorded as.
var importActor = contact.Actor{Principal: "cli:import", Role: contact.RoleOperator}

// importMeta is the metadata of a command-line import's commands: its id
// is their correlation id ("import-<id>") and their operation ("import:<id>").
func importMeta(id string) ledger.Meta {
	return ledger.Meta{Actor: importActor, CorrelationID: "import-" + id, Operation: ledger.OperationImport + id}
}

// newImportCommand returns `ledger import FILE`: the same import as
// POST /v1/contacts/import, straight into the data directory, with a
// progress bar on standard error.
func newImportCommand(stdout, stderr io.Writer, withMain func(func(ctx context.Context, m *Main, args []string) error) func(*cobra.Command, []string) error) *cobra.Command {
	var (
		workspace, source, format string
		asJSON, noProgress        bool
	)
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import or sync contacts from a CSV or JSON file (checked whole first; then each row is created, updated, unchanged or skipped)",
		Long: "Imports contacts from a source system. CSV files have a header row naming some of " + strings.Join(ledger.ImportColumns, ", ") +
			" (tags separated by ';'); JSON files are an array of objects with the same fields (tags as an array or a ';'-separated string). Rows match existing contacts by " +
			"(source, external_id), else by email. Skipped rows and the totals are printed; --json prints every row's result.",
		Args: cobra.ExactArgs(1),
		RunE: withMain(func(ctx context.Context, m *Main, args []string) error {
			if err := ledger.ValidateImportSource(source); err != nil {
				return fmt.Errorf("--%w", err)
			}
			path := args[0]
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			if format == "" {
				format = strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
			}
			mt := map[string]string{"csv": "text/csv", "json": "application/json"}[format]
			if mt == "" {
				return fmt.Errorf("format %q: use --format csv or --format json", format)
			}
			if _, err := m.Svc.Directory().Workspace(ctx, workspace); err != nil {
				return fmt.Errorf("workspace %q: %w", workspace, err)
			}
			open := func(r io.Reader) (ledger.RowReader, error) {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return nil, err
				}
				return httpapi.ImportReader(mt, r)
			}
			rows, err := open(f)
			if err != nil {
				return err
			}
			n, err := ledger.CheckImport(rows)
			if err != nil {
				return fmt.Errorf("%s: %w; nothing was imported", path, err)
			}
			m.StartProjections(ctx)
			var in io.Reader = f
			var bar *progressbar.ProgressBar
			if !noProgress {
				bar = progressbar.NewOptions64(st.Size(),
					progressbar.OptionSetWriter(stderr),
					progressbar.OptionSetDescription(fmt.Sprintf("importing %d rows", n)),
					progressbar.OptionShowBytes(true),
					progressbar.OptionSetWidth(30),
					progressbar.OptionThrottle(200_000_000),
					progressbar.OptionShowElapsedTimeOnFinish(),
					progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }),
				)
				r := progressbar.NewReader(f, bar)
				in = &r
			}
			if rows, err = open(in); err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			totals, err := m.Svc.Import(ctx, workspace, importMeta(contact.NewID().String()), source, rows,
				func(r ledger.RowResult) error {
					switch {
					case asJSON:
						return enc.Encode(r)
					case r.Result == ledger.RowSkipped:
						_, err := fmt.Fprintf(stdout, "row %d: skipped: %s\n", r.Row, r.Reason)
						return err
					}
					return nil
				})
			if bar != nil {
				_ = bar.Finish()
			}
			fmt.Fprintf(stderr, "%s: %d created, %d updated, %d unchanged, %d skipped\n", path,
				totals[ledger.RowCreated], totals[ledger.RowUpdated], totals[ledger.RowUnchanged], totals[ledger.RowSkipped])
			return err
		}),
	}
	cmd.Flags().StringVar(&workspace, "workspace", "default", "workspace to import into")
	cmd.Flags().StringVar(&source, "source", "", "the system the contacts come from, such as crm or web (required, as for POST /v1/contacts/import): rows match by its external ids")
	cmd.Flags().StringVar(&format, "format", "", "csv or json (default: from the file's extension)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print every row's result as a JSON line")
	cmd.Flags().BoolVar(&noProgress, "no-progress", false, "do not show the progress bar")
	return cmd
}
