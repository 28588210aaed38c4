package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// importActor is who command-line imports are recorded as.
var importActor = kernel.Actor{Principal: "cli:import", Role: kernel.RoleOperator}

// importMeta is the metadata of a command-line import's commands: its id
// is their correlation id ("import-<id>") and their operation ("import:<id>").
func importMeta(id string) ledger.Meta {
	return ledger.Meta{Actor: importActor, CorrelationID: "import-" + id, Operation: ledger.OperationImport + id}
}

// newImportCommand returns `ledger import FILE`: the same import as
// POST /v1/contacts/import, straight into the data directory, with its
// progress in rows on standard error.
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
			if format == "" {
				format = strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
			}
			mt := map[string]string{"csv": "text/csv", "json": "application/json"}[format]
			if mt == "" {
				return fmt.Errorf("format %q: use --format csv or --format json", format)
			}
			if _, err := m.access.Workspace(ctx, workspace); err != nil {
				return fmt.Errorf("workspace %q: %w", workspace, err)
			}
			open := func(r io.Reader) (ledger.RowReader, error) {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return nil, err
				}
				return ledger.ImportRows(mt, r)
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
			if rows, err = open(f); err != nil {
				return err
			}
			var progress *importProgress
			if !noProgress {
				progress = newImportProgress(stderr, n)
			}
			enc := json.NewEncoder(stdout)
			totals, err := m.imports.Import(ctx, workspace, importMeta(contact.NewID().String()), source, rows,
				func(r ledger.RowResult) error {
					progress.add(1)
					switch {
					case asJSON:
						return enc.Encode(r)
					case r.Result == ledger.RowSkipped:
						_, err := fmt.Fprintf(stdout, "row %d: skipped: %s\n", r.Row, r.Reason)
						return err
					}
					return nil
				})
			progress.finish()
			fmt.Fprintf(stderr, "%s: %d created, %d updated, %d unchanged, %d skipped\n", path,
				totals[ledger.RowCreated], totals[ledger.RowUpdated], totals[ledger.RowUnchanged], totals[ledger.RowSkipped])
			return err
		}),
	}
	cmd.Flags().StringVar(&workspace, "workspace", "default", "workspace to import into")
	cmd.Flags().StringVar(&source, "source", "", "the system the contacts come from, such as crm or web (required, as for POST /v1/contacts/import): rows match by its external ids")
	cmd.Flags().StringVar(&format, "format", "", "csv or json (default: from the file's extension)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print every row's result as a JSON line")
	cmd.Flags().BoolVar(&noProgress, "no-progress", false, "do not show the progress (a bar in rows on a terminal, else a line every 5 s)")
	return cmd
}

// importProgress shows an import's progress on standard error, in rows: a
// bar with the count and the rate on a terminal, else (a log, a pipe) a
// plain line every few seconds and one at the end.
type importProgress struct {
	bar   *progressbar.ProgressBar
	w     io.Writer
	total int
	done  int
	start time.Time
	last  time.Time
}

// progressEvery is how often the plain progress lines come.
var progressEvery = 5 * time.Second

func newImportProgress(w io.Writer, total int) *importProgress {
	p := &importProgress{w: w, total: total, start: time.Now(), last: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("importing"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("rows"),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)
	}
	return p
}

// add counts n more rows done.
func (p *importProgress) add(n int) {
	if p == nil {
		return
	}
	p.done += n
	if p.bar != nil {
		_ = p.bar.Add(n)
		return
	}
	if time.Since(p.last) >= progressEvery {
		p.last = time.Now()
		p.line("imported")
	}
}

// finish ends the bar, or prints the last line.
func (p *importProgress) finish() {
	if p == nil {
		return
	}
	if p.bar != nil {
		_ = p.bar.Finish()
		return
	}
	p.line("done:")
}

func (p *importProgress) line(what string) {
	rate := float64(p.done) / max(time.Since(p.start).Seconds(), 1e-3)
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.done) / float64(p.total)
	}
	fmt.Fprintf(p.w, "%s %d of %d rows (%.0f%%), %.0f rows/s\n", what, p.done, p.total, pct, rate)
}
