package ledger_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/ledgertest"
	"github.com/contactledger/ledger/ledger"
)

// TestImport imports one CSV file from the web source into a workspace
// that already knows some of its people: each row gets the result its
// match decides (created, updated, unchanged, skipped with a reason), in
// the file's order, a person named twice is created once, and every event
// names the import's operation.
func TestImport(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	bob := e.Create(t, "Bob", "bob@example.com")
	cat := e.Create(t, "Cat", "cat@example.com")
	trashed := e.Create(t, "Dan", "dan@example.com")
	e.Move(t, trashed, ledger.Trash)
	spam := e.Create(t, "Eve", "eve@example.com")
	gil, err := e.Svc.Create(ctx, ledgertest.Workspace, ledgertest.Meta("req-gil"), contact.Draft{Personal: contact.Personal{Name: "Gil", ExternalID: "W-9"}, Source: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.MarkSpam(ctx, ledgertest.Workspace, spam, ledgertest.Meta("req-spam"), "bot"); err != nil {
		t.Fatal(err)
	}
	const file = "name,email,job_title,tags,external_id\n" +
		"Ann,ann@example.com,CEO,vip;lead,A-1\n" + // 1 new
		"Bob,bob@example.com,CTO,,\n" + // 2 a known email, a new job title
		"Cat,cat@example.com,,,\n" + // 3 nothing new
		"Dan,dan@example.com,,,\n" + // 4 in trash
		"Eve,eve@example.com,,,\n" + // 5 spam
		"Fay,not-an-email,,,\n" + // 6 invalid
		"Ann Again,ann@example.com,,,\n" + // 7 the same email as row 1
		"Gil New,,,,W-9\n" // 8 a known external id of the source
	rows, err := ledger.NewCSVRows(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got []ledger.RowResult
	)
	totals, err := e.Svc.Import(ctx, ledgertest.Workspace, ledgertest.Meta("req-imp"), "web", rows, func(r ledger.RowResult) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		result, id, reason string
	}{
		{ledger.RowCreated, "", ""},
		{ledger.RowUpdated, bob.String(), ""},
		{ledger.RowUnchanged, cat.String(), ""},
		{ledger.RowSkipped, trashed.String(), "in trash"},
		{ledger.RowSkipped, "", "marked as spam"},
		{ledger.RowSkipped, "", "invalid"},
		{ledger.RowUpdated, "", ""},
		{ledger.RowUpdated, gil.Contact.ID.String(), ""},
	}
	if len(got) != len(want) {
		t.Fatalf("%d results; want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		r := got[i]
		if r.Row != i+1 || r.Result != w.result || (w.id != "" && r.ID != w.id) || !strings.HasPrefix(r.Reason, w.reason) {
			t.Errorf("row %d: %+v; want %s %s %q", i+1, r, w.result, w.id, w.reason)
		}
	}
	if got[6].ID != got[0].ID {
		t.Errorf("row 7 has id %s; want the contact row 1 created, %s", got[6].ID, got[0].ID)
	}
	wantTotals := ledger.ImportTotals{ledger.RowCreated: 1, ledger.RowUpdated: 3, ledger.RowUnchanged: 1, ledger.RowSkipped: 3}
	for k, n := range wantTotals {
		if totals[k] != n {
			t.Errorf("totals: %v; want %v", totals, wantTotals)
			break
		}
	}
	ann, _ := contact.ParseID(got[0].ID)
	v, err := e.Svc.Get(ctx, ledgertest.Workspace, ann)
	if err != nil {
		t.Fatal(err)
	}
	if v.Personal.Name != "Ann Again" || v.Source != "web" || !slices.Equal(v.Tags, []string{"lead", "vip"}) || v.Personal.JobTitle != "CEO" {
		t.Errorf("imported contact: name %q source %q tags %v title %q", v.Personal.Name, v.Source, v.Tags, v.Personal.JobTitle)
	}
	for _, id := range []contact.ID{ann, bob} {
		if r := lastEvent(t, e, id); r.CausationID != "import:req-imp" {
			t.Errorf("%s: last event %s caused by %q; want import:req-imp", id, r.Type, r.CausationID)
		}
	}
	if r := lastEvent(t, e, cat); r.CausationID == "import:req-imp" {
		t.Errorf("the unchanged contact got an event %s", r.Type)
	}
}

// TestImportRefusals lists what stops an import before it changes anything.
func TestImportRefusals(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	for _, tc := range []struct {
		name, workspace, source string
		want                    error
	}{
		{"no source", ledgertest.Workspace, "", kernel.ErrInvalid},
		{"a malformed source", ledgertest.Workspace, "Web Site!", kernel.ErrInvalid},
		{"an unknown workspace", "nope", "web", kernel.ErrWorkspaceNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := ledger.NewJSONRows(strings.NewReader(`[{"name":"Ann"}]`))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.Svc.Import(ctx, tc.workspace, ledgertest.Meta("req"), tc.source, rows, func(ledger.RowResult) error { return nil }); !errors.Is(err, tc.want) {
				t.Fatalf("got %v; want %v", err, tc.want)
			}
		})
	}
	if head, _ := e.Events.Head(ctx); !head.IsZero() {
		t.Fatalf("refused imports wrote to the log (head %v)", head)
	}
}

// TestImportFiles reads import files of both formats with CheckImport:
// well-formed ones count their rows, malformed ones fail with a
// FileError naming the row and never the file's text.
func TestImportFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, format, body string
		rows               int
		errRow             int // -1: no error
	}{
		{"csv", "csv", "name,email,tags\nAnn,ann@example.com,a;b\nBob,,\n", 2, -1},
		{"csv with a BOM", "csv", "\ufeffName,Phone\nAnn,+441234567890\n", 1, -1},
		{"an empty csv", "csv", "", 0, 0},
		{"an unknown column", "csv", "name,secret@example.com\n", 0, 0},
		{"a column twice", "csv", "name,name\n", 0, 0},
		{"no identity column", "csv", "job_title\nCEO\n", 0, 0},
		{"a row too long", "csv", "name\nAnn,extra\n", 0, 1},
		{"json", "json", `[{"name":"Ann","tags":["a","b"]},{"email":"bob@example.com","tags":"x;y"}]`, 2, -1},
		{"json not an array", "json", `{"name":"Ann"}`, 0, 0},
		{"json with a wrong type", "json", `[{"name":"Ann"},{"name":5}]`, 1, 2},
		{"json with an unknown key", "json", `[{"name":"Ann","secret":"x"}]`, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var (
				rows ledger.RowReader
				err  error
			)
			if tc.format == "csv" {
				rows, err = ledger.NewCSVRows(strings.NewReader(tc.body))
			} else {
				rows, err = ledger.NewJSONRows(strings.NewReader(tc.body))
			}
			n := 0
			if err == nil {
				n, err = ledger.CheckImport(rows)
			}
			if tc.errRow < 0 {
				if err != nil || n != tc.rows {
					t.Fatalf("got %d rows, %v; want %d rows", n, err, tc.rows)
				}
				return
			}
			var fe *ledger.FileError
			if !errors.As(err, &fe) || fe.Row != tc.errRow || n != tc.rows {
				t.Fatalf("got %d rows, %v; want a FileError at row %d after %d rows", n, err, tc.errRow, tc.rows)
			}
			if strings.Contains(fe.Error(), "secret") {
				t.Fatalf("the error quotes the file: %v", fe)
			}
		})
	}
}

// TestImportExternalIDNamedTwice imports a new person's row with an email
// and an external id, followed later in the file (in the same chunk, and
// in a later one) by a row that carries only that external id: the same
// person, so the later row updates the contact the first created, even
// though the identity index has not seen it yet (issue 18c found an
// importer that created such a row twice when two workers took the rows).
func TestImportExternalIDNamedTwice(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	var file strings.Builder
	file.WriteString("name,email,job_title,external_id\n")
	file.WriteString("Ann,ann@example.com,,A-1\n") // 1 new
	file.WriteString("Ann,,CTO,A-1\n")             // 2 only A-1, same chunk
	file.WriteString("Cal,cal@example.com,,C-1\n") // 3 new
	const fillers = 600                            // past the first chunk
	for i := range fillers {
		fmt.Fprintf(&file, "Filler %d,filler%d@example.com,,F-%d\n", i, i, i)
	}
	file.WriteString("Cal,,CFO,C-1\n") // only C-1, a later chunk
	rows, err := ledger.NewCSVRows(strings.NewReader(file.String()))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got = map[int]ledger.RowResult{}
	)
	totals, err := e.Svc.Import(ctx, ledgertest.Workspace, ledgertest.Meta("req-imp-ext"), "crm", rows, func(r ledger.RowResult) error {
		mu.Lock()
		defer mu.Unlock()
		got[r.Row] = r
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	last := 3 + fillers + 1
	for first, again := range map[int]int{1: 2, 3: last} {
		if r := got[first]; r.Result != ledger.RowCreated {
			t.Fatalf("row %d: %+v; want created", first, r)
		}
		if r := got[again]; r.Result != ledger.RowUpdated || r.ID != got[first].ID {
			t.Errorf("row %d: %+v; want an update of %s, which row %d created", again, r, got[first].ID, first)
		}
	}
	if totals[ledger.RowCreated] != fillers+2 {
		t.Errorf("totals %v; want %d created", totals, fillers+2)
	}
	for row, title := range map[int]string{1: "CTO", 3: "CFO"} {
		id, _ := contact.ParseID(got[row].ID)
		v, err := e.Svc.Get(ctx, ledgertest.Workspace, id)
		if err != nil {
			t.Fatal(err)
		}
		if v.Personal.JobTitle != title {
			t.Errorf("row %d's contact: job title %q; want %q", row, v.Personal.JobTitle, title)
		}
	}
}
