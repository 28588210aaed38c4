package wire

import (
	"strconv"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

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
		t, ferr := ParseTime(f.name, qs[f.name])
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
