// Package console is the browser console: server-rendered pages over the
// same application service and permission table as the HTTP API, for the
// members and admins of the help-center articles, compliance staff and
// on-call engineers. Templates, CSS and JavaScript are embedded; pages work
// without JavaScript, which only adds dialogs, selection counts and live
// progress bars. Every write needs the session's CSRF token.
package console

import (
	"context"
	"crypto/ed25519"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
	"github.com/oklog/ulid/v2"
)

// Prefix is where the console is mounted.
const Prefix = "/console/"

// Queries are the reads the console makes of contacts.
type Queries interface {
	List(ctx context.Context, q ledger.ListQuery, minPos kernel.Position, email, phone string) (ledger.Page, error)
	Get(ctx context.Context, workspace string, id contact.ID) (ledger.View, error)
	Trail(ctx context.Context, workspace string, id contact.ID, asOf time.Time, version uint64) (ledger.Trail, error)
	Notes(ctx context.Context, workspace string, id contact.ID) ([]contact.Note, error)
}

// Commands are the changes the console makes to contacts.
type Commands interface {
	Create(ctx context.Context, workspace string, meta ledger.Meta, d contact.Draft) (ledger.Result, error)
	Update(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, p contact.Patch) (ledger.Result, error)
	Transition(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, t ledger.Transition, in ledger.TransitionInput) (ledger.Result, error)
	Bulk(ctx context.Context, workspace string, meta ledger.Meta, r ledger.BulkRequest) ([]ledger.BulkItem, error)
	ChangeTags(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, add, remove []string) (ledger.Result, error)
	AddNote(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, text string) (ledger.Result, string, error)
	SetList(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, list string, status contact.ListStatus) (ledger.Result, error)
	RemoveList(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, list string) (ledger.Result, error)
	AddLink(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, link contact.Link) (ledger.Result, error)
	RemoveLink(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, link contact.Link) (ledger.Result, error)
	MarkSpam(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, reason string) (ledger.Result, error)
	UnmarkSpam(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, reason string) (ledger.Result, error)
	PlaceHold(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, caseRef, reason string) (ledger.Result, string, error)
	ReleaseHold(ctx context.Context, workspace string, id contact.ID, meta ledger.Meta, reason string) (ledger.Result, error)
}

// Jobs runs and shows restore jobs.
type Jobs interface {
	StartRestoreJob(ctx context.Context, workspace string, meta ledger.Meta, f ledger.RestoreFilter) (*job.Job, error)
	RestoreJob(ctx context.Context, workspace, id string) (*job.Job, error)
	CancelRestoreJob(ctx context.Context, workspace, id string, meta ledger.Meta) (*job.Job, error)
	RecentRestoreJobs(ctx context.Context, workspace string, limit int) ([]*job.Job, error)
}

// Compliance reads the audit log and erasure receipts.
type Compliance interface {
	AuditLog(ctx context.Context, q ledger.LogQuery, emit func([]kernel.Record) error) error
	ErasureReceipt(ctx context.Context, workspace string, id contact.ID) ([]byte, error)
	SigningPublicKey(ctx context.Context) (ed25519.PublicKey, error)
}

// Sessions signs browsers in and out.
type Sessions interface {
	StartSession(ctx context.Context, bearer string, times ledger.SessionTimes) (string, ledger.Principal, error)
	ResumeSession(ctx context.Context, value string, times ledger.SessionTimes) (ledger.Principal, error)
	EndSession(ctx context.Context, value string) error
}

// Projections shows projections and runs their rebuilds.
type Projections interface {
	Status(ctx context.Context) ([]projections.Status, error)
	StartRebuild(ctx context.Context, name, reason, workspace, by string) (projections.RebuildJob, error)
	RebuildJob(ctx context.Context, id string) (projections.RebuildJob, error)
	CancelRebuild(ctx context.Context, id string) (projections.RebuildJob, error)
	RecentRebuilds(ctx context.Context, limit int) ([]projections.RebuildJob, error)
}

// Webhooks shows how webhook subscriptions deliver.
type Webhooks interface {
	Webhooks(ctx context.Context, workspace string) ([]ledger.Webhook, error)
	WebhookStatus(ctx context.Context, workspace, id string) (ledger.WebhookStatus, error)
	WebhookDeliveries(ctx context.Context, workspace, id string, q ledger.AttemptQuery) ([]ledger.DeliveryAttempt, error)
}

// Options wires a Console. Every port is required but Projections and Webhooks.
type Options struct {
	Queries     Queries
	Commands    Commands
	Jobs        Jobs
	Compliance  Compliance
	Sessions    Sessions
	Projections Projections
	Webhooks    Webhooks
	Logger      *slog.Logger
	// Times bound sessions (idle and absolute).
	Times ledger.SessionTimes
	// TrustForwardedProto takes X-Forwarded-Proto: https from a proxy in
	// front as TLS, so the cookie is marked Secure; only set it behind a
	// proxy that sets the header itself.
	TrustForwardedProto bool
}

// Console serves the console's pages under Prefix.
type Console struct {
	o     Options
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template
	// routes lists every page and form with the operation it performs.
	routes []Route
}

// Route is one of the console's endpoints and the permission-table
// operation it performs ("" for sign-in, sign-out and assets, which any
// visitor or session may use).
type Route struct {
	Method, Pattern, Op string
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// cookieName is the session cookie's name.
const cookieName = "ledger_console"

// New returns the console.
func New(o Options) (*Console, error) {
	c := &Console{o: o, log: o.Logger, mux: http.NewServeMux(), pages: map[string]*template.Template{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if err := c.parse(); err != nil {
		return nil, err
	}
	static, _ := fs.Sub(staticFS, "static")
	assets := http.StripPrefix(Prefix+"static/", http.FileServer(http.FS(static)))
	c.mux.Handle("GET "+Prefix+"static/", assets)
	c.routes = append(c.routes, Route{http.MethodGet, Prefix + "static/", ""})
	c.public("GET /{$}", c.home)
	c.public("GET sign-in", c.signInForm)
	c.public("POST sign-in", c.signIn)
	c.public("POST sign-out", c.signOut)

	c.page("GET contacts", "contacts.list", c.contacts)
	c.page("POST contacts/bulk", "contacts.bulk", c.bulk)
	c.page("GET contacts/new", "contacts.create", c.newContact)
	c.page("POST contacts", "contacts.create", c.createContact)
	c.page("GET contacts/{id}", "contacts.get", c.contact)
	c.page("GET contacts/{id}/edit", "contacts.update", c.editContact)
	c.page("POST contacts/{id}/edit", "contacts.update", c.updateContact)
	for _, t := range ledger.Transitions {
		c.page("POST contacts/{id}/"+string(t), "contacts."+string(t), c.transition(t))
	}
	c.page("POST contacts/{id}/spam", "contacts.spam", c.spam(true))
	c.page("POST contacts/{id}/unspam", "contacts.unspam", c.spam(false))
	c.page("POST contacts/{id}/hold", "contacts.hold", c.hold(true))
	c.page("POST contacts/{id}/release-hold", "contacts.release_hold", c.hold(false))
	c.page("POST contacts/{id}/tags", "contacts.tags", c.changeTags)
	c.page("POST contacts/{id}/notes", "contacts.notes.add", c.addNote)
	c.page("POST contacts/{id}/lists", "contacts.lists.set", c.setList)
	c.page("POST contacts/{id}/lists/remove", "contacts.lists.remove", c.removeList)
	c.page("POST contacts/{id}/links", "contacts.links.add", c.addLink)
	c.page("POST contacts/{id}/links/remove", "contacts.links.remove", c.removeLink)
	c.page("GET contacts/{id}/receipt", "contacts.erasure_receipt", c.receipt)
	c.page("GET contacts/{id}/receipt.json", "contacts.erasure_receipt", c.receiptFile)

	c.page("POST restore-jobs", "restore_jobs.create", c.startRestoreJob)
	c.page("GET restore-jobs/{id}", "restore_jobs.get", c.restoreJob)
	c.page("GET restore-jobs/{id}/progress", "restore_jobs.get", c.restoreJobProgress)
	c.page("POST restore-jobs/{id}/cancel", "restore_jobs.cancel", c.cancelRestoreJob)

	c.page("GET audit", "audit.events", c.audit)

	c.page("GET engineers", "projections.status", c.engineers)
	c.page("POST rebuilds", "projections.rebuild", c.startRebuild)
	c.page("GET rebuilds/{id}", "projections.rebuild_status", c.rebuild)
	c.page("GET rebuilds/{id}/progress", "projections.rebuild_status", c.rebuildProgress)
	c.page("POST rebuilds/{id}/cancel", "projections.rebuild_cancel", c.cancelRebuild)
	return c, nil
}

// Routes returns every endpoint of the console with its operation.
func (c *Console) Routes() []Route { return append([]Route(nil), c.routes...) }

// ServeHTTP serves a request under Prefix.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	h := rec.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "+
		"form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	id := ulid.Make().String()
	h.Set("X-Request-Id", id)
	ctx := context.WithValue(r.Context(), requestKey{}, &requestInfo{id: id})
	r = r.WithContext(ctx)
	if !c.sameOrigin(r) {
		c.fail(rec, r, &kernel.Error{Code: kernel.CodeForbidden, Reason: "cross-origin", Message: "this form was sent from another site"})
	} else {
		c.mux.ServeHTTP(rec, r)
	}
	// The route pattern, never the path or query: they can hold what a user typed.
	info := info(r)
	c.log.LogAttrs(r.Context(), slog.LevelInfo, "console request", slog.String("request_id", id), slog.String("method", r.Method),
		slog.String("route", r.Pattern), slog.Int("status", rec.status), slog.Duration("duration", time.Since(start)),
		slog.String("token", info.p.TokenID), slog.String("workspace", info.p.Workspace))
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

type requestKey struct{}

// requestInfo is what the middleware learns of a request: its id, and the
// session's principal and cookie once resumed.
type requestInfo struct {
	id     string
	p      ledger.Principal
	cookie string
}

func info(r *http.Request) *requestInfo {
	if i, ok := r.Context().Value(requestKey{}).(*requestInfo); ok {
		return i
	}
	return &requestInfo{}
}

// sameOrigin refuses writes another site's page sent: browsers name the
// origin of every POST (and SameSite=Strict keeps the cookie off them
// anyway); the CSRF token is the check that does not rely on either.
func (c *Console) sameOrigin(r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	return true
}

// public routes a page anyone may open, signed in or not.
func (c *Console) public(pattern string, h http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	path = strings.TrimPrefix(path, "/")
	c.routes = append(c.routes, Route{method, Prefix + path, ""})
	c.mux.HandleFunc(method+" "+Prefix+path, h)
}

// page routes a page or form of a signed-in session whose role may perform
// op, by the one permission table. Every POST needs the session's CSRF token.
func (c *Console) page(pattern, op string, h http.HandlerFunc) {
	if _, ok := ledger.Permissions[op]; !ok {
		panic("console: operation " + op + " has no entry in the permission table")
	}
	method, path, _ := strings.Cut(pattern, " ")
	c.routes = append(c.routes, Route{method, Prefix + path, op})
	c.mux.HandleFunc(method+" "+Prefix+path, func(w http.ResponseWriter, r *http.Request) {
		in := info(r)
		ck, err := r.Cookie(cookieName)
		if err == nil {
			in.cookie = ck.Value
			in.p, err = c.o.Sessions.ResumeSession(r.Context(), ck.Value, c.o.Times)
		}
		if err != nil {
			in.cookie, in.p = "", ledger.Principal{}
			if kernel.ErrorCode(err) != kernel.CodeUnauthorized && !errors.Is(err, http.ErrNoCookie) {
				c.fail(w, r, err)
				return
			}
			c.clearCookie(w, r)
			if r.Method == http.MethodGet {
				http.Redirect(w, r, Prefix+"sign-in?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.fail(w, r, ledger.ErrUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				c.fail(w, r, &kernel.Error{Code: kernel.CodeBadRequest, Reason: "malformed-form", Message: "the form could not be read"})
				return
			}
			if !ledger.CheckSessionCSRF(in.cookie, r.PostForm.Get("csrf")) {
				c.fail(w, r, errCSRF)
				return
			}
		}
		if !ledger.Allowed(in.p.Role, op) {
			c.fail(w, r, kernel.Errorf(kernel.ErrRoleNotAllowed, "the %s role may not do %s", in.p.Role, op))
			return
		}
		h(w, r)
	})
}

// maxForm bounds a form's body.
const maxForm = 1 << 20

var errCSRF = &kernel.Error{Code: kernel.CodeForbidden, Reason: "csrf", Message: "the form's anti-forgery token is missing or wrong; reload the page and try again"}

// meta is the command metadata of a request: the session's token as actor,
// the request id as correlation id.
func meta(r *http.Request) ledger.Meta {
	in := info(r)
	return ledger.Meta{Actor: in.p.Actor(), CorrelationID: in.id}
}

func principal(r *http.Request) ledger.Principal { return info(r).p }

// secure reports whether the request came over TLS (or, when trusted, through a proxy that terminated it).
func (c *Console) secure(r *http.Request) bool {
	return r.TLS != nil || (c.o.TrustForwardedProto && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"))
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, value string) {
	max := c.o.Times.MaxAge
	if max <= 0 {
		max = 12 * time.Hour
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: Prefix, MaxAge: int(max / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secure(r)})
}

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secure(r)})
}

// errorPage is what an error page shows: the application error's safe
// message and fields, never an internal error's text.
type errorPage struct {
	Status  int
	Title   string
	Message string
	Fields  []kernel.FieldError
	// RunningJob names the restore job that holds the workspace's slot.
	RunningJob string
	// Holder is the contact that holds a refused email or phone; KeepBoth
	// the contact whose refused restore may go ahead with keep_both.
	Holder, KeepBoth string
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := errorPage{Status: http.StatusInternalServerError, Title: "Something went wrong",
		Message: "The ledger could not do this. The request id below is in its log."}
	var appErr *kernel.Error
	var running *ledger.JobRunningError
	if errors.As(err, &running) {
		e.RunningJob = running.Job
	}
	if errors.As(err, &appErr) && wire.HTTPStatus(appErr.Code) != 0 {
		e.Status, e.Message, e.Fields = wire.HTTPStatus(appErr.Code), appErr.Message, appErr.Fields
		e.Title = http.StatusText(e.Status)
		if appErr.Code == kernel.CodeUnauthorized {
			e.Title = "Please sign in"
		}
		if taken, ok := errors.AsType[*ledger.IdentityTakenError](err); ok {
			e.Message, e.Holder = takenMessage(taken), taken.Holder.String()
			if taken.Restoring {
				e.KeepBoth = r.PathValue("id")
			}
		}
	} else {
		c.log.Error("console request failed", "request_id", info(r).id, "route", r.Pattern, "err", err)
	}
	c.render(w, r, e.Status, "error", e.Title, e)
}

// view is what every page's layout gets.
type view struct {
	Title   string
	P       ledger.Principal
	CSRF    string
	Nav     []navItem
	Notice  string
	Request string
	Data    any
}

type navItem struct {
	Label, Href string
	Current     bool
}

func (c *Console) nav(r *http.Request) []navItem {
	p := principal(r)
	if p.TokenID == "" {
		return nil
	}
	var out []navItem
	for _, n := range []struct{ label, path, op string }{
		{"Contacts", "contacts", "contacts.list"},
		{"Trash", "contacts?view=trash", "contacts.list"},
		{"Audit log", "audit", "audit.events"},
		{"Engineers", "engineers", "projections.status"},
	} {
		if ledger.Allowed(p.Role, n.op) {
			href := Prefix + n.path
			cur := r.URL.Path == Prefix+strings.SplitN(n.path, "?", 2)[0] && (strings.Contains(n.path, "view=trash") == (r.URL.Query().Get("view") == "trash"))
			out = append(out, navItem{n.label, href, cur})
		}
	}
	return out
}

// notices are the messages a redirect after a write may show, by key: a
// redirect never carries text a user typed.
var notices = map[string]string{
	"created": "Contact created.", "updated": "Changes saved.", "archived": "Contact archived.", "unarchived": "Contact unarchived.",
	"trashed": "Contact moved to trash.", "restored": "Contact restored.", "purged": "Contact deleted forever.",
	"anonymized": "Contact anonymized.", "spam": "Marked as spam.", "unspam": "No longer marked as spam.",
	"held": "Legal hold placed.", "released": "Legal hold released.",
	"tags": "Tags saved.", "note": "Note added.", "list": "List membership saved.", "list-removed": "Removed from the list.",
	"link": "Link added.", "link-removed": "Link removed.", "signed-out": "You are signed out.",
	"cancel-asked": "Cancellation asked for.", "expired": "Your session ended. Please sign in again.",
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page, title string, data any) {
	t, ok := c.pages[page]
	if !ok {
		panic("console: no template " + page)
	}
	in := info(r)
	v := view{Title: title, P: in.p, Nav: c.nav(r), Notice: notices[r.URL.Query().Get("done")], Request: in.id, Data: data}
	if in.cookie != "" {
		v.CSRF = ledger.SessionCSRF(in.cookie)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := t.ExecuteTemplate(w, "layout", v); err != nil {
		c.log.Warn("rendering a console page failed", "page", page, "request_id", in.id, "err", err)
	}
}

func (c *Console) parse() error {
	entries, err := fs.ReadDir(templateFS, "templates")
	if err != nil {
		return err
	}
	base, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+e.Name())
		if err != nil {
			return fmt.Errorf("template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return nil
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	in := info(r)
	if ck, err := r.Cookie(cookieName); err == nil {
		if p, err := c.o.Sessions.ResumeSession(r.Context(), ck.Value, c.o.Times); err == nil {
			in.p = p
		}
	}
	switch {
	case in.p.TokenID == "":
		http.Redirect(w, r, Prefix+"sign-in", http.StatusSeeOther)
	case ledger.Allowed(in.p.Role, "contacts.list"):
		http.Redirect(w, r, Prefix+"contacts", http.StatusSeeOther)
	default:
		http.Redirect(w, r, Prefix+"engineers", http.StatusSeeOther)
	}
}

type signInPage struct {
	Next  string
	Error string
}

// safeNext keeps a post-sign-in redirect inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix
	}
	return next
}

func (c *Console) signInForm(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "signin", "Sign in", signInPage{Next: safeNext(r.URL.Query().Get("next"))})
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, &kernel.Error{Code: kernel.CodeBadRequest, Reason: "malformed-form", Message: "the form could not be read"})
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	value, _, err := c.o.Sessions.StartSession(r.Context(), r.PostForm.Get("token"), c.o.Times)
	if err != nil {
		status := http.StatusInternalServerError
		msg := "Signing in failed; try again."
		if kernel.ErrorCode(err) == kernel.CodeUnauthorized {
			status, msg = http.StatusUnauthorized, "That token is not valid: it may be mistyped or revoked."
		} else {
			c.log.Error("console sign-in failed", "request_id", info(r).id, "err", err)
		}
		c.render(w, r, status, "signin", "Sign in", signInPage{Next: next, Error: msg})
		return
	}
	c.setCookie(w, r, value)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signOut ends the session; the CSRF token is checked so that another site
// cannot sign a user out.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	ck, err := r.Cookie(cookieName)
	if err != nil || r.ParseForm() != nil || !ledger.CheckSessionCSRF(ck.Value, r.PostForm.Get("csrf")) {
		c.fail(w, r, errCSRF)
		return
	}
	if err := c.o.Sessions.EndSession(r.Context(), ck.Value); err != nil {
		c.fail(w, r, err)
		return
	}
	c.clearCookie(w, r)
	http.Redirect(w, r, Prefix+"sign-in?done=signed-out", http.StatusSeeOther)
}
