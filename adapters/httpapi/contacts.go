package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
)

// SourceJSON is where a contact came from.
type SourceJSON struct {
	System     string `json:"system"`
	ExternalID string `json:"external_id,omitempty"`
}

// ContactJSON is a contact as the API shows it.
type ContactJSON struct {
	ID           string                        `json:"id"`
	State        contact.State                 `json:"state"`
	Version      uint64                        `json:"version"`
	Position     string                        `json:"position,omitempty"`
	Name         string                        `json:"name,omitempty"`
	Email        string                        `json:"email,omitempty"`
	Phone        string                        `json:"phone,omitempty"`
	JobTitle     string                        `json:"job_title,omitempty"`
	Address      string                        `json:"address,omitempty"`
	CustomFields map[string]string             `json:"custom_fields,omitempty"`
	Tags         []string                      `json:"tags"`
	Lists        map[string]contact.ListStatus `json:"lists"`
	Links        []contact.Link                `json:"links"`
	NoteCount    int                           `json:"note_count"`
	Spam         bool                          `json:"spam"`
	SpamAt       *time.Time                    `json:"spam_at,omitempty"`
	Source       *SourceJSON                   `json:"source,omitempty"`
	Shredded     bool                          `json:"shredded,omitempty"`
	CreatedAt    time.Time                     `json:"created_at"`
	UpdatedAt    time.Time                     `json:"updated_at"`
	ArchivedAt   *time.Time                    `json:"archived_at,omitempty"`
	TrashedAt    *time.Time                    `json:"trashed_at,omitempty"`
	TrashedBy    string                        `json:"trashed_by,omitempty"`
	TrashReason  string                        `json:"trash_reason,omitempty"`
	// TrashedOperation is the operation that moved the contact to trash:
	// restore what it trashed with a restore job's operation filter.
	TrashedOperation string             `json:"trashed_operation,omitempty"`
	PurgeAfter       *time.Time         `json:"purge_after,omitempty"`
	Tombstone        *contact.Tombstone `json:"tombstone,omitempty"`
	Hold             *contact.Hold      `json:"hold,omitempty"`
	// Operation, DryRun and Effect are set in the answers of commands: the
	// operation the command was part of, whether it was only a dry run, and
	// what it did (or would do).
	Operation string      `json:"operation,omitempty"`
	DryRun    bool        `json:"dry_run,omitempty"`
	Effect    *EffectJSON `json:"effect,omitempty"`
}

// EffectJSON is what a command did, or in a dry run would do, to a contact.
type EffectJSON struct {
	From         contact.State `json:"from"`
	To           contact.State `json:"to"`
	Notes        int           `json:"notes"`
	Tags         int           `json:"tags"`
	Lists        int           `json:"lists"`
	Links        int           `json:"links"`
	KeyDestroyed bool          `json:"key_destroyed"`
	Events       []string      `json:"events"`
}

// effectJSON renders an effect; nil when the command changed nothing.
func effectJSON(e ledger.Effect) *EffectJSON {
	if len(e.Events) == 0 {
		return nil
	}
	return &EffectJSON{From: e.From, To: e.To, Notes: e.Notes, Tags: e.Tags, Lists: e.Lists, Links: e.Links, KeyDestroyed: e.KeyDestroyed, Events: e.Events}
}

func contactJSON(v ledger.View) ContactJSON {
	p := v.Personal
	out := ContactJSON{
		ID: v.ID.String(), State: v.State, Version: v.Version,
		Name: p.Name, Email: p.Email, Phone: p.Phone, JobTitle: p.JobTitle, Address: p.Address, CustomFields: p.CustomFields,
		Tags: v.Tags, Lists: v.Lists, Links: v.Links, NoteCount: v.NoteCount, Spam: v.Spam, SpamAt: v.SpamAt, Shredded: v.Shredded, CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt,
		ArchivedAt: v.ArchivedAt, TrashedAt: v.TrashedAt, TrashReason: v.TrashReason, PurgeAfter: v.PurgeAfter, Tombstone: v.Tombstone,
		TrashedOperation: v.TrashedOperation, Hold: v.Hold,
	}
	if !v.Position.IsZero() {
		out.Position = v.Position.String()
	}
	if v.TrashedBy != nil {
		out.TrashedBy = v.TrashedBy.Principal
	}
	if v.Source != "" {
		out.Source = &SourceJSON{System: v.Source, ExternalID: p.ExternalID}
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if out.Lists == nil {
		out.Lists = map[string]contact.ListStatus{}
	}
	if out.Links == nil {
		out.Links = []contact.Link{}
	}
	return out
}

func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }

// meta builds the command metadata of a request: the actor, the request id
// as correlation id, and the If-Match precondition.
func meta(c echo.Context) (ledger.Meta, error) {
	m := ledger.Meta{Actor: principal(c).Actor(), CorrelationID: requestID(c)}
	if seed, ok := c.Get(idempotencyKey).(idempotencySeed); ok {
		m.IdempotencyKey, m.IdempotentSince = seed.key, seed.since
	}
	if h := c.Request().Header.Get("If-Match"); h != "" {
		v := strings.TrimPrefix(strings.TrimSpace(h), "W/")
		n, err := strconv.ParseUint(strings.Trim(v, `"`), 10, 64)
		if err != nil {
			return ledger.Meta{}, badRequest("invalid-if-match", `If-Match must be the ETag of the contact, such as "3"`)
		}
		m.IfMatch = &n
	}
	return m, nil
}

func contactID(c echo.Context) (contact.ID, error) { return contact.ParseID(c.Param("id")) }

type createRequest struct {
	Name         string            `json:"name"`
	Email        string            `json:"email"`
	Phone        string            `json:"phone"`
	JobTitle     string            `json:"job_title"`
	Address      string            `json:"address"`
	CustomFields map[string]string `json:"custom_fields"`
	Tags         []string          `json:"tags"`
	Source       *SourceJSON       `json:"source"`
}

// Draft turns the request into the domain's input.
func (r createRequest) Draft() contact.Draft {
	d := contact.Draft{
		Personal: contact.Personal{Name: r.Name, Email: r.Email, Phone: r.Phone, JobTitle: r.JobTitle, Address: r.Address, CustomFields: r.CustomFields},
		Tags:     r.Tags,
	}
	if r.Source != nil {
		d.Source, d.Personal.ExternalID = r.Source.System, r.Source.ExternalID
	}
	return d
}

// DecodeCreate decodes the body of POST /v1/contacts.
func DecodeCreate(body []byte) (contact.Draft, error) {
	var r createRequest
	if err := DecodeJSON(body, &r); err != nil {
		return contact.Draft{}, err
	}
	return r.Draft(), nil
}

func (s *Server) createContact(c echo.Context) error {
	var r createRequest
	if err := decode(c, &r, false); err != nil {
		return err
	}
	m, err := meta(c)
	if err != nil {
		return err
	}
	res, err := s.svc.Create(c.Request().Context(), principal(c).Workspace, m, r.Draft())
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/v1/contacts/"+res.Contact.ID.String())
	return commandResult(c, http.StatusCreated, res)
}

func commandResult(c echo.Context, status int, res ledger.Result) error {
	out := contactJSON(res.Contact)
	out.Operation, out.DryRun, out.Effect = res.Operation, res.DryRun, effectJSON(res.Effect)
	if res.DryRun {
		// Nothing happened: the ETag is the version the contact is at (the
		// one to send as If-Match with the real run), and there is no
		// position to wait for.
		c.Response().Header().Set("ETag", etag(res.Current))
		out.Position = ""
		return ok(c, status, out)
	}
	c.Response().Header().Set("ETag", etag(res.Version))
	out.Position = res.Position.String()
	return ok(c, status, out)
}

// DecodePatch decodes the body of PATCH /v1/contacts/{id}, a JSON merge
// patch: a field that is present is set, null clears it, absent ones stay.
func DecodePatch(body []byte) (contact.Patch, error) {
	var raw map[string]json.RawMessage
	if err := DecodeJSON(body, &raw); err != nil {
		return contact.Patch{}, err
	}
	if raw == nil {
		return contact.Patch{}, badRequest("malformed-json", "the body must be a JSON object")
	}
	var p contact.Patch
	str := func(field string, v json.RawMessage) (*string, error) {
		if string(v) == "null" {
			e := ""
			return &e, nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, kernel.Invalid(kernel.FieldError{Field: field, Message: "must be a JSON string or null"})
		}
		return &s, nil
	}
	for k, v := range raw {
		var err error
		switch k {
		case "name":
			p.Name, err = str(k, v)
		case "email":
			p.Email, err = str(k, v)
		case "phone":
			p.Phone, err = str(k, v)
		case "job_title":
			p.JobTitle, err = str(k, v)
		case "address":
			p.Address, err = str(k, v)
		case "custom_fields":
			var m map[string]*string
			if err = json.Unmarshal(v, &m); err != nil {
				err = kernel.Invalid(kernel.FieldError{Field: k, Message: "must be an object of strings or nulls"})
			}
			p.CustomFields = m
		default:
			return contact.Patch{}, unknownField(k, "is not a field that PATCH can change")
		}
		if err != nil {
			return contact.Patch{}, err
		}
	}
	return p, nil
}

func (s *Server) updateContact(c echo.Context) error {
	id, err := contactID(c)
	if err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	p, err := DecodePatch(body)
	if err != nil {
		return err
	}
	m, err := meta(c)
	if err != nil {
		return err
	}
	res, err := s.svc.Update(c.Request().Context(), principal(c).Workspace, id, m, p)
	if err != nil {
		return err
	}
	return commandResult(c, http.StatusOK, res)
}

// readBody reads a JSON body as decode does, without decoding it.
func readBody(c echo.Context) ([]byte, error) {
	var raw json.RawMessage
	if err := decode(c, &raw, false); err != nil {
		return nil, err
	}
	return raw, nil
}

type transitionRequest struct {
	Reason     string `json:"reason"`
	Request    string `json:"request"`
	DryRun     bool   `json:"dry_run"`
	OnConflict string `json:"on_conflict"`
}

// DecodeTransition decodes the optional body of a lifecycle command, and
// whether it asks for a dry run.
func DecodeTransition(t ledger.Transition, body []byte) (ledger.TransitionInput, bool, error) {
	var r transitionRequest
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := DecodeJSON(body, &r); err != nil {
			return ledger.TransitionInput{}, false, err
		}
	}
	if r.Request != "" && !t.Erasing() {
		return ledger.TransitionInput{}, false, &kernel.Error{Code: kernel.CodeBadRequest, Reason: "unknown-field", Message: `"request" is only accepted by purge and anonymize`,
			Fields: []kernel.FieldError{{Field: "request", Message: "only for purge and anonymize"}}}
	}
	keepBoth, err := onConflict(t, r.OnConflict)
	if err != nil {
		return ledger.TransitionInput{}, false, err
	}
	return ledger.TransitionInput{Reason: r.Reason, Request: r.Request, KeepBoth: keepBoth}, r.DryRun, nil
}

// onConflict reads a restore's on_conflict: "refuse" (the default) answers
// 409 identity-taken when a live contact holds the restored one's email or
// phone now; "keep_both" restores it all the same, and the restore's event
// records the choice.
func onConflict(t ledger.Transition, v string) (bool, error) {
	switch {
	case v == "" || v == "refuse":
		return false, nil
	case t != ledger.Restore:
		return false, &kernel.Error{Code: kernel.CodeBadRequest, Reason: "unknown-field", Message: `"on_conflict" is only accepted by restores`,
			Fields: []kernel.FieldError{{Field: "on_conflict", Message: "only for restore"}}}
	case v == "keep_both":
		return true, nil
	}
	return false, kernel.Invalid(kernel.FieldError{Field: "on_conflict", Message: "must be refuse or keep_both"})
}

func (s *Server) transition(t ledger.Transition) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := contactID(c)
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := decode(c, &raw, true); err != nil {
			return err
		}
		in, dry, err := DecodeTransition(t, raw)
		if err != nil {
			return err
		}
		m, err := meta(c)
		if err != nil {
			return err
		}
		m.DryRun = dry
		res, err := s.svc.Transition(c.Request().Context(), principal(c).Workspace, id, m, t, in)
		if err != nil {
			return err
		}
		return commandResult(c, http.StatusOK, res)
	}
}

func (s *Server) getContact(c echo.Context) error {
	id, err := contactID(c)
	if err != nil {
		return err
	}
	v, err := s.svc.Get(c.Request().Context(), principal(c).Workspace, id)
	if err != nil {
		return err
	}
	if v.State == contact.StatePurged {
		g := &goneError{err: kernel.Errorf(contact.ErrPurged, "the contact was permanently deleted; its tombstone stays in the audit trail")}
		if v.Tombstone != nil {
			g.eventID, g.at = v.Tombstone.EventID, v.Tombstone.At.Format(time.RFC3339Nano)
		}
		return g
	}
	c.Response().Header().Set("ETag", etag(v.Version))
	return ok(c, http.StatusOK, contactJSON(v))
}

// historyParams are the query parameters of GET /v1/contacts/{id}/history.
var historyParams = map[string]bool{"as_of": true, "version": true}

// strictQuery parses the query string, refusing unknown and repeated parameters.
func strictQuery(c echo.Context, known map[string]bool) (url.Values, error) {
	qs, err := queryParams(c)
	if err != nil {
		return nil, err
	}
	for k, v := range qs {
		if !known[k] {
			return nil, unknownParam()
		}
		if len(v) > 1 {
			return nil, repeatedParam(k)
		}
	}
	return qs, nil
}

func (s *Server) history(c echo.Context) error {
	id, err := contactID(c)
	if err != nil {
		return err
	}
	qs, err := strictQuery(c, historyParams)
	if err != nil {
		return err
	}
	var errs []kernel.FieldError
	asOf, ferr := wire.ParseTime("as_of", qs.Get("as_of"))
	if ferr != nil {
		errs = append(errs, *ferr)
	}
	var version uint64
	if v := qs.Get("version"); v != "" {
		if version, err = strconv.ParseUint(v, 10, 64); err != nil || version == 0 {
			errs = append(errs, kernel.FieldError{Field: "version", Message: "must be a whole number from 1"})
		}
	}
	if len(errs) > 0 {
		return kernel.Invalid(errs...)
	}
	tr, err := s.svc.Trail(c.Request().Context(), principal(c).Workspace, id, asOf, version)
	if err != nil {
		return err
	}
	out := map[string]any{
		"id": id.String(), "events": wire.HistoryJSON(tr.Entries, false), "state": contactJSON(ledger.View{Snapshot: tr.State}),
		"version": tr.State.Version, "current_version": tr.Current,
	}
	if !asOf.IsZero() {
		out["as_of"] = asOf
	}
	return ok(c, http.StatusOK, out)
}

// listParams are the query parameters GET /v1/contacts accepts.
var listParams = map[string]bool{
	"view": true, "q": true, "limit": true, "cursor": true, "email": true, "phone": true, "tag": true,
	"deleted_by": true, "deleted_after": true, "deleted_before": true, "min_position": true,
}

// cursor is what an opaque cursor holds: the view, a fingerprint of the
// filters, and the last item's place in the order.
type cursor struct {
	View   string `json:"v"`
	Filter string `json:"f"`
	SortAt int64  `json:"t"`
	ID     string `json:"i"`
}

// filterPrint fingerprints a list query's filters, so a cursor is only
// accepted with the filters it was made for.
func filterPrint(q url.Values) string {
	h := hmac.New(sha256.New, []byte("cursor"))
	for _, k := range []string{"q", "email", "phone", "tag", "deleted_by", "deleted_after", "deleted_before"} {
		h.Write([]byte(k + "=" + q.Get(k) + "\x00"))
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:8])
}

// EncodeCursor makes the opaque cursor of the next page.
func EncodeCursor(view, filter string, next ledger.Cursor) string {
	b, _ := json.Marshal(cursor{View: view, Filter: filter, SortAt: next.SortAt.UnixMicro(), ID: next.ID})
	return base64.RawURLEncoding.EncodeToString(b)
}

var errBadCursor = badRequest("invalid-cursor", "the cursor is not one this query returned; start again without it")

// DecodeCursor checks and decodes a cursor made by EncodeCursor for the same view and filters.
func DecodeCursor(s, view, filter string) (*ledger.Cursor, error) {
	if len(s) > 512 {
		return nil, errBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errBadCursor
	}
	var cur cursor
	if err := DecodeJSON(b, &cur); err != nil {
		return nil, errBadCursor
	}
	if cur.View != view || cur.Filter != filter || cur.SortAt <= 0 {
		return nil, errBadCursor
	}
	if _, err := contact.ParseID(cur.ID); err != nil {
		return nil, errBadCursor
	}
	return &ledger.Cursor{SortAt: time.UnixMicro(cur.SortAt).UTC(), ID: cur.ID}, nil
}

// queryParams parses the query string strictly: a malformed one is a 400,
// not silently dropped pairs.
func queryParams(c echo.Context) (url.Values, error) {
	qs, err := url.ParseQuery(c.Request().URL.RawQuery)
	if err != nil {
		return nil, badRequest("malformed-query", "the query string is not validly encoded")
	}
	return qs, nil
}

func (s *Server) listContacts(c echo.Context) error {
	qs, err := queryParams(c)
	if err != nil {
		return err
	}
	for k, v := range qs {
		if !listParams[k] {
			return unknownParam()
		}
		if len(v) > 1 {
			return repeatedParam(k)
		}
	}
	q := ledger.ListQuery{Workspace: principal(c).Workspace, View: qs.Get("view"), Q: strings.TrimSpace(qs.Get("q")), Tag: qs.Get("tag"), DeletedBy: qs.Get("deleted_by"), Limit: 50}
	if q.View == "" {
		q.View = "active"
	}
	if _, known := ledger.Views[q.View]; !known {
		return kernel.Invalid(kernel.FieldError{Field: "view", Message: "must be active, archived, trash or anonymized"})
	}
	var errs []kernel.FieldError
	if l := qs.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 200 {
			errs = append(errs, kernel.FieldError{Field: "limit", Message: "must be a whole number from 1 to 200"})
		}
		q.Limit = n
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"deleted_after", &q.DeletedAfter}, {"deleted_before", &q.DeletedBefore}} {
		if v := qs.Get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				errs = append(errs, kernel.FieldError{Field: f.name, Message: "must be a time in RFC 3339 form, such as 2026-01-31T00:00:00Z"})
			}
			*f.dst = t
			if q.View != "trash" {
				errs = append(errs, kernel.FieldError{Field: f.name, Message: "filters view=trash only"})
			}
		}
	}
	if q.DeletedBy != "" && q.View != "trash" {
		errs = append(errs, kernel.FieldError{Field: "deleted_by", Message: "filters view=trash only"})
	}
	for _, f := range []struct {
		name string
		max  int
	}{{"q", contact.MaxNameLen}, {"tag", contact.MaxTagLen}, {"deleted_by", 100}, {"email", contact.MaxEmailLen}, {"phone", 40}} {
		if len(qs.Get(f.name)) > f.max {
			errs = append(errs, kernel.FieldError{Field: f.name, Message: "is too long"})
		}
	}
	minPos, perr := kernel.ParsePosition(qs.Get("min_position"))
	if perr != nil {
		errs = append(errs, kernel.FieldError{Field: "min_position", Message: "is not a position returned by this service"})
	}
	if len(errs) > 0 {
		return kernel.Invalid(errs...)
	}
	filter := filterPrint(qs)
	if cur := qs.Get("cursor"); cur != "" {
		if q.After, err = DecodeCursor(cur, q.View, filter); err != nil {
			return err
		}
	}
	page, err := s.svc.List(c.Request().Context(), q, minPos, qs.Get("email"), qs.Get("phone"))
	if err != nil {
		return err
	}
	items := make([]ContactJSON, 0, len(page.Items))
	for _, v := range page.Items {
		items = append(items, contactJSON(v))
	}
	out := map[string]any{"items": items, "next_cursor": nil}
	if page.Next != nil {
		out["next_cursor"] = EncodeCursor(q.View, filter, *page.Next)
	}
	return ok(c, http.StatusOK, out)
}
