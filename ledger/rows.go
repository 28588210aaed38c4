package ledger

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/contactledger/ledger/domain/kernel"
)

// ImportRow is one contact of an import file. Empty fields are not
// provided: an import never clears what a contact has.
type ImportRow struct {
	Name       string  `json:"name"`
	Email      string  `json:"email"`
	Phone      string  `json:"phone"`
	JobTitle   string  `json:"job_title"`
	Address    string  `json:"address"`
	Tags       TagList `json:"tags"`
	ExternalID string  `json:"external_id"`
}

// FileError is a malformed import file: the import changes nothing.
type FileError struct {
	Row     int // the data row (1 for the first after a CSV header), or 0 for the file as a whole
	Message string
}

func (e *FileError) Error() string {
	if e.Row > 0 {
		return fmt.Sprintf("row %d: %s", e.Row, e.Message)
	}
	return e.Message
}

// Unwrap makes a FileError a 400 for the HTTP adapter.
func (e *FileError) Unwrap() error {
	return &kernel.Error{Code: kernel.CodeBadRequest, Reason: "malformed-import", Message: "the import file is malformed, nothing was imported: " + e.Error()}
}

// MaxImportRow is the longest row an import file may have: a CSV record
// or a JSON array element, in bytes. A longer one (a runaway quoted
// field, a huge JSON string) is refused as soon as the reader is that far
// into it, so that no import holds more than this of a row in memory.
const MaxImportRow = 64 << 10

// errRowTooLong is returned by the reader under a parser when a row goes
// past MaxImportRow.
var errRowTooLong = errors.New("row too long")

// rowLimiter hands a parser the file's bytes, but never more than
// MaxImportRow (plus what the parser reads ahead) past the end of the last
// row the parser finished: a longer row fails with errRowTooLong while it
// is read, instead of growing the parser's buffer to its size.
type rowLimiter struct {
	r    io.Reader
	read int64 // bytes handed out
	end  int64 // where the last finished row ended, in the file's bytes
}

// readAhead is how far past a row's end a parser may have read: the
// buffer in front of it.
const readAhead = 64 << 10

func (l *rowLimiter) Read(p []byte) (int, error) {
	room := l.end + MaxImportRow + readAhead - l.read
	if room <= 0 {
		return 0, errRowTooLong
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := l.r.Read(p)
	l.read += int64(n)
	return n, err
}

// rowTooLong is the file error of a row that goes past MaxImportRow.
func rowTooLong(row int) *FileError {
	return &FileError{Row: row, Message: fmt.Sprintf("is longer than %d KiB (a field runs on: an unclosed quote, or a value far too long)", MaxImportRow>>10)}
}

// ImportColumns are the columns a CSV import may have, in any order.
var ImportColumns = []string{"name", "email", "phone", "job_title", "address", "tags", "external_id"}

// TagSeparator separates tags in a CSV cell (and in a JSON string of tags).
const TagSeparator = ";"

// TagList is an import row's tags: in JSON either an array of strings or
// one string of tags separated by ';', as in a CSV cell.
type TagList []string

// SplitTags splits a cell of tags separated by ';', dropping empty ones.
func SplitTags(cell string) TagList {
	var out TagList
	for t := range strings.SplitSeq(cell, TagSeparator) {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// UnmarshalJSON takes an array of strings or a ';'-separated string.
func (l *TagList) UnmarshalJSON(b []byte) error {
	var cell string
	if err := json.Unmarshal(b, &cell); err == nil {
		*l = SplitTags(cell)
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errTagList
	}
	*l = list
	return nil
}

var errTagList = errors.New("must be an array of strings or a string of tags separated by ';'")

// ErrImportMediaType is returned for an import of a media type other than
// CSV or JSON.
var ErrImportMediaType = &kernel.Error{Code: kernel.CodeMediaType, Reason: "unsupported-media-type", Message: "send the import as text/csv or application/json"}

// ImportRows returns the row reader for an import of media type mt: CSV
// (text/csv, application/csv) or JSON (application/json), as the API's
// import and the command line's both take. Errors: ErrImportMediaType.
func ImportRows(mt string, r io.Reader) (RowReader, error) {
	switch mt {
	case "text/csv", "application/csv":
		return NewCSVRows(r)
	case "application/json":
		return NewJSONRows(r)
	}
	return nil, ErrImportMediaType
}

type csvRows struct {
	r     *csv.Reader
	limit *rowLimiter
	bom   int64
	cols  []string
	row   int
}

// NewCSVRows reads a CSV import: a header row naming some of ImportColumns,
// then one contact per row; tags are separated by ';'. A row longer than
// MaxImportRow is a *FileError.
func NewCSVRows(r io.Reader) (RowReader, error) {
	limit := &rowLimiter{r: r}
	br := bufio.NewReaderSize(limit, readAhead)
	var bom int64
	if b, _ := br.Peek(3); bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
		br.Discard(3)
		bom = 3
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &FileError{Message: "the file is empty; it needs a header row"}
	}
	if errors.Is(err, errRowTooLong) {
		return nil, &FileError{Message: fmt.Sprintf("the header row is longer than %d KiB", MaxImportRow>>10)}
	}
	if err != nil {
		return nil, &FileError{Message: "the header row is not valid CSV"}
	}
	limit.end = bom + cr.InputOffset()
	cols := make([]string, len(header))
	for i, h := range header {
		if !utf8.ValidString(h) {
			return nil, &FileError{Message: "the header row is not valid UTF-8"}
		}
		c := strings.ToLower(strings.TrimSpace(h))
		if !slices.Contains(ImportColumns, c) {
			// The header's text is the client's (it could be an email
			// address): name the column by its place, never by its text.
			return nil, &FileError{Message: fmt.Sprintf("column %d of the header is not one of %s", i+1, strings.Join(ImportColumns, ", "))}
		}
		if slices.Contains(cols, c) {
			return nil, &FileError{Message: fmt.Sprintf("column %q appears twice", c)}
		}
		cols[i] = c
	}
	if !slices.Contains(cols, "name") && !slices.Contains(cols, "email") && !slices.Contains(cols, "phone") {
		return nil, &FileError{Message: "the header needs at least one of name, email or phone"}
	}
	return &csvRows{r: cr, limit: limit, bom: bom, cols: cols}, nil
}

func (c *csvRows) Next() (ImportRow, error) {
	rec, err := c.r.Read()
	if errors.Is(err, io.EOF) {
		return ImportRow{}, io.EOF
	}
	c.row++
	var pe *csv.ParseError
	if errors.Is(err, errRowTooLong) {
		return ImportRow{}, rowTooLong(c.row)
	}
	if errors.As(err, &pe) {
		return ImportRow{}, &FileError{Row: c.row, Message: "not valid CSV (" + pe.Err.Error() + ")"}
	}
	if err != nil {
		return ImportRow{}, err
	}
	c.limit.end = c.bom + c.r.InputOffset()
	var row ImportRow
	for _, v := range rec {
		if !utf8.ValidString(v) {
			return ImportRow{}, &FileError{Row: c.row, Message: "not valid UTF-8"}
		}
	}
	if len(rec) != len(c.cols) {
		// RFC 4180: every record has the header's number of fields; a
		// validating proxy refuses the file otherwise, and so does the ledger.
		return ImportRow{}, &FileError{Row: c.row, Message: "has " + strconv.Itoa(len(rec)) + " fields; the header has " + strconv.Itoa(len(c.cols))}
	}
	for i, v := range rec {
		v = strings.TrimSpace(v)
		switch c.cols[i] {
		case "name":
			row.Name = v
		case "email":
			row.Email = v
		case "phone":
			row.Phone = v
		case "job_title":
			row.JobTitle = v
		case "address":
			row.Address = v
		case "external_id":
			row.ExternalID = v
		case "tags":
			row.Tags = SplitTags(v)
		}
	}
	return row, nil
}

type jsonRows struct {
	dec   *json.Decoder
	limit *rowLimiter
	row   int
	end   bool
}

// NewJSONRows reads a JSON import: an array of objects with the fields of
// ImportColumns. An element (or anything between two) longer than
// MaxImportRow is a *FileError.
func NewJSONRows(r io.Reader) (RowReader, error) {
	limit := &rowLimiter{r: r}
	dec := json.NewDecoder(limit)
	t, err := dec.Token()
	if errors.Is(err, errRowTooLong) {
		return nil, rowTooLong(1)
	}
	if err != nil || t != json.Delim('[') {
		return nil, &FileError{Message: "a JSON import is an array of objects"}
	}
	limit.end = dec.InputOffset()
	return &jsonRows{dec: dec, limit: limit}, nil
}

func (j *jsonRows) Next() (ImportRow, error) {
	if j.end {
		return ImportRow{}, io.EOF
	}
	if !j.dec.More() {
		j.end = true
		t, err := j.dec.Token()
		if errors.Is(err, errRowTooLong) {
			return ImportRow{}, rowTooLong(j.row + 1)
		}
		if err != nil || t != json.Delim(']') {
			return ImportRow{}, &FileError{Row: j.row + 1, Message: "not valid JSON"}
		}
		j.limit.end = j.dec.InputOffset()
		if _, err := j.dec.Token(); !errors.Is(err, io.EOF) {
			return ImportRow{}, &FileError{Message: "there is more after the array"}
		}
		return ImportRow{}, io.EOF
	}
	j.row++
	var raw json.RawMessage
	if err := j.dec.Decode(&raw); errors.Is(err, errRowTooLong) {
		return ImportRow{}, rowTooLong(j.row)
	} else if err != nil {
		return ImportRow{}, &FileError{Row: j.row, Message: "not valid JSON"}
	}
	j.limit.end = j.dec.InputOffset()
	if !utf8.Valid(raw) {
		// encoding/json would silently replace it with U+FFFD.
		return ImportRow{}, &FileError{Row: j.row, Message: "not valid UTF-8"}
	}
	// A row's shape is the file's: an element that is not an object, an
	// unknown field or a value of the wrong type makes the file malformed,
	// as an unknown column does in CSV (the description's ImportRow).
	var row ImportRow
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&row); err != nil {
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, errTagList):
			return ImportRow{}, &FileError{Row: j.row, Message: "tags " + errTagList.Error()}
		case errors.As(err, &typ) && typ.Field != "":
			return ImportRow{}, &FileError{Row: j.row, Message: typ.Field + " must be a JSON " + jsonKind(typ.Type.Kind().String())}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			// Not named: a JSON key is whatever the client wrote.
			return ImportRow{}, &FileError{Row: j.row, Message: "has a field that is not one of " + strings.Join(ImportColumns, ", ")}
		default:
			return ImportRow{}, &FileError{Row: j.row, Message: "is not a JSON object"}
		}
	}
	return row, nil
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "string"
	case "slice":
		return "array of strings"
	}
	return k
}
