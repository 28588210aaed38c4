package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

// pageSize is how many contacts a list page shows.
const pageSize = 50

// viewOption is an entry of the "Show" menu.
type viewOption struct {
	Value, Label string
	Selected     bool
}

var viewLabels = []struct{ value, label string }{
	{"active", "Active contacts"}, {"archived", "Archived contacts"}, {"trash", "Deleted contacts (trash)"}, {"anonymized", "Anonymized contacts"},
}

// listFilter is a list's filters as the form holds them.
type listFilter struct {
	View, Q, Email, Phone, Tag, DeletedBy, DeletedFrom, DeletedTo string
}

// values returns the filters as query parameters (empty ones left out).
func (f listFilter) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"view": f.View, "q": f.Q, "email": f.Email, "phone": f.Phone, "tag": f.Tag,
		"deleted_by": f.DeletedBy, "deleted_from": f.DeletedFrom, "deleted_to": f.DeletedTo} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// Filtered reports whether any filter beyond the view is set.
func (f listFilter) Filtered() bool {
	return len(f.values()) > 1 || (f.View == "" && len(f.values()) > 0)
}

// bulkAction is an action of the bulk bar.
// Confirm is the dialog's question, with {n} for the selected count.
type bulkAction struct {
	Value, Label, Confirm string
	Erasing               bool
}

var bulkActions = map[string][]bulkAction{
	"active": {{"archive", "Archive", "Archive {n} selected contacts?", false},
		{"trash", "Delete", "Move {n} selected contacts to trash?", false}},
	"archived": {{"unarchive", "Unarchive", "Unarchive {n} selected contacts?", false},
		{"trash", "Delete", "Move {n} selected contacts to trash?", false}},
	"trash": {{"restore", "Restore", "Restore {n} selected contacts?", false},
		{"purge", "Delete forever", "Delete {n} selected contacts forever? This cannot be undone.", true},
		{"anonymize", "Anonymize", "Anonymize {n} selected contacts? This cannot be undone.", true}},
}

type contactsPage struct {
	Filter     listFilter
	Views      []viewOption
	Items      []ledger.View
	Next       string
	First      string
	Back       string
	Actions    []bulkAction
	Trash      bool
	Select     bool
	Restore    bool // the role may restore one contact from the list
	RestoreAll bool
	Erase      erasureList
}

// erasureList is what a "delete forever" erases and keeps (article 004).
type erasureList struct {
	Erased    []string
	PurgeKept []string
	AnonKept  []string
}

var erasure = erasureList{
	Erased: []string{"Name", "Email", "Phone number", "Job title", "Address", "All custom field values", "The source's external id",
		"Notes' text", "The contact's encryption key (so every copy of the above in the log becomes unreadable)",
		"The contact's rows in every view, its search indexes and stored answers"},
	PurgeKept: []string{"A tombstone event: who deleted it, when, why, under which request",
		"The contact's events, with their personal parts as ciphertext no one can decrypt",
		"The audit trail's hash chain, so the erasure can be proven with a signed receipt"},
	AnonKept: []string{"A \"Deleted contact\" shell with its tags, lists and links, so reports and related records keep their counts",
		"The contact's events, with their personal parts as ciphertext no one can decrypt",
		"The audit trail's hash chain, so the erasure can be proven with a signed receipt"},
}

// parseFilter reads a list's filters from the query and turns them into a store query.
func parseFilter(r *http.Request) (listFilter, ledger.ListQuery, error) {
	qs := r.URL.Query()
	f := listFilter{View: qs.Get("view"), Q: strings.TrimSpace(qs.Get("q")), Email: strings.TrimSpace(qs.Get("email")),
		Phone: strings.TrimSpace(qs.Get("phone")), Tag: strings.TrimSpace(qs.Get("tag")), DeletedBy: strings.TrimSpace(qs.Get("deleted_by")),
		DeletedFrom: qs.Get("deleted_from"), DeletedTo: qs.Get("deleted_to")}
	if f.View == "" {
		f.View = "active"
	}
	q := ledger.ListQuery{Workspace: principal(r).Workspace, View: f.View, Q: f.Q, Tag: f.Tag, Limit: pageSize}
	var errs []kernel.FieldError
	if _, ok := ledger.Views[f.View]; !ok {
		errs = append(errs, kernel.FieldError{Field: "view", Message: "must be active, archived, trash or anonymized"})
	}
	if f.View == "trash" {
		q.DeletedBy = f.DeletedBy
		for _, d := range []struct {
			name, v string
			dst     *time.Time
			add     int
		}{{"deleted_from", f.DeletedFrom, &q.DeletedAfter, 0}, {"deleted_to", f.DeletedTo, &q.DeletedBefore, 1}} {
			if d.v == "" {
				continue
			}
			t, err := time.Parse(time.DateOnly, d.v)
			if err != nil {
				errs = append(errs, kernel.FieldError{Field: d.name, Message: "must be a date such as 2026-01-31"})
				continue
			}
			*d.dst = t.AddDate(0, 0, d.add) // "to" includes the whole day
		}
	}
	for _, l := range []struct {
		name, v string
		max     int
	}{{"q", f.Q, contact.MaxNameLen}, {"tag", f.Tag, contact.MaxTagLen}, {"deleted_by", f.DeletedBy, 100}, {"email", f.Email, contact.MaxEmailLen}, {"phone", f.Phone, 40}} {
		if len(l.v) > l.max {
			errs = append(errs, kernel.FieldError{Field: l.name, Message: "is too long"})
		}
	}
	if cur := qs.Get("cursor"); cur != "" {
		at, id, ok := strings.Cut(cur, "-")
		us, err := strconv.ParseInt(at, 10, 64)
		if _, idErr := contact.ParseID(id); !ok || err != nil || idErr != nil || us <= 0 {
			errs = append(errs, kernel.FieldError{Field: "cursor", Message: "is not a page this list gave"})
		} else {
			q.After = &ledger.Cursor{SortAt: time.UnixMicro(us).UTC(), ID: id}
		}
	}
	if len(errs) > 0 {
		return f, q, kernel.Invalid(errs...)
	}
	return f, q, nil
}

func (c *Console) contacts(w http.ResponseWriter, r *http.Request) {
	f, q, err := parseFilter(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	page, err := c.o.Queries.List(r.Context(), q, kernel.Position{}, f.Email, f.Phone)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	role := principal(r).Role
	data := contactsPage{Filter: f, Items: page.Items, Trash: f.View == "trash", Erase: erasure}
	for _, v := range viewLabels {
		data.Views = append(data.Views, viewOption{v.value, v.label, v.value == f.View})
	}
	for _, a := range bulkActions[f.View] {
		if ledger.Allowed(role, "contacts."+a.Value) && ledger.Allowed(role, "contacts.bulk") {
			data.Actions = append(data.Actions, a)
		}
	}
	data.Select = len(data.Actions) > 0
	data.Restore = ledger.Allowed(role, "contacts.restore")
	data.RestoreAll = f.View == "trash" && ledger.Allowed(role, "restore_jobs.create")
	base := f.values()
	if page.Next != nil {
		next := f.values()
		next.Set("cursor", fmt.Sprintf("%d-%s", page.Next.SortAt.UnixMicro(), page.Next.ID))
		data.Next = Prefix + "contacts?" + next.Encode()
	}
	if q.After != nil {
		data.First = Prefix + "contacts?" + base.Encode()
	}
	data.Back = r.URL.RequestURI()
	title := "Contacts"
	if f.View == "trash" {
		title = "Deleted contacts"
	}
	c.render(w, r, http.StatusOK, "contacts", title, data)
}

// backTo keeps a "back" address inside the console, else goes to fallback.
func backTo(v, fallback string) string {
	if strings.HasPrefix(v, Prefix) && !strings.HasPrefix(v, "//") && !strings.ContainsAny(v, "\\\r\n") {
		return v
	}
	return fallback
}

type bulkPage struct {
	Action     bulkAction
	IDs        []string
	Count      int
	Reason     string
	Back       string
	Results    []bulkResult
	OK, Failed int
	Erase      erasureList
}

type bulkResult struct {
	ID, Name, State, Problem string
	OK                       bool
}

func findAction(v string) (bulkAction, bool) {
	for _, as := range bulkActions {
		for _, a := range as {
			if a.Value == v {
				return a, true
			}
		}
	}
	return bulkAction{}, false
}

// bulk runs a bulk action. The count the user confirmed comes as
// expected_count; without it (no script ran the dialog) the server asks
// for confirmation itself, with the count.
func (c *Console) bulk(w http.ResponseWriter, r *http.Request) {
	form := r.PostForm
	a, ok := findAction(form.Get("action"))
	if !ok {
		c.fail(w, r, kernel.Invalid(kernel.FieldError{Field: "action", Message: "must be archive, unarchive, trash, restore, purge or anonymize"}))
		return
	}
	if !ledger.Allowed(principal(r).Role, "contacts."+a.Value) {
		c.fail(w, r, kernel.Errorf(kernel.ErrRoleNotAllowed, "the %s role may not %s contacts", principal(r).Role, a.Value))
		return
	}
	ids := form["ids"]
	data := bulkPage{Action: a, IDs: ids, Count: len(ids), Reason: form.Get("reason"), Back: backTo(form.Get("back"), Prefix+"contacts"), Erase: erasure}
	if len(ids) == 0 {
		c.fail(w, r, kernel.Invalid(kernel.FieldError{Field: "ids", Message: "select at least one contact"}))
		return
	}
	if form.Get("expected_count") == "" {
		c.render(w, r, http.StatusOK, "bulkconfirm", "Confirm", data)
		return
	}
	n, err := strconv.Atoi(form.Get("expected_count"))
	if err != nil {
		c.fail(w, r, kernel.Invalid(kernel.FieldError{Field: "expected_count", Message: "must be the number of selected contacts"}))
		return
	}
	items, err := c.o.Commands.Bulk(r.Context(), principal(r).Workspace, meta(r), ledger.BulkRequest{
		Action: ledger.Transition(a.Value), IDs: ids, ExpectedCount: n, Input: ledger.TransitionInput{Reason: data.Reason}})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	for _, it := range items {
		res := bulkResult{ID: it.ID, OK: it.Err == nil}
		if it.Err != nil {
			res.Problem = safeMessage(it.Err)
			data.Failed++
		} else {
			res.Name, res.State = it.Result.Contact.Personal.Name, string(it.Result.Contact.State)
			data.OK++
		}
		data.Results = append(data.Results, res)
	}
	c.render(w, r, http.StatusOK, "bulkresult", "Bulk "+a.Value, data)
}

// safeMessage is an error's message when it is an application error (whose
// messages never hold personal data), else a generic one.
func safeMessage(err error) string {
	var e *kernel.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "failed; the request id is in the ledger's log"
}

func contactID(r *http.Request) (contact.ID, error) {
	id, err := contact.ParseID(r.PathValue("id"))
	if err != nil {
		return id, kernel.Errorf(kernel.ErrNotFound, "no contact has this id")
	}
	return id, nil
}

// action is a lifecycle button of the contact page.
type action struct {
	Value, Label string
	Danger       bool
	Dialog       bool // opens the "delete forever" dialog
}

// stateActions are the commands each state allows, as article 002's
// Actions menu lists them.
var stateActions = map[contact.State][]action{
	contact.StateActive:   {{"archive", "Archive", false, false}, {"trash", "Delete (move to trash)", true, false}},
	contact.StateArchived: {{"unarchive", "Unarchive", false, false}, {"trash", "Delete (move to trash)", true, false}},
	contact.StateTrashed: {{"restore", "Restore", false, false}, {"purge", "Delete forever", true, true},
		{"anonymize", "Anonymize", true, true}},
}

type contactPage struct {
	C        ledger.View
	Personal []field
	Notes    []contact.Note
	Lists    []listRow
	Actions  []action
	Spam     string // "spam" or "unspam" when the role may and the state allows
	// Hold is "hold" or "release-hold" when the role may place or release
	// the contact's legal hold; EraseRefusal says why a held contact
	// offers neither purge nor anonymize.
	Hold         string
	EraseRefusal string
	Edit         bool
	EditReason   string
	Assoc        bool // the role may change tags, notes, lists and links
	Receipt      bool
	Timeline     []timelineRow
	AsOf         string
	Version      string
	Past         *pastState
	Confirm      string
	Statuses     []string
	LinkKinds    []string
	Erase        erasureList
	Back         string
}

type field struct{ Label, Value string }

type listRow struct{ Name, Status string }

type pastState struct {
	Label    string
	State    contact.State
	Personal []field
	Tags     []string
	Shredded bool
}

// editRefusal says why a contact in state s cannot be edited, or "".
func editRefusal(s contact.State) string {
	switch s {
	case contact.StateActive:
		return ""
	case contact.StateArchived:
		return "Archived contacts can't be edited: unarchive it first."
	case contact.StateTrashed:
		return "Deleted contacts can't be edited: restore it first."
	}
	return "This contact was erased; nothing of it can be edited."
}

func personalFields(p contact.Personal, shredded bool) []field {
	if shredded {
		return []field{{"Personal data", "[shredded]: erased with the contact's key"}}
	}
	out := []field{{"Name", p.Name}, {"Email", p.Email}, {"Phone", p.Phone}, {"Job title", p.JobTitle}, {"Address", p.Address}}
	for _, k := range slices.Sorted(maps.Keys(p.CustomFields)) {
		out = append(out, field{k, p.CustomFields[k]})
	}
	if p.ExternalID != "" {
		out = append(out, field{"External id", p.ExternalID})
	}
	return slices.DeleteFunc(out, func(f field) bool { return f.Value == "" })
}

func (c *Console) contact(w http.ResponseWriter, r *http.Request) {
	id, err := contactID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ctx, ws, role := r.Context(), principal(r).Workspace, principal(r).Role
	v, err := c.o.Queries.Get(ctx, ws, id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	data := contactPage{C: v, Personal: personalFields(v.Personal, v.Shredded), Statuses: []string{"subscribed", "unsubscribed", "bounced", "unconfirmed"},
		LinkKinds: contact.LinkKinds, Erase: erasure, Back: backTo(r.URL.Query().Get("back"), "")}
	for _, a := range stateActions[v.State] {
		if !ledger.Allowed(role, "contacts."+a.Value) {
			continue
		}
		if a.Dialog && v.Hold != nil {
			// A legal hold stops every erasure until it is released.
			data.EraseRefusal = "Delete forever and anonymize are off: the contact is under legal hold. Release the hold first."
			continue
		}
		data.Actions = append(data.Actions, a)
	}
	erased := v.State == contact.StatePurged || v.State == contact.StateAnonymized
	switch {
	case erased:
	case v.Hold == nil && ledger.Allowed(role, "contacts.hold"):
		data.Hold = "hold"
	case v.Hold != nil && ledger.Allowed(role, "contacts.release_hold"):
		data.Hold = "release-hold"
	}
	if !erased {
		op := "contacts.spam"
		if v.Spam {
			op = "contacts.unspam"
		}
		if ledger.Allowed(role, op) {
			data.Spam = strings.TrimPrefix(op, "contacts.")
		}
	}
	data.Edit = ledger.Allowed(role, "contacts.update") && !erased
	data.EditReason = editRefusal(v.State)
	data.Assoc = v.State == contact.StateActive && ledger.Allowed(role, "contacts.tags")
	data.Receipt = erased && ledger.Allowed(role, "contacts.erasure_receipt")
	if conf := r.URL.Query().Get("confirm"); (conf == "purge" || conf == "anonymize") && slices.ContainsFunc(data.Actions, func(a action) bool { return a.Value == conf }) {
		data.Confirm = conf
	}
	if v.State != contact.StatePurged && ledger.Allowed(role, "contacts.notes.list") {
		if data.Notes, err = c.o.Queries.Notes(ctx, ws, id); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	for _, name := range slices.Sorted(maps.Keys(v.Lists)) {
		data.Lists = append(data.Lists, listRow{name, string(v.Lists[name])})
	}
	if ledger.Allowed(role, "contacts.history") {
		if err := c.timeline(r, id, &data); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	name := v.Personal.Name
	if name == "" {
		name = "Contact " + id.String()
	}
	c.render(w, r, http.StatusOK, "contact", name, data)
}

// timelineRow is one event of a contact's history as the page shows it.
type timelineRow struct {
	Version  uint64
	Time     time.Time
	Type     string
	Who      string
	Role     string
	Why      string
	Details  string
	Personal string
	Shredded bool
	// WhyShredded is set when the event's reason was sealed with the
	// contact's key and the key is destroyed: the reason is gone for good.
	WhyShredded bool
	Request     string
}

// reasonOnly are the events whose sealed part (schema 2) holds nothing but
// their reason: once shredded, it is the reason that is gone.
var reasonOnly = map[string]bool{"ContactArchived": true, "ContactUnarchived": true, "ContactTrashed": true, "ContactRestored": true,
	"ContactPurged": true, "ContactAnonymized": true, "ContactMarkedSpam": true, "ContactUnmarkedSpam": true}

// timeline fills the contact's history and, when asked, its state at a
// point in time (as_of, a UTC date and time, or version).
func (c *Console) timeline(r *http.Request, id contact.ID, data *contactPage) error {
	qs := r.URL.Query()
	data.AsOf, data.Version = qs.Get("as_of"), qs.Get("version")
	var asOf time.Time
	var version uint64
	var errs []kernel.FieldError
	if data.AsOf != "" {
		t, err := time.Parse("2006-01-02T15:04", data.AsOf)
		if err != nil {
			if t, err = time.Parse("2006-01-02T15:04:05", data.AsOf); err != nil {
				errs = append(errs, kernel.FieldError{Field: "as_of", Message: "must be a date and time such as 2026-01-31T09:30"})
			}
		}
		asOf = t.Add(59*time.Second + 999999*time.Microsecond) // the whole minute
	}
	if data.Version != "" {
		n, err := strconv.ParseUint(data.Version, 10, 64)
		if err != nil || n == 0 {
			errs = append(errs, kernel.FieldError{Field: "version", Message: "must be a whole number from 1"})
		}
		version = n
	}
	if len(errs) > 0 {
		return kernel.Invalid(errs...)
	}
	full, err := c.o.Queries.Trail(r.Context(), principal(r).Workspace, id, time.Time{}, 0)
	if err != nil {
		return err
	}
	for i := len(full.Entries) - 1; i >= 0; i-- {
		data.Timeline = append(data.Timeline, timelineEntry(full.Entries[i]))
	}
	if asOf.IsZero() && version == 0 {
		return nil
	}
	past, err := c.o.Queries.Trail(r.Context(), principal(r).Workspace, id, asOf, version)
	if errors.Is(err, ledger.ErrNotYet) {
		data.Past = &pastState{Label: "The contact did not exist yet at that time."}
		return nil
	}
	if err != nil {
		return err
	}
	s := past.State
	label := fmt.Sprintf("As it was at version %d", s.Version)
	if !asOf.IsZero() {
		label = fmt.Sprintf("As it was on %s UTC (version %d)", asOf.Format("2006-01-02 15:04"), s.Version)
	}
	data.Past = &pastState{Label: label, State: s.State, Personal: personalFields(s.Personal, s.Shredded), Tags: s.Tags, Shredded: s.Shredded}
	return nil
}

// timelineEntry renders one event: its clear payload's reason and details,
// and its personal part's fields, or that they are shredded.
func timelineEntry(e ledger.HistoryEntry) timelineRow {
	rec := e.Record
	row := timelineRow{Version: rec.Version, Time: rec.Time, Type: strings.TrimPrefix(rec.Type, "Contact"), Who: rec.Actor.Principal,
		Role: string(rec.Actor.Role), Shredded: e.Shredded}
	var data, personal map[string]any
	_ = json.Unmarshal(rec.Data, &data)
	_ = json.Unmarshal(e.Personal, &personal)
	for _, m := range []map[string]any{data, personal} {
		if s, ok := m["reason"].(string); ok && s != "" {
			row.Why = s
		}
		delete(m, "reason")
	}
	if req, ok := data["request"].(string); ok && rec.Type != "ContactCreated" {
		row.Request = req
		delete(data, "request")
	}
	row.WhyShredded = e.Shredded && row.Why == "" && reasonOnly[rec.Type]
	if t, _ := data["trigger"].(string); t == "retention" {
		row.Why = strings.TrimSpace(row.Why + " (retention)")
	}
	row.Details = summarize(data)
	row.Personal = summarize(personal)
	return row
}

// summarize renders a payload's members as "key: value" pairs in key order.
func summarize(m map[string]any) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		var s string
		switch v := m[k].(type) {
		case string:
			s = v
		case nil:
			continue
		default:
			b, _ := json.Marshal(v)
			s = string(b)
		}
		if s == "" || s == "[]" || s == "{}" {
			continue
		}
		if len(s) > 200 {
			s = s[:200] + "…"
		}
		parts = append(parts, strings.ReplaceAll(k, "_", " ")+": "+s)
	}
	return strings.Join(parts, "; ")
}

type formPage struct {
	// Holder is the contact that holds the email or phone the form asked
	// for, when that was the refusal.
	Holder  string
	ID      string
	Version uint64
	Values  map[string]string
	Errors  map[string]string
	Refusal string
	New     bool
}

type inputField struct{ Name, Label, Type, Value, Error string }

var formFields = []string{"name", "email", "phone", "job_title", "address"}

// holderOf names the contact holding a refused email or phone, or "".
func holderOf(err error) string {
	if taken, ok := errors.AsType[*ledger.IdentityTakenError](err); ok {
		return taken.Holder.String()
	}
	return ""
}

// formStatus is a refused form's status: 409 when another contact holds
// the email or phone, else 422.
func formStatus(err error) int {
	if holderOf(err) != "" {
		return http.StatusConflict
	}
	return http.StatusUnprocessableEntity
}

func (c *Console) newContact(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "form", "New contact", formPage{New: true, Values: map[string]string{}})
}

// takenMessage says, in the console's words, why an email or phone cannot
// be given to a contact: another contact holds it (named by id and state
// on the page, never the value).
func takenMessage(e *ledger.IdentityTakenError) string {
	switch {
	case e.Restoring:
		return "This contact's " + e.Field + " now belongs to another contact (" + string(e.State) + "). Restore it all the same and keep both, or change one of them first."
	case e.State == contact.StateTrashed:
		return "This " + e.Field + " belongs to a contact in trash: restore that contact instead of creating another."
	case e.State == "":
		return "This " + e.Field + " is being given to another contact by a request still running; try again shortly."
	}
	return "This " + e.Field + " belongs to another contact (" + string(e.State) + "); the workspace keeps each email and phone to one contact."
}

func formErrors(err error) map[string]string {
	if taken, ok := errors.AsType[*ledger.IdentityTakenError](err); ok {
		return map[string]string{taken.Field: takenMessage(taken)}
	}
	var e *kernel.Error
	if !errors.As(err, &e) || len(e.Fields) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, f := range e.Fields {
		name := f.Field
		if i := strings.IndexAny(name, ".["); i > 0 {
			name = name[:i]
		}
		out[name] = f.Message
	}
	return out
}

func splitTags(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

func (c *Console) createContact(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	values := map[string]string{"tags": f.Get("tags")}
	for _, k := range formFields {
		values[k] = strings.TrimSpace(f.Get(k))
	}
	d := contact.Draft{Personal: contact.Personal{Name: values["name"], Email: values["email"], Phone: values["phone"],
		JobTitle: values["job_title"], Address: values["address"]}, Tags: splitTags(values["tags"])}
	res, err := c.o.Commands.Create(r.Context(), principal(r).Workspace, meta(r), d)
	if errs := formErrors(err); errs != nil {
		c.render(w, r, formStatus(err), "form", "New contact", formPage{New: true, Values: values, Errors: errs, Holder: holderOf(err)})
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Prefix+"contacts/"+res.Contact.ID.String()+"?done=created", http.StatusSeeOther)
}

func (c *Console) editContact(w http.ResponseWriter, r *http.Request) {
	id, err := contactID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v, err := c.o.Queries.Get(r.Context(), principal(r).Workspace, id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	data := formPage{ID: id.String(), Version: v.Version, Refusal: editRefusal(v.State), Values: map[string]string{
		"name": v.Personal.Name, "email": v.Personal.Email, "phone": v.Personal.Phone, "job_title": v.Personal.JobTitle, "address": v.Personal.Address}}
	status := http.StatusOK
	if data.Refusal != "" {
		status, data.Values = http.StatusConflict, nil
	}
	c.render(w, r, status, "form", "Edit contact", data)
}

func (c *Console) updateContact(w http.ResponseWriter, r *http.Request) {
	id, err := contactID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f := r.PostForm
	values := map[string]string{}
	var p contact.Patch
	for _, k := range formFields {
		values[k] = strings.TrimSpace(f.Get(k))
	}
	p.Name, p.Email, p.Phone, p.JobTitle, p.Address = ptr(values["name"]), ptr(values["email"]), ptr(values["phone"]), ptr(values["job_title"]), ptr(values["address"])
	m := meta(r)
	version, err := strconv.ParseUint(f.Get("version"), 10, 64)
	if err != nil {
		c.fail(w, r, kernel.Invalid(kernel.FieldError{Field: "version", Message: "is missing: reload the page"}))
		return
	}
	m.IfMatch = &version
	_, err = c.o.Commands.Update(r.Context(), principal(r).Workspace, id, m, p)
	if errs := formErrors(err); errs != nil {
		c.render(w, r, formStatus(err), "form", "Edit contact", formPage{ID: id.String(), Version: version, Values: values, Errors: errs, Holder: holderOf(err)})
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Prefix+"contacts/"+id.String()+"?done=updated", http.StatusSeeOther)
}

func ptr(s string) *string { return &s }

// done is the notice key of each command.
var done = map[string]string{
	"archive": "archived", "unarchive": "unarchived", "trash": "trashed", "restore": "restored", "purge": "purged", "anonymize": "anonymized",
}

// after redirects after a command on one contact: back to the list it came
// from, or to the contact's page, with the command's notice.
func after(w http.ResponseWriter, r *http.Request, id contact.ID, notice string) {
	to := Prefix + "contacts/" + id.String()
	if b := backTo(r.PostForm.Get("back"), ""); b != "" {
		to = b
	}
	sep := "?"
	if strings.Contains(to, "?") {
		sep = "&"
	}
	http.Redirect(w, r, to+sep+"done="+notice, http.StatusSeeOther)
}

func (c *Console) transition(t ledger.Transition) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := contactID(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		in := ledger.TransitionInput{Reason: r.PostForm.Get("reason")}
		if t == ledger.Restore {
			in.KeepBoth = r.PostForm.Get("on_conflict") == "keep_both"
		}
		if t.Erasing() {
			in.Request = r.PostForm.Get("request")
		}
		if _, err := c.o.Commands.Transition(r.Context(), principal(r).Workspace, id, meta(r), t, in); err != nil {
			c.fail(w, r, err)
			return
		}
		after(w, r, id, done[string(t)])
	}
}

// hold places (with a case reference and a reason) or releases a
// contact's legal hold.
func (c *Console) hold(place bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := contactID(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		ws, reason, notice := principal(r).Workspace, r.PostForm.Get("reason"), "held"
		if place {
			_, _, err = c.o.Commands.PlaceHold(r.Context(), ws, id, meta(r), r.PostForm.Get("case"), reason)
		} else {
			_, err = c.o.Commands.ReleaseHold(r.Context(), ws, id, meta(r), reason)
			notice = "released"
		}
		if err != nil {
			c.fail(w, r, err)
			return
		}
		after(w, r, id, notice)
	}
}

func (c *Console) spam(mark bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := contactID(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		cmd, notice := c.o.Commands.MarkSpam, "spam"
		if !mark {
			cmd, notice = c.o.Commands.UnmarkSpam, "unspam"
		}
		if _, err := cmd(r.Context(), principal(r).Workspace, id, meta(r), r.PostForm.Get("reason")); err != nil {
			c.fail(w, r, err)
			return
		}
		after(w, r, id, notice)
	}
}

// association runs a change to a contact's tags, notes, lists or links.
func (c *Console) association(notice string, run func(r *http.Request, id contact.ID) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := contactID(r)
		if err == nil {
			err = run(r, id)
		}
		if err != nil {
			c.fail(w, r, err)
			return
		}
		after(w, r, id, notice)
	}
}

func (c *Console) changeTags(w http.ResponseWriter, r *http.Request) {
	c.association("tags", func(r *http.Request, id contact.ID) error {
		_, err := c.o.Commands.ChangeTags(r.Context(), principal(r).Workspace, id, meta(r), splitTags(r.PostForm.Get("add")), r.PostForm["remove"])
		return err
	})(w, r)
}

func (c *Console) addNote(w http.ResponseWriter, r *http.Request) {
	c.association("note", func(r *http.Request, id contact.ID) error {
		_, _, err := c.o.Commands.AddNote(r.Context(), principal(r).Workspace, id, meta(r), r.PostForm.Get("text"))
		return err
	})(w, r)
}

func (c *Console) setList(w http.ResponseWriter, r *http.Request) {
	c.association("list", func(r *http.Request, id contact.ID) error {
		_, err := c.o.Commands.SetList(r.Context(), principal(r).Workspace, id, meta(r), strings.TrimSpace(r.PostForm.Get("list")), contact.ListStatus(r.PostForm.Get("status")))
		return err
	})(w, r)
}

func (c *Console) removeList(w http.ResponseWriter, r *http.Request) {
	c.association("list-removed", func(r *http.Request, id contact.ID) error {
		_, err := c.o.Commands.RemoveList(r.Context(), principal(r).Workspace, id, meta(r), r.PostForm.Get("list"))
		return err
	})(w, r)
}

func (c *Console) addLink(w http.ResponseWriter, r *http.Request) {
	c.association("link", func(r *http.Request, id contact.ID) error {
		_, err := c.o.Commands.AddLink(r.Context(), principal(r).Workspace, id, meta(r), contact.Link{Kind: r.PostForm.Get("kind"), Ref: strings.TrimSpace(r.PostForm.Get("ref"))})
		return err
	})(w, r)
}

func (c *Console) removeLink(w http.ResponseWriter, r *http.Request) {
	c.association("link-removed", func(r *http.Request, id contact.ID) error {
		_, err := c.o.Commands.RemoveLink(r.Context(), principal(r).Workspace, id, meta(r), contact.Link{Kind: r.PostForm.Get("kind"), Ref: r.PostForm.Get("ref")})
		return err
	})(w, r)
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		case *time.Time:
			if v == nil || v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		}
		return ""
	},
	"iso": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			return v.UTC().Format(time.RFC3339)
		case *time.Time:
			if v != nil {
				return v.UTC().Format(time.RFC3339)
			}
		}
		return ""
	},
	"allowed": ledger.Allowed,
	"contactOf": func(stream string) string {
		if id, ok := contact.IDFromStream(stream); ok {
			return id.String()
		}
		return ""
	},
	"fieldOf": func(f formPage, name, label, typ string) inputField {
		return inputField{Name: name, Label: label, Type: typ, Value: f.Values[name], Error: f.Errors[name]}
	},
	"eraseOf": func(e erasureList, what string) struct{ Erased, Kept []string } {
		if what == "anonymize" {
			return struct{ Erased, Kept []string }{e.Erased, e.AnonKept}
		}
		return struct{ Erased, Kept []string }{e.Erased, e.PurgeKept}
	},
	"count":  func(text string, n int) string { return strings.ReplaceAll(text, "{n}", strconv.Itoa(n)) },
	"join":   strings.Join,
	"prefix": func() string { return Prefix },
	"add":    func(a, b int) int { return a + b },
	"pct": func(done, total int64) int64 {
		if total <= 0 {
			return 0
		}
		return done * 100 / total
	},
}
