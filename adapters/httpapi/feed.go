package httpapi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/feed"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
)

// feedQuery reads the change feed's parameters: types (public types,
// comma-separated), include_personal (needs events.personal), and after
// when allowed.
func feedQuery(c echo.Context, qs map[string][]string) (ledger.FeedQuery, error) {
	get := func(k string) string {
		if v := qs[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	q := ledger.FeedQuery{Workspace: principal(c).Workspace, Limit: 100}
	var errs []kernel.FieldError
	if v := get("types"); v != "" {
		var public []string
		for _, t := range strings.Split(v, ",") {
			public = append(public, strings.TrimSpace(t))
		}
		types, err := feed.InternalTypes("types", public)
		if err != nil {
			errs = append(errs, kernel.FieldError{Field: "types", Message: "must be event types such as contact.created, separated by commas"})
		}
		q.Types = types
	}
	var err error
	if q.After, err = kernel.ParsePosition(get("after")); err != nil {
		errs = append(errs, kernel.FieldError{Field: "after", Message: "is not a position returned by this service"})
	}
	if v := get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > ledger.MaxFeedPage {
			errs = append(errs, kernel.FieldError{Field: "limit", Message: "must be a whole number from 1 to 1000"})
		}
		q.Limit = n
	}
	switch get("include_personal") {
	case "", "false":
	case "true":
		q.Personal = true
	default:
		errs = append(errs, kernel.FieldError{Field: "include_personal", Message: "must be true or false"})
	}
	if len(errs) > 0 {
		return ledger.FeedQuery{}, kernel.Invalid(errs...)
	}
	if q.Personal {
		if err := mayReceivePersonal(c); err != nil {
			return ledger.FeedQuery{}, err
		}
	}
	return q, nil
}

// mayReceivePersonal refuses a caller whose role may not receive personal
// values in the change feed (events.personal in the permission table).
func mayReceivePersonal(c echo.Context) error {
	if !slices.Contains(Permissions["events.personal"], principal(c).Role) {
		return kernel.Errorf(kernel.ErrRoleNotAllowed, "the %s role may not receive personal fields (events.personal)", principal(c).Role)
	}
	return nil
}

// FeedPageJSON is one page of the change feed.
type FeedPageJSON struct {
	// Events are CloudEvents in the JSON format, in the log's order.
	Events []json.RawMessage `json:"events"`
	// NextAfter is the position to pass as after for the next page.
	NextAfter string `json:"next_after"`
	HasMore   bool   `json:"has_more"`
}

var feedParams = map[string]bool{"after": true, "types": true, "limit": true, "include_personal": true}

// listEvents answers one page of the workspace's change feed, after a
// position, reading the caller's own writes.
func (s *Server) listEvents(c echo.Context) error {
	qs, err := strictQuery(c, feedParams)
	if err != nil {
		return err
	}
	q, err := feedQuery(c, qs)
	if err != nil {
		return err
	}
	page, err := s.svc.Feed(c.Request().Context(), q)
	if err != nil {
		return err
	}
	out := FeedPageJSON{Events: make([]json.RawMessage, len(page.Events)), NextAfter: page.Last.String(), HasMore: page.More}
	for i, e := range page.Events {
		out.Events[i] = e.Body
	}
	return ok(c, http.StatusOK, out)
}

var streamParams = map[string]bool{"after": true, "types": true, "include_personal": true}

// streamEvents streams the change feed as Server-Sent Events: each event's
// id is its position, so a client that reconnects with Last-Event-ID
// resumes right after the last event it got, with nothing lost or
// repeated. Without a position the stream starts with the events committed
// from now on. An idle stream sends a comment every heartbeat; a
// connection lasts at most the stream lifetime, and the client reconnects.
func (s *Server) streamEvents(c echo.Context) error {
	qs, err := strictQuery(c, streamParams)
	if err != nil {
		return err
	}
	q, err := feedQuery(c, qs)
	if err != nil {
		return err
	}
	q.Limit = ledger.MaxFeedPage
	ctx := c.Request().Context()
	if last := c.Request().Header.Get("Last-Event-ID"); last != "" {
		if q.After, err = kernel.ParsePosition(last); err != nil {
			return kernel.Invalid(kernel.FieldError{Field: "Last-Event-ID", Message: "is not a position returned by this service"})
		}
	} else if qs.Get("after") == "" {
		if q.After, err = s.svc.FeedHead(ctx); err != nil {
			return err
		}
	}
	res := c.Response()
	rc := http.NewResponseController(res.Writer)
	h := res.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	res.WriteHeader(http.StatusOK)
	w := bufio.NewWriterSize(res, 64<<10)
	flush := func() error {
		if err := w.Flush(); err != nil {
			return err
		}
		res.Flush()
		return nil
	}
	_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
	// Tell the client how soon to reconnect when the connection ends.
	w.WriteString("retry: 1000\n\n")
	if err := flush(); err != nil {
		return nil
	}
	end := time.NewTimer(s.streamLifetime)
	defer end.Stop()
	beat := time.NewTicker(s.heartbeat)
	defer beat.Stop()
	for {
		wake := s.svc.LogChanged()
		page, err := s.svc.FeedNow(ctx, q)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("event stream ended early", "request_id", requestID(c), "err", err)
			}
			return nil
		}
		_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
		for _, e := range page.Events {
			w.WriteString("id: " + e.Event.Position + "\nevent: " + e.Event.Type + "\ndata: ")
			w.Write(e.Body)
			w.WriteString("\n\n")
		}
		if len(page.Events) > 0 {
			if err := flush(); err != nil {
				return nil
			}
		}
		q.After = page.Last
		if page.More {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-end.C:
			return nil
		case <-beat.C:
			_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
			w.WriteString(": heartbeat\n\n")
			if err := flush(); err != nil {
				return nil
			}
		case <-wake:
		case <-time.After(time.Second):
		}
	}
}
