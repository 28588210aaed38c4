package ledger_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/contactledger/ledger/ledger"
)

// endless is a file that begins with head and then repeats fill (up to
// 16 MiB, so that a reader that holds it all fails the test instead of
// running out of memory), counting how much of it was read.
type endless struct {
	head string
	fill byte
	read int64
}

func (e *endless) Read(p []byte) (int, error) {
	if e.read >= 16<<20 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) {
		if int(e.read) < len(e.head) {
			p[n] = e.head[e.read]
		} else {
			p[n] = e.fill
		}
		n++
		e.read++
	}
	return n, nil
}

// TestOverlongRowsAreRefusedWhileRead feeds the import readers rows that
// never end (a quoted CSV field, an unquoted CSV line, a JSON string, a
// JSON number, blank space between JSON elements): each is refused as a
// malformed file once it is MaxImportRow long, after reading a bounded
// amount of it: memory stays bounded however long the row.
func TestOverlongRowsAreRefusedWhileRead(t *testing.T) {
	const bound = 4 * ledger.MaxImportRow
	for _, tc := range []struct {
		name, head string
		fill       byte
		json       bool
	}{
		{"quoted CSV field", "name,email\nAda,ada@example.com\n\"", 'x', false},
		{"CSV line", "name,email\nAda,ada@example.com\nBob,", 'y', false},
		{"CSV header", "name", 'n', false},
		{"JSON string", `[{"name":"Ada"},{"name":"`, 'x', true},
		{"JSON number", `[{"name":"Ada"},{"name":`, '1', true},
		{"JSON blank space", `[{"name":"Ada"},`, ' ', true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &endless{head: tc.head, fill: tc.fill}
			var rows ledger.RowReader
			var err error
			if tc.json {
				rows, err = ledger.NewJSONRows(src)
			} else {
				rows, err = ledger.NewCSVRows(src)
			}
			if err == nil {
				_, err = ledger.CheckImport(rows)
			}
			var fe *ledger.FileError
			if !errors.As(err, &fe) || !strings.Contains(fe.Message, "longer than 64 KiB") {
				t.Fatalf("got %.200v, want a file error for a row longer than 64 KiB", err)
			}
			if src.read > bound {
				t.Fatalf("read %d bytes of the row before refusing it, want at most %d", src.read, bound)
			}
		})
	}
	// Rows just under the limit, many of them, still import.
	long := strings.Repeat("z", ledger.MaxImportRow-100)
	var b strings.Builder
	b.WriteString("name,job_title\n")
	for range 20 {
		b.WriteString("Ada," + long + "\n")
	}
	rows, err := ledger.NewCSVRows(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ledger.CheckImport(rows); n != 20 || err != nil {
		t.Fatalf("rows under the limit: got %d rows, %v; want 20", n, err)
	}
	var j strings.Builder
	j.WriteString("[")
	for i := range 20 {
		if i > 0 {
			j.WriteString(",")
		}
		j.WriteString(`{"name":"Ada","job_title":"` + long + `"}`)
	}
	j.WriteString("]")
	jrows, err := ledger.NewJSONRows(strings.NewReader(j.String()))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ledger.CheckImport(jrows); n != 20 || err != nil {
		t.Fatalf("JSON rows under the limit: got %d rows, %v; want 20", n, err)
	}
}
