package httpapi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
)

// auditParams are the query parameters of GET /v1/audit/events.
var auditParams = map[string]bool{"since": true, "until": true, "type": true, "actor": true, "contact": true, "after": true, "limit": true}

// maxAuditLimit bounds the limit parameter (without it, the stream runs to the end of the log).
const maxAuditLimit = 1_000_000

// ParseLogQuery reads the audit log's filters from query parameters (the
// API's and the command line's): since/until are RFC 3339 times, type a
// comma-separated list of event types, contact a contact id, after a
// position the log returned.
func ParseLogQuery(workspace string, qs map[string]string) (ledger.LogQuery, error) {
	q := ledger.LogQuery{Workspace: workspace}
	var errs []kernel.FieldError
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		t, ferr := parseTime(f.name, qs[f.name])
		if ferr != nil {
			errs = append(errs, *ferr)
		}
		*f.dst = t
	}
	if v := qs["type"]; v != "" {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if !contact.KnownType(t) {
				errs = append(errs, kernel.FieldError{Field: "type", Message: "must be event types such as ContactPurged, separated by commas"})
				break
			}
			q.Types = append(q.Types, t)
		}
	}
	if v := qs["actor"]; v != "" {
		if len(v) > 100 {
			errs = append(errs, kernel.FieldError{Field: "actor", Message: "is too long"})
		}
		q.Actor = v
	}
	if v := qs["contact"]; v != "" {
		id, err := contact.ParseID(v)
		if err != nil {
			errs = append(errs, kernel.FieldError{Field: "contact", Message: "is not a contact id"})
		}
		q.Stream = id.Stream()
	}
	var err error
	if q.After, err = kernel.ParsePosition(qs["after"]); err != nil {
		errs = append(errs, kernel.FieldError{Field: "after", Message: "is not a position returned by this service"})
	}
	if v := qs["limit"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditLimit {
			errs = append(errs, kernel.FieldError{Field: "limit", Message: "must be a whole number from 1 to 1000000"})
		}
		q.Limit = n
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		errs = append(errs, kernel.FieldError{Field: "until", Message: "must be after since"})
	}
	if len(errs) > 0 {
		return ledger.LogQuery{}, kernel.Invalid(errs...)
	}
	return q, nil
}

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
	q, err := ParseLogQuery(principal(c).Workspace, flat)
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
			if err := enc.Encode(EventJSON(r, true)); err != nil {
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
