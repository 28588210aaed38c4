package httpapi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"time"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/labstack/echo/v4"
)

// auditParams are the query parameters of GET /v1/audit/events.
var auditParams = map[string]bool{"since": true, "until": true, "type": true, "actor": true, "contact": true, "after": true, "limit": true}

// auditEvents streams the workspace's log as NDJSON, one event per line in
// global order, page by page: each page is written and flushed before the
// next is read, so memory stays constant however long the log. A client
// that loses the connection resumes with after=<position of the last line>.
func (s *Server) auditEvents(c echo.Context) error {
	qs, err := strictQuery(c, auditParams)
	if err != nil {
		return err
	}
	flat := map[string]string{}
	for k := range qs {
		flat[k] = qs.Get(k)
	}
	q, err := wire.ParseLogQuery(principal(c).Workspace, flat)
	if err != nil {
		return err
	}
	res := c.Response()
	rc := http.NewResponseController(res.Writer)
	started := false
	w := bufio.NewWriterSize(res, 64<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	err = s.svc.AuditLog(c.Request().Context(), q, func(recs []kernel.Record) error {
		if !started {
			res.Header().Set(echo.HeaderContentType, "application/x-ndjson")
			res.WriteHeader(http.StatusOK)
			started = true
		}
		// Each page gets its own write deadline, so a long export is not cut
		// by the server's write timeout while a stalled client still is.
		_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
		for _, r := range recs {
			if err := enc.Encode(wire.EventJSON(r, true)); err != nil {
				return err
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
		res.Flush()
		return nil
	})
	if err != nil && started {
		// The status is sent: end the stream; the client resumes from its last line.
		s.log.Warn("audit log stream ended early", "request_id", requestID(c), "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	if !started {
		res.Header().Set(echo.HeaderContentType, "application/x-ndjson")
		res.WriteHeader(http.StatusOK)
	}
	return nil
}
