package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
)

// MaxImport is the largest import file accepted. Imports stream, so this
// bounds the disk the spooled copy takes, not memory.
const MaxImport = 512 << 20

// ImportTimeout bounds one import request.
const ImportTimeout = time.Hour

const importPath = "/v1/contacts/import"

// importContacts spools the body to a private file (so a file of any size
// streams through a bounded amount of memory), checks it whole, and only
// then imports it, streaming each row's result back.
func (s *Server) importContacts(c echo.Context) error {
	qs, err := queryParams(c)
	if err != nil {
		return err
	}
	for k := range qs {
		if k != "source" {
			return unknownParam()
		}
	}
	source := qs.Get("source")
	if err := ledger.ValidateImportSource(source); err != nil {
		return err
	}
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil {
		mt = ""
	}
	if mt != "text/csv" && mt != "application/csv" && mt != "application/json" {
		return unsupportedMedia("send the import as text/csv or application/json")
	}
	m, err := meta(c)
	if err != nil {
		return err
	}
	// Every event of the import names it as its operation.
	m.Operation = ledger.OperationImport + m.CorrelationID
	ctx, cancel := context.WithTimeout(c.Request().Context(), ImportTimeout)
	defer cancel()
	w := c.Response()
	rc := http.NewResponseController(w.Writer)
	_ = rc.SetReadDeadline(time.Now().Add(ImportTimeout))

	f, err := os.CreateTemp(s.spoolDir, "import-*")
	if err != nil {
		return err
	}
	defer func() { f.Close(); os.Remove(f.Name()) }()
	if _, err := io.Copy(f, http.MaxBytesReader(w, c.Request().Body, MaxImport)); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &kernel.Error{Code: kernel.CodeTooLarge, Reason: "import-too-large", Message: "the import file is over the limit of " + strconv.Itoa(MaxImport>>20) + " MiB; split it"}
		}
		var appErr *kernel.Error
		if errors.As(err, &appErr) {
			return err // the Idempotency-Key's request differs (see idempotent)
		}
		return badRequest("unreadable-body", "the request body could not be read")
	}
	open := func() (ledger.RowReader, error) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		return ledger.ImportRows(mt, f)
	}
	rows, err := open()
	if err != nil {
		return err
	}
	if _, err := ledger.CheckImport(rows); err != nil {
		return err
	}
	if rows, err = open(); err != nil {
		return err
	}

	// The file is sound: from here on the answer is 200 and streams.
	w.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	src, _ := json.Marshal(source)
	op, _ := json.Marshal(m.Operation)
	bw.WriteString(`{"source":` + string(src) + `,"operation":` + string(op) + `,"results":[`)
	n := 0
	totals, err := s.svc.Import(ctx, principal(c).Workspace, m, source, rows, func(r ledger.RowResult) error {
		b, _ := json.Marshal(r)
		if n > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n")
		bw.Write(b)
		if n++; n%200 == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
			_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
			return rc.Flush()
		}
		return nil
	})
	tb, _ := json.Marshal(totals)
	bw.WriteString("\n],\"totals\":" + string(tb))
	if err != nil {
		p := s.problem(c, err)
		pb, _ := json.Marshal(p)
		bw.WriteString(`,"error":` + string(pb))
	}
	bw.WriteString("}\n")
	return bw.Flush()
}
