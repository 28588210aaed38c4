package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
)

// startRestoreJob starts "Restore all matching": a restore job over the
// trash list's filters. A second job while one runs is refused with the
// running one named.
func (c *Console) startRestoreJob(w http.ResponseWriter, r *http.Request) {
	r.URL.RawQuery = r.PostForm.Encode() // the filters come as the list's form fields
	f, _, err := parseFilter(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	rf := ledger.RestoreFilter{Q: f.Q, Tag: f.Tag, DeletedBy: f.DeletedBy, Reason: r.PostForm.Get("reason")}
	_, q, _ := parseFilter(r)
	rf.DeletedAfter, rf.DeletedBefore = q.DeletedAfter, q.DeletedBefore
	if f.Email != "" || f.Phone != "" {
		c.fail(w, r, kernel.Invalid(kernel.FieldError{Field: "email", Message: "a restore job filters by name, id, tag, date and who deleted; search by email or phone selects contacts one page at a time"}))
		return
	}
	j, err := c.o.Jobs.StartRestoreJob(r.Context(), principal(r).Workspace, meta(r), rf)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Prefix+"restore-jobs/"+j.ID, http.StatusSeeOther)
}

// jobProgress is a restore job's progress as the page's script polls it.
type jobProgress struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Total    int    `json:"total"`
	Done     int    `json:"done"`
	Restored int    `json:"restored"`
	Failed   int    `json:"failed"`
	Terminal bool   `json:"terminal"`
	Text     string `json:"text"`
}

func progressOf(j *job.Job) jobProgress {
	p := jobProgress{ID: j.ID, State: string(j.State), Total: j.Total, Restored: j.Restored, Failed: len(j.Failures), Terminal: j.State.Terminal()}
	p.Done = p.Restored + p.Failed
	p.Text = jobText(j)
	return p
}

func jobText(j *job.Job) string {
	s := strconv.Itoa(j.Restored) + " of " + strconv.Itoa(j.Total) + " restored"
	if n := len(j.Failures); n > 0 {
		s += ", " + strconv.Itoa(n) + " failed"
	}
	return s + " (" + string(j.State) + ")"
}

type jobPage struct {
	J        *job.Job
	Progress jobProgress
	Cancel   bool
}

func (c *Console) restoreJob(w http.ResponseWriter, r *http.Request) {
	j, err := c.o.Jobs.RestoreJob(r.Context(), principal(r).Workspace, r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "job", "Restore job", jobPage{J: j, Progress: progressOf(j),
		Cancel: !j.State.Terminal() && ledger.Allowed(principal(r).Role, "restore_jobs.cancel")})
}

func (c *Console) restoreJobProgress(w http.ResponseWriter, r *http.Request) {
	j, err := c.o.Jobs.RestoreJob(r.Context(), principal(r).Workspace, r.PathValue("id"))
	if err != nil {
		jsonError(w, err)
		return
	}
	writeJSON(w, progressOf(j))
}

func (c *Console) cancelRestoreJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := c.o.Jobs.CancelRestoreJob(r.Context(), principal(r).Workspace, id, meta(r)); err != nil && !errors.Is(err, ledger.ErrJobFinished) {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Prefix+"restore-jobs/"+id+"?done=cancel-asked", http.StatusSeeOther)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, err error) {
	status := wire.HTTPStatus(kernel.ErrorCode(err))
	if status == 0 {
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": safeMessage(err)})
}

// auditPageSize is how many events an audit page shows.
const auditPageSize = 100

type auditPage struct {
	Since, Until, Type, Actor, Contact string
	Types                              []string
	Events                             []kernel.Record
	Next                               string
	First                              string
}

// eventTypes are the contact event types the audit filter offers.
var eventTypes = []string{"ContactCreated", "ContactUpdated", "ContactArchived", "ContactUnarchived", "ContactTrashed", "ContactRestored",
	"ContactPurged", "ContactAnonymized", "ContactTagsChanged", "ContactNoteAdded", "ContactListMembershipChanged",
	"ContactListMembershipRemoved", "ContactLinked", "ContactUnlinked", "ContactMarkedSpam", "ContactUnmarkedSpam"}

func (c *Console) audit(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	data := auditPage{Since: qs.Get("since"), Until: qs.Get("until"), Type: qs.Get("type"), Actor: strings.TrimSpace(qs.Get("actor")),
		Contact: strings.TrimSpace(qs.Get("contact"))}
	for _, t := range eventTypes {
		if contact.KnownType(t) {
			data.Types = append(data.Types, t)
		}
	}
	q := ledger.LogQuery{Workspace: principal(r).Workspace, Actor: data.Actor, Limit: auditPageSize + 1}
	var errs []kernel.FieldError
	for _, f := range []struct {
		name, v string
		dst     *time.Time
	}{{"since", data.Since, &q.Since}, {"until", data.Until, &q.Until}} {
		if f.v == "" {
			continue
		}
		t, err := time.Parse("2006-01-02T15:04", f.v)
		if err != nil {
			errs = append(errs, kernel.FieldError{Field: f.name, Message: "must be a date and time such as 2026-01-31T09:30"})
		}
		*f.dst = t
	}
	if data.Type != "" {
		if !contact.KnownType(data.Type) {
			errs = append(errs, kernel.FieldError{Field: "type", Message: "is not an event type"})
		}
		q.Types = []string{data.Type}
	}
	if data.Contact != "" {
		id, err := contact.ParseID(data.Contact)
		if err != nil {
			errs = append(errs, kernel.FieldError{Field: "contact", Message: "is not a contact id"})
		}
		q.Stream = id.Stream()
	}
	if len(data.Actor) > 100 {
		errs = append(errs, kernel.FieldError{Field: "actor", Message: "is too long"})
	}
	var err error
	if q.After, err = kernel.ParsePosition(qs.Get("after")); err != nil {
		errs = append(errs, kernel.FieldError{Field: "after", Message: "is not a page this log gave"})
	}
	if len(errs) > 0 {
		c.fail(w, r, kernel.Invalid(errs...))
		return
	}
	err = c.o.Compliance.AuditLog(r.Context(), q, func(recs []kernel.Record) error {
		data.Events = append(data.Events, recs...)
		return nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	base := url.Values{}
	for k, v := range map[string]string{"since": data.Since, "until": data.Until, "type": data.Type, "actor": data.Actor, "contact": data.Contact} {
		if v != "" {
			base.Set(k, v)
		}
	}
	if len(data.Events) > auditPageSize {
		data.Events = data.Events[:auditPageSize]
		next := url.Values{}
		for k, v := range base {
			next[k] = v
		}
		next.Set("after", data.Events[auditPageSize-1].Position.String())
		data.Next = Prefix + "audit?" + next.Encode()
	}
	if qs.Get("after") != "" {
		data.First = Prefix + "audit?" + base.Encode()
	}
	c.render(w, r, http.StatusOK, "audit", "Audit log", data)
}

type receiptPage struct {
	ID        string
	Receipt   ledger.Receipt
	Valid     bool
	Problem   string
	Trail     bool
	TrailErr  string
	Deployed  string
	Download  string
	Signature string
	// Propagation is the receipt's unsigned account of which webhook
	// subscribers were sent the erasure notice and which acknowledged it.
	Propagation *ledger.ReceiptPropagation
}

// receipt shows a contact's erasure receipt and verifies it in the page: the
// signature under the deployment's published key, and the trail digest
// recomputed from the log as it is now.
func (c *Console) receipt(w http.ResponseWriter, r *http.Request) {
	id, err := contactID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ctx, ws := r.Context(), principal(r).Workspace
	doc, err := c.o.Compliance.ErasureReceipt(ctx, ws, id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	pub, err := c.o.Compliance.SigningPublicKey(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	data := receiptPage{ID: id.String(), Deployed: ledger.KeyID(pub), Download: Prefix + "contacts/" + id.String() + "/receipt.json"}
	// The unsigned propagation section: who was told of the erasure.
	data.Propagation, _ = ledger.ReceiptPropagationOf(doc)
	rc, verr := ledger.VerifyReceipt(doc, pub)
	if verr != nil {
		data.Problem = verr.Error()
		// Show what the document says even when it does not verify.
		var sr struct {
			Receipt ledger.Receipt `json:"receipt"`
		}
		_ = json.Unmarshal(doc, &sr)
		rc = sr.Receipt
	} else {
		data.Valid = true
		tr, err := c.o.Queries.Trail(ctx, ws, id, time.Time{}, 0)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		recs := make([]kernel.Record, len(tr.Entries))
		for i, e := range tr.Entries {
			recs[i] = e.Record
		}
		if err := ledger.CheckTrail(rc, recs); err != nil {
			data.TrailErr = err.Error()
		} else {
			data.Trail = true
		}
	}
	data.Receipt = rc
	c.render(w, r, http.StatusOK, "receipt", "Erasure receipt", data)
}

// receiptFile downloads the receipt document byte for byte as issued, for
// `ledger receipts verify`.
func (c *Console) receiptFile(w http.ResponseWriter, r *http.Request) {
	id, err := contactID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	doc, err := c.o.Compliance.ErasureReceipt(r.Context(), principal(r).Workspace, id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="erasure-receipt-`+id.String()+`.json"`)
	_, _ = w.Write(doc)
}

type engineersPage struct {
	Projections []projections.Status
	Rebuilds    []projections.RebuildJob
	Views       []string
	Rebuild     bool
	Jobs        []*job.Job
	ShowJobs    bool
	Unavailable bool
	// ShowHooks is set for the roles that see webhook delivery status;
	// HooksOff when this server delivers no webhooks.
	ShowHooks, HooksOff bool
	Hooks               []hookRow
	// Failures are the latest failed delivery attempts of every subscription, newest first.
	Failures []ledger.DeliveryAttempt
}

// hookRow is one webhook subscription and how it delivers. URL and
// Description are shown only to roles that may read subscriptions
// (webhooks.get): a URL can carry a receiver's credentials.
type hookRow struct {
	ledger.WebhookStatus
	URL, Description string
}

// State names how a subscription delivers: disabled, failing or delivering.
func (h hookRow) State() string {
	switch {
	case !h.Enabled:
		return "disabled"
	case !h.Progress.FailingSince.IsZero():
		return "failing"
	}
	return "delivering"
}

// recentFailures is how many failed delivery attempts the Engineers page
// lists, and failuresScanned how many of each subscription's latest
// attempts it looks through for them.
const (
	recentFailures  = 10
	failuresScanned = 50
)

// webhookStatus fills the Engineers page's webhook section: each
// subscription of the workspace with its state, lag and pending events,
// and the latest failed attempts. It shows ids, states, times and the
// ledger's own words for each failure, nothing a receiver answered and no
// contact: an operator sees it too.
func (c *Console) webhookStatus(ctx context.Context, p ledger.Principal, data *engineersPage) error {
	hooks, err := c.o.Webhooks.Webhooks(ctx, p.Workspace)
	if errors.Is(err, ledger.ErrWebhooksOff) {
		data.HooksOff = true
		return nil
	}
	if err != nil {
		return err
	}
	full := ledger.Allowed(p.Role, "webhooks.get")
	for _, h := range hooks {
		st, err := c.o.Webhooks.WebhookStatus(ctx, p.Workspace, h.ID)
		if errors.Is(err, kernel.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		row := hookRow{WebhookStatus: st}
		if full {
			row.URL, row.Description = h.URL, h.Description
		}
		data.Hooks = append(data.Hooks, row)
		attempts, err := c.o.Webhooks.WebhookDeliveries(ctx, p.Workspace, h.ID, ledger.AttemptQuery{Limit: failuresScanned})
		if err != nil && !errors.Is(err, kernel.ErrNotFound) {
			return err
		}
		for _, a := range attempts {
			if a.Outcome != ledger.AttemptDelivered {
				a.ContactID = ""
				data.Failures = append(data.Failures, a)
			}
		}
	}
	slices.SortFunc(data.Failures, func(a, b ledger.DeliveryAttempt) int { return b.At.Compare(a.At) })
	data.Failures = data.Failures[:min(len(data.Failures), recentFailures)]
	return nil
}

// visible reports whether a rebuild's record may be shown to workspace: an
// API or console rebuild belongs to its workspace; the command line's and
// the ledger's own are everyone's (as in the API).
func visible(workspace string, j projections.RebuildJob) bool {
	return j.Workspace == "" || j.Workspace == workspace
}

func (c *Console) engineers(w http.ResponseWriter, r *http.Request) {
	ctx, p := r.Context(), principal(r)
	data := engineersPage{Views: append(slices.Clone(ledger.ViewNames), "all"), Rebuild: ledger.Allowed(p.Role, "projections.rebuild")}
	if c.o.Projections == nil {
		data.Unavailable = true
	} else {
		var err error
		if data.Projections, err = c.o.Projections.Status(ctx); err != nil {
			c.fail(w, r, err)
			return
		}
		recent, err := c.o.Projections.RecentRebuilds(ctx, 10)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		for _, j := range recent {
			if visible(p.Workspace, j) {
				data.Rebuilds = append(data.Rebuilds, j)
			}
		}
		for i, st := range data.Projections {
			if st.Rebuild != nil && !visible(p.Workspace, *st.Rebuild) {
				data.Projections[i].Rebuild = nil
			}
		}
	}
	if data.ShowHooks = c.o.Webhooks != nil && ledger.Allowed(p.Role, "webhooks.status"); data.ShowHooks {
		if err := c.webhookStatus(ctx, p, &data); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	if data.ShowJobs = ledger.Allowed(p.Role, "restore_jobs.get"); data.ShowJobs {
		var err error
		if data.Jobs, err = c.o.Jobs.RecentRestoreJobs(ctx, p.Workspace, 10); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	c.render(w, r, http.StatusOK, "engineers", "Engineers", data)
}

var errNoProjections = &kernel.Error{Code: kernel.CodeUnavailable, Reason: "projections-unavailable", Message: "this server does not run the projections"}

func (c *Console) startRebuild(w http.ResponseWriter, r *http.Request) {
	if c.o.Projections == nil {
		c.fail(w, r, errNoProjections)
		return
	}
	p := principal(r)
	j, err := c.o.Projections.StartRebuild(r.Context(), r.PostForm.Get("projection"), "requested", p.Workspace, p.TokenID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Prefix+"rebuilds/"+j.ID, http.StatusSeeOther)
}

// rebuildOf returns the rebuild named in the path when the caller may see it.
func (c *Console) rebuildOf(r *http.Request) (projections.RebuildJob, error) {
	if c.o.Projections == nil {
		return projections.RebuildJob{}, errNoProjections
	}
	j, err := c.o.Projections.RebuildJob(r.Context(), r.PathValue("id"))
	if (err == nil && !visible(principal(r).Workspace, j)) || kernel.ErrorCode(err) == kernel.CodeNotFound {
		return projections.RebuildJob{}, kernel.Errorf(kernel.ErrNotFound, "no such rebuild")
	}
	return j, err
}

// rebuildProgressJSON is a rebuild's progress as the page's script polls it.
type rebuildProgressJSON struct {
	ID       string  `json:"id"`
	State    string  `json:"state"`
	Phase    string  `json:"phase"`
	Total    int64   `json:"total"`
	Done     int64   `json:"done"`
	Rate     float64 `json:"rate"`
	Terminal bool    `json:"terminal"`
	Text     string  `json:"text"`
}

func rebuildProgress(j projections.RebuildJob) rebuildProgressJSON {
	rate, eta := j.Rate()
	p := rebuildProgressJSON{ID: j.ID, State: string(j.State), Phase: j.Phase, Total: j.EventsTotal, Done: j.EventsDone, Rate: rate,
		Terminal: j.State != projections.RebuildRunning}
	p.Text = fmtInt(j.EventsDone) + " of " + fmtInt(j.EventsTotal) + " events, " + j.Phase + " (" + string(j.State) + ")"
	if eta >= 0 && !p.Terminal {
		p.Text += ", about " + (time.Duration(eta) * time.Second).String() + " left"
	}
	return p
}

type rebuildPage struct {
	J        projections.RebuildJob
	Progress rebuildProgressJSON
	Cancel   bool
}

func (c *Console) rebuild(w http.ResponseWriter, r *http.Request) {
	j, err := c.rebuildOf(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "rebuild", "Rebuild of "+j.Projection, rebuildPage{J: j, Progress: rebuildProgress(j),
		Cancel: j.State == projections.RebuildRunning && ledger.Allowed(principal(r).Role, "projections.rebuild_cancel")})
}

func (c *Console) rebuildProgress(w http.ResponseWriter, r *http.Request) {
	j, err := c.rebuildOf(r)
	if err != nil {
		jsonError(w, err)
		return
	}
	writeJSON(w, rebuildProgress(j))
}

func (c *Console) cancelRebuild(w http.ResponseWriter, r *http.Request) {
	j, err := c.rebuildOf(r)
	if err == nil {
		_, err = c.o.Projections.CancelRebuild(r.Context(), j.ID)
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Prefix+"rebuilds/"+j.ID+"?done=cancel-asked", http.StatusSeeOther)
}

func fmtInt(n int64) string { return strconv.FormatInt(n, 10) }
