package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/delivery"
	"github.com/contactledger/ledger/domain/feed"
	"github.com/contactledger/ledger/internal/hooktest"
	"github.com/contactledger/ledger/ledger"
)

// shiftClock is the real time moved by an offset, for trashing contacts on
// days in the past.
type shiftClock struct {
	mu sync.Mutex
	d  time.Duration
}

func (c *shiftClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.d) }
func (c *shiftClock) shift(d time.Duration) {
	c.mu.Lock()
	c.d = d
	c.mu.Unlock()
}

// xssName is a contact name that runs a script if a page inserts it as HTML.
const xssName = `<img src=x onerror=alert(1)>`

// TestConsole drives the console in a real headless Chromium against a
// real `ledger serve`, on each store, through the flows of the seeds'
// articles and the compliance staff's and engineers' pages.
func TestConsole(t *testing.T) { eachStore(t, testConsole) }

func testConsole(t *testing.T, store string) {
	clk := &shiftClock{}
	l := start(t, store, func(m *main.Main) {
		m.Now, m.Config.RestoreRate = clk.Now, "40"
		// Webhooks to receivers on 127.0.0.1, retried in milliseconds.
		m.Config.WebhookAllow = []string{"127.0.0.1/32"}
		m.Webhook = delivery.Options{Schedule: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond},
			Scan: 50 * time.Millisecond, Poll: 50 * time.Millisecond}
	})
	// Two webhook subscribers (subscribed below, once the clock is no
	// longer moved: a receiver refuses a delivery signed days ago): one
	// takes every event, one answers 500 to the erasure notices, the only
	// events it asked for.
	up, down := hooktest.NewReceiver(t), hooktest.NewReceiver(t)
	down.SetFail(func(feed.Event) int { return http.StatusInternalServerError })
	var upHook, downHook string
	hook := func(rc *hooktest.Receiver, body map[string]any) string {
		body["url"] = rc.URL()
		r := l.as("POST", "/v1/webhooks", body)
		want(t, r, 201, "")
		rc.Trust(r.str("secret"))
		return r.str("id")
	}
	b := newTab(t, l.url())
	step := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) { b.t = t; f(t) })
	}
	mk := func(body map[string]any) string {
		t.Helper()
		r := l.as("POST", "/v1/contacts", body)
		want(t, r, 201, "")
		return r.str("id")
	}

	step("sign-in", func(t *testing.T) {
		b.open("/console/contacts")
		if !strings.HasPrefix(b.text("h1"), "Sign in") {
			t.Fatalf("a page without a session: got %q, want the sign-in page", b.text("h1"))
		}
		b.enter("#token", "lgr_not-a-token")
		b.waitJS(`document.querySelector(".error") !== null`)
		if !strings.Contains(b.text(".error"), "not valid") {
			t.Fatalf("a bad token: got %q", b.text(".error"))
		}
		b.signIn(l.admin)
		if h := b.text("h1"); h != "Contacts" {
			t.Fatalf("after sign-in: got %q, want the contacts page it was sent from", h)
		}
		if who := b.text(".who span"); who != "default · admin" {
			t.Fatalf("the header shows %q, want the workspace and role", who)
		}
		cookies := b.cookies()
		c := cookies[slices.IndexFunc(cookies, func(c *network.Cookie) bool { return c.Name == "ledger_console" })]
		if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || strings.Contains(c.Value, l.admin) {
			t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, not the token", c)
		}
	})

	var adaID string
	step("create and edit", func(t *testing.T) {
		b.open("/console/contacts")
		b.submit(`a[href="/console/contacts/new"]`)
		b.fill("#f-name", "Ada Lovelace")
		b.fill("#f-email", "ada@analytical.example")
		b.fill("#f-tags", "vip, math")
		b.submit(`form.stack button[type=submit]`)
		if b.text("h1") != "Ada Lovelace" || b.text(".notice") != "Contact created." {
			t.Fatalf("after create: %q %q", b.text("h1"), b.text(".notice"))
		}
		loc := b.location()
		adaID = strings.TrimSuffix(strings.TrimPrefix(loc, l.url()+"/console/contacts/"), "?done=created")
		b.submit(`a[href$="/edit"]`)
		b.fill("#f-job_title", "Analyst of Engines")
		b.submit(`form.stack button[type=submit]`)
		if b.text(".notice") != "Changes saved." || !strings.Contains(b.text("dl.details"), "Analyst of Engines") {
			t.Fatalf("after edit: %q", b.text("main"))
		}
		r := l.as("GET", "/v1/contacts/"+adaID, nil)
		if r.str("job_title") != "Analyst of Engines" || r.str("email") != "ada@analytical.example" || r.num("version") != 2 {
			t.Fatalf("the API shows %s", r.Raw)
		}
		// Archived contacts cannot be edited, and the page says why.
		want(t, l.as("POST", "/v1/contacts/"+adaID+"/archive", nil), 200, "")
		b.open("/console/contacts/" + adaID)
		if !strings.Contains(b.text("#edit-refusal"), "unarchive it first") {
			t.Fatalf("archived contact: got %q, want the reason edit is off", b.text(".actions"))
		}
		b.open("/console/contacts/" + adaID + "/edit")
		if !strings.Contains(b.text("#refusal"), "Archived contacts can't be edited") {
			t.Fatalf("edit page of an archived contact: %q", b.text("main"))
		}
		want(t, l.as("POST", "/v1/contacts/"+adaID+"/unarchive", nil), 200, "")
	})

	step("a taken email is refused on the form; a restore offers keep both", func(t *testing.T) {
		b.open("/console/contacts/new")
		b.fill("#f-name", "Ada Twin")
		b.fill("#f-email", "ADA@analytical.example")
		b.submit(`form.stack button[type=submit]`)
		if !strings.Contains(b.text("#e-email"), "belongs to another contact (active)") ||
			evalInto[string](b, `document.querySelector("#holder").getAttribute("href")`) != "/console/contacts/"+adaID ||
			evalInto[string](b, `document.querySelector("#f-name").value`) != "Ada Twin" {
			t.Fatalf("a create onto Ada's email: %q", b.text("main"))
		}
		// Under identity_uniqueness live, trash frees the email; restoring
		// its old holder meets the new one and offers keep both.
		pol := l.as("GET", "/v1/workspace/policy", nil)
		var saved map[string]any
		if err := json.Unmarshal(pol.Raw, &saved); err != nil {
			t.Fatal(err)
		}
		setUniqueness := func(u string) {
			p := maps.Clone(saved)
			p["identity_uniqueness"] = u
			want(t, l.as("PUT", "/v1/workspace/policy", p), 200, "")
		}
		setUniqueness("live")
		defer setUniqueness(saved["identity_uniqueness"].(string))
		one := mk(map[string]any{"name": "Twin One", "email": "twin@example.com"})
		want(t, l.as("POST", "/v1/contacts/"+one+"/trash", nil), 200, "")
		two := mk(map[string]any{"name": "Twin Two", "email": "twin@example.com"})
		b.open("/console/contacts/" + one)
		b.click(`form[action$="/restore"] button`)
		b.waitVisible("#confirm-dialog")
		b.submit("#confirm-ok")
		if !strings.Contains(b.text(".error"), "now belongs to another contact (active)") ||
			evalInto[string](b, `document.querySelector("#holder a").getAttribute("href")`) != "/console/contacts/"+two {
			t.Fatalf("a restore onto a taken email: %q", b.text("main"))
		}
		if r := l.as("GET", "/v1/contacts/"+one, nil); r.str("state") != "trashed" {
			t.Fatalf("a refused restore changed the contact: %s", r.Raw)
		}
		b.submit("#keep-both button")
		if b.text(".notice") != "Contact restored." {
			t.Fatalf("restore and keep both: %q", b.text("main"))
		}
		if r := l.as("GET", "/v1/contacts/"+one, nil); r.str("state") != "active" {
			t.Fatalf("after keep both: %s", r.Raw)
		}
	})

	step("xss name renders inert", func(t *testing.T) {
		id := mk(map[string]any{"name": xssName, "email": "xss@example.com", "tags": []string{"xss"}})
		want(t, l.as("POST", "/v1/contacts/"+id+"/notes", map[string]any{"text": xssName}), 201, "")
		for _, path := range []string{"/console/contacts?tag=xss", "/console/contacts/" + id} {
			b.open(path)
			text, _ := b.body()
			imgs := evalInto[int](b, `document.querySelectorAll("img").length`)
			if !strings.Contains(text, xssName) || imgs != 0 {
				t.Fatalf("%s: the name must show as text (found %v) and make no element (%d images)", path, strings.Contains(text, xssName), imgs)
			}
		}
		time.Sleep(200 * time.Millisecond)
		if d := b.seenDialogs(); len(d) > 0 {
			t.Fatalf("an injected script ran: dialogs %q", d)
		}
	})

	batch := make([]string, 3)
	step("select three and bulk trash with the confirmed count", func(t *testing.T) {
		for i := range batch {
			batch[i] = mk(map[string]any{"name": fmt.Sprintf("Batch %d", i), "tags": []string{"batch"}})
		}
		mk(map[string]any{"name": "Not in the batch", "tags": []string{"other"}})
		b.open("/console/contacts?tag=batch")
		if !evalInto[bool](b, `document.querySelector("#bulkbar").hidden`) {
			t.Fatal("the bulk bar shows with nothing selected")
		}
		// The first by keyboard, the others by mouse.
		b.run(chromedp.Focus(chromedp.CSS(`input.row-select`)), chromedp.KeyEvent(" "))
		b.click(`tbody tr:nth-child(2) input.row-select`)
		b.click(`tbody tr:nth-child(3) input.row-select`)
		if n := b.text("#selected-count"); n != "3" {
			t.Fatalf("selected count %q, want 3", n)
		}
		b.click(`#bulkbar button[value=trash]`)
		b.waitVisible("#confirm-dialog")
		if got := b.text("#confirm-text"); got != "Move 3 selected contacts to trash?" {
			t.Fatalf("the dialog says %q, want the selected count", got)
		}
		b.fill("#confirm-reason", "duplicates")
		b.submit("#confirm-ok")
		if got := b.text("#bulk-totals"); got != "3 of 3 done." {
			t.Fatalf("bulk result: %q", got)
		}
		for _, id := range batch {
			r := l.as("GET", "/v1/contacts/"+id, nil)
			if r.str("state") != "trashed" || r.str("trash_reason") != "duplicates" {
				t.Fatalf("after bulk trash: %s", r.Raw)
			}
		}
		b.submit("#back-to-list")
		if text, _ := b.body(); strings.Contains(text, "Batch 0") {
			t.Fatal("trashed contacts still show in the active list")
		}
	})

	step("bulk count mismatch changes nothing", func(t *testing.T) {
		id := mk(map[string]any{"name": "Counted", "tags": []string{"counted"}})
		b.open("/console/contacts?tag=counted")
		b.click(`input.row-select`)
		// A page that lies about the count is refused whole.
		b.eval(`document.querySelector("#bulkbar button[value=archive]").removeAttribute("data-confirm"); document.querySelector("#expected-count").value = "2"; true`)
		b.submit(`#bulkbar button[value=archive]`)
		if !strings.Contains(b.text("main"), "expected_count") {
			t.Fatalf("count mismatch: %q", b.text("main"))
		}
		if r := l.as("GET", "/v1/contacts/"+id, nil); r.str("state") != "active" {
			t.Fatalf("a refused bulk request changed the contact: %s", r.Raw)
		}
	})

	var oldID, newID string
	step("trash filtered by deleted date, restore", func(t *testing.T) {
		oldID = mk(map[string]any{"name": "Deleted Long Ago", "email": "old@example.com"})
		newID = mk(map[string]any{"name": "Deleted Lately", "email": "new@example.com"})
		clk.shift(-20 * 24 * time.Hour)
		want(t, l.as("POST", "/v1/contacts/"+oldID+"/trash", nil), 200, "")
		clk.shift(-2 * 24 * time.Hour)
		want(t, l.as("POST", "/v1/contacts/"+newID+"/trash", nil), 200, "")
		clk.shift(0)
		b.open("/console/contacts")
		b.eval(`(() => { const s = document.querySelector("#view"); s.value = "trash"; s.dispatchEvent(new Event("change")); return true; })()`)
		b.waitJS(`location.search.includes("view=trash") && document.readyState === "complete" && document.querySelector("#deleted_from") !== null`)
		if b.text("h1") != "Deleted contacts" {
			t.Fatalf("the Show menu: got %q", b.text("h1"))
		}
		from := time.Now().UTC().AddDate(0, 0, -5).Format(time.DateOnly)
		b.fill("#deleted_from", from)
		b.submit(`.filters button[type=submit]`)
		text, _ := b.body()
		if !strings.Contains(text, "Deleted Lately") || strings.Contains(text, "Deleted Long Ago") || !strings.Contains(text, "Batch 0") {
			t.Fatalf("deleted from %s: want the contacts deleted since (and the batch), not the old one; page %q", from, text)
		}
		b.fill("#deleted_to", time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly))
		b.submit(`.filters button[type=submit]`)
		text, _ = b.body()
		if !strings.Contains(text, "Deleted Lately") || strings.Contains(text, "Batch 0") || strings.Contains(text, "Deleted Long Ago") {
			t.Fatalf("deleted between two dates: %q", text)
		}
		// The row shows who deleted it and when retention will purge it.
		row := b.text(`tbody tr`)
		trashed := time.Now().UTC().Add(-48 * time.Hour)
		if !strings.Contains(row, trashed.Format("2006-01-02")) || !strings.Contains(row, "tok_") || !strings.Contains(row, trashed.AddDate(0, 0, 30).Format("2006-01-02")) {
			t.Fatalf("trash row %q: want the deleted date, the token and the purge date", row)
		}
		b.submit(`tbody tr button[formaction$="/restore"]`)
		if b.text(".notice") != "Contact restored." {
			t.Fatalf("restore: %q", b.text("main"))
		}
		if r := l.as("GET", "/v1/contacts/"+newID, nil); r.str("state") != "active" {
			t.Fatalf("restored contact: %s", r.Raw)
		}
	})

	step("a legal hold stops delete forever until released", func(t *testing.T) {
		id := mk(map[string]any{"name": "Held Contact", "email": "held@example.com"})
		want(t, l.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
		b.open("/console/contacts/" + id)
		if evalInto[int](b, `document.querySelectorAll("[data-dialog=purge-dialog], [data-dialog=anonymize-dialog]").length`) != 2 {
			t.Fatalf("a trashed contact without a hold: %q, want delete forever and anonymize", b.text(".actions"))
		}
		b.fill("#hold-case", "CASE-7")
		b.fill("#hold-reason", "litigation")
		b.submit(`#hold-form button[type=submit]`)
		if b.text(".notice") != "Legal hold placed." || !strings.Contains(b.text("#hold"), "case CASE-7") || !strings.Contains(b.text("#hold"), "litigation") {
			t.Fatalf("after placing the hold: %q", b.text("main"))
		}
		if n := evalInto[int](b, `document.querySelectorAll("[data-dialog=purge-dialog], [data-dialog=anonymize-dialog], #purge-dialog").length`); n != 0 || !strings.Contains(b.text("#erase-refusal"), "legal hold") {
			t.Fatalf("a held contact offers %d erasures; refusal %q", n, b.text(".actions"))
		}
		if !strings.Contains(b.text("#purge-after"), "not while the legal hold stands") {
			t.Fatalf("the held contact's purge date: %q", b.text("#purge-after"))
		}
		if !strings.Contains(b.text("table.timeline"), "Held") || !strings.Contains(b.text("table.timeline"), "litigation") {
			t.Fatalf("the timeline does not show the hold: %q", b.text("table.timeline"))
		}
		// In the trash list too: no delete forever, no purge date.
		b.open("/console/contacts?view=trash&q=Held+Contact")
		if row := b.text("tbody tr"); !strings.Contains(strings.ToLower(row), "legal hold") || evalInto[int](b, `document.querySelectorAll("tbody tr a.danger").length`) != 0 {
			t.Fatalf("the held contact's trash row: %q", row)
		}
		b.open("/console/contacts/" + id)
		// A purge sent anyway is refused, and the contact stays.
		status, body := consolePost(t, b, "/console/contacts/"+id+"/purge", url.Values{"csrf": {csrfOf(t, b)}}, "")
		if status != http.StatusConflict || !strings.Contains(body, "legal hold") {
			t.Fatalf("purging a held contact: %d %q", status, body)
		}
		if r := l.as("GET", "/v1/contacts/"+id, nil); r.str("state") != "trashed" {
			t.Fatalf("the held contact: %s", r.Raw)
		}
		b.click(`#release-hold-form button[type=submit]`)
		b.waitVisible("#confirm-dialog")
		b.fill("#confirm-reason", "case closed")
		b.submit("#confirm-ok")
		if b.text(".notice") != "Legal hold released." || evalInto[int](b, `document.querySelectorAll("#hold").length`) != 0 ||
			evalInto[int](b, `document.querySelectorAll("[data-dialog=purge-dialog]").length`) != 1 {
			t.Fatalf("after releasing the hold: %q", b.text("main"))
		}
	})

	step("delete forever from trash, and its receipt", func(t *testing.T) {
		upHook = hook(up, map[string]any{"description": "Ada's CRM sync"})
		downHook = hook(down, map[string]any{"description": "Grace's archive", "types": []string{"contact.purged"}})
		b.open("/console/contacts?view=trash&q=Deleted+Long+Ago")
		b.submit(`tbody tr a.danger`)
		b.waitVisible("#purge-dialog")
		dialog := b.text("#purge-dialog")
		for _, s := range []string{"Name", "Email", "Phone number", "Job title", "Address", "All custom field values", "tombstone"} {
			if !strings.Contains(dialog, s) {
				t.Fatalf("the delete forever dialog does not list %q: %q", s, dialog)
			}
		}
		b.fill("#purge-reason", "erasure request")
		b.fill("#purge-request", "DSR-7")
		b.submit(`#purge-dialog button[type=submit]`)
		if !strings.EqualFold(b.text("#state"), "purged") || b.text(".notice") != "Contact deleted forever." {
			t.Fatalf("after delete forever: %q", b.text("main"))
		}
		want(t, l.as("GET", "/v1/contacts/"+oldID, nil), 410, "purged")
		// The erasure's reason was sealed under the key it destroyed: the
		// timeline marks it shredded and no page shows it any more.
		purged := b.text("table.timeline tbody tr:first-child")
		if !strings.Contains(purged, "Purged") || !strings.Contains(b.text(`table.timeline tbody tr:first-child td[data-label="Why"]`), "[shredded]") ||
			!strings.Contains(purged, "request DSR-7") || !strings.Contains(b.text("table.timeline"), "personal data: [shredded]") {
			t.Fatalf("the timeline must mark the shredded reason and fields, and keep the request reference: %q", b.text("table.timeline"))
		}
		if _, html := b.body(); strings.Contains(html, "erasure request") {
			t.Fatal("the erased contact's page still shows the erasure's reason")
		}
		b.submit(`a[href$="/receipt"]`)
		key := l.as("GET", "/v1/receipts/public-key", nil).str("key_id")
		if v := b.text("#verification"); !strings.Contains(v, "Signature valid") || !strings.Contains(v, key) || !strings.Contains(v, "Trail matches") {
			t.Fatalf("receipt verification: %q, want valid and signed by %s", v, key)
		}
		// The download is the document byte for byte: it verifies offline.
		doc := consoleGet(t, b, "/console/contacts/"+oldID+"/receipt.json")
		pub, err := l.Svc.SigningPublicKey(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.VerifyReceipt(doc, pub); err != nil {
			t.Fatalf("the downloaded receipt does not verify: %v", err)
		}
		// Who was told: the subscriber that answered 2xx acknowledged the
		// notice, the one answering 500 was sent it and did not.
		notice := func(hook string) string {
			return evalInto[string](b, `(() => { for (const tr of document.querySelectorAll("#propagation tbody tr")) {
				if (tr.cells[0].textContent.trim() === `+strconv.Quote(hook)+`) return tr.cells[1].textContent.trim(); } return ""; })()`)
		}
		for deadline := time.Now().Add(15 * time.Second); notice(upHook) != "acknowledged"; {
			if time.Now().After(deadline) {
				t.Fatalf("the receipt's propagation never showed %s acknowledged: %q", upHook, b.text("#propagation"))
			}
			time.Sleep(100 * time.Millisecond)
			b.open("/console/contacts/" + oldID + "/receipt")
		}
		if got := notice(downHook); got != "notified" && got != "pending" {
			t.Fatalf("the failing subscriber's notice: %q, want notified or pending; %q", got, b.text("#propagation"))
		}
		if !strings.Contains(b.text("#verification"), "Signature valid") {
			t.Fatal("the propagation section changed the receipt's signature")
		}
	})

	step("audit log filter", func(t *testing.T) {
		b.open("/console/audit")
		b.fill("#type", "ContactPurged")
		b.submit(`.filters button[type=submit]`)
		rows := b.text("table.audit tbody")
		if !strings.Contains(rows, oldID) || strings.Contains(rows, "ContactCreated") || strings.Count(rows, "ContactPurged") != 1 {
			t.Fatalf("audit filtered by ContactPurged: %q", rows)
		}
		b.open("/console/audit?contact=" + newID)
		rows = b.text("table.audit tbody")
		if !strings.Contains(rows, "ContactCreated") || !strings.Contains(rows, "ContactTrashed") || !strings.Contains(rows, "ContactRestored") || strings.Contains(rows, oldID) {
			t.Fatalf("audit filtered by contact: %q", rows)
		}
	})

	step("restore all matching, with progress; a second job refused", func(t *testing.T) {
		ids := make([]string, 120)
		for i := range ids {
			ids[i] = mk(map[string]any{"name": fmt.Sprintf("Mass %03d", i), "tags": []string{"mass"}})
		}
		want(t, l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "trash", "ids": ids, "expected_count": len(ids)}), 200, "")
		// A second admin, ready to start another job while this one runs.
		other := newTab(t, l.url())
		other.signIn(l.admin)
		other.open("/console/contacts?view=trash")
		other.click("#restore-all")
		other.waitVisible("#confirm-dialog")

		b.open("/console/contacts?view=trash&tag=mass")
		b.click("#restore-all") // the confirm dialog opens first
		b.waitVisible("#confirm-dialog")
		b.submit("#confirm-ok")
		var seen []int
		jobURL := b.location()
		other.submit("#confirm-ok")
		if msg := other.text("main"); !strings.Contains(msg, "is running in this workspace") || !strings.Contains(jobURL, other.text(`main a[href*="/restore-jobs/"]`)[len("restore job "):]) {
			t.Fatalf("a second restore job: %q, want refused with %s named", msg, jobURL)
		}
		for {
			v := evalInto[struct {
				Value, Max int
				State      string
			}](b, `({Value: document.querySelector("#job-progress").value, Max: document.querySelector("#job-progress").max, State: document.querySelector("#job-state").dataset.state})`)
			if len(seen) == 0 || seen[len(seen)-1] != v.Value {
				seen = append(seen, v.Value)
			}
			if v.State == "succeeded" {
				if v.Value != 120 || v.Max != 120 {
					t.Fatalf("finished job's bar: %d of %d", v.Value, v.Max)
				}
				break
			}
			if v.State == "failed" || v.State == "cancelled" {
				t.Fatalf("the job ended %s", v.State)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(seen) < 3 {
			t.Fatalf("the progress bar moved through %v, want it to show progress on the way", seen)
		}
		if got := b.text("#job-text"); got != "120 of 120 restored (succeeded)" {
			t.Fatalf("job text %q", got)
		}
		if r := l.as("GET", "/v1/contacts/"+ids[119], nil); r.str("state") != "active" {
			t.Fatalf("after the job: %s", r.Raw)
		}
	})

	step("rebuild with progress", func(t *testing.T) {
		b.open("/console/engineers")
		if !strings.Contains(strings.ToLower(b.text("table.projections")), "live") {
			t.Fatalf("projection status: %q", b.text("table.projections"))
		}
		b.fill("#projection", "active")
		b.click(`form[action$="/rebuilds"] button`)
		b.waitVisible("#confirm-dialog")
		b.submit("#confirm-ok")
		if !strings.HasPrefix(b.text("h1"), "Rebuild of active") {
			t.Fatalf("rebuild page: %q", b.text("main"))
		}
		b.waitJS(`document.querySelector("#rebuild-state").dataset.state === "done"`)
		v := evalInto[struct{ Value, Max float64 }](b, `({Value: document.querySelector("#rebuild-progress").value, Max: document.querySelector("#rebuild-progress").max})`)
		if v.Max < 100 || v.Value != v.Max || !strings.Contains(b.text("#rebuild-text"), "(done)") {
			t.Fatalf("finished rebuild: %+v %q", v, b.text("#rebuild-text"))
		}
	})

	step("webhook delivery status", func(t *testing.T) {
		for deadline := time.Now().Add(15 * time.Second); ; {
			b.open("/console/engineers")
			if strings.EqualFold(b.text("#hook-"+upHook+" .badge"), "delivering") && strings.EqualFold(b.text("#hook-"+downHook+" .badge"), "failing") &&
				strings.Contains(b.text("table.hook-failures"), downHook) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("webhook status: %q", b.text("main"))
			}
			time.Sleep(100 * time.Millisecond)
		}
		upRow, downRow := b.text("#hook-"+upHook), b.text("#hook-"+downHook)
		if !strings.Contains(upRow, up.URL()) || strings.Contains(upRow, "never") || strings.Contains(upRow, "HTTP") || !strings.Contains(upRow, "events,") {
			t.Fatalf("the healthy subscription's row: %q, want its URL, its last delivery and its lag", upRow)
		}
		if !strings.Contains(downRow, "HTTP 500") || !strings.Contains(downRow, "since") || !strings.Contains(downRow, "never") {
			t.Fatalf("the failing subscription's row: %q, want failing since, never delivered, HTTP 500", downRow)
		}
		failures := b.text("table.hook-failures tbody")
		if !strings.Contains(failures, "contact.purged") || !strings.Contains(failures, "HTTP 500") || strings.Contains(failures, upHook) {
			t.Fatalf("recent failures: %q, want the purge notice's failed attempts and nothing of the healthy one", failures)
		}
	})

	step("writes without the CSRF token are refused", func(t *testing.T) {
		for name, form := range map[string]url.Values{
			"no token":    {},
			"wrong token": {"csrf": {ledger.SessionCSRF("lcs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")}},
		} {
			status, _ := consolePost(t, b, "/console/contacts/"+newID+"/trash", form, "")
			if status != http.StatusForbidden {
				t.Fatalf("%s: got %d, want 403", name, status)
			}
		}
		good := url.Values{"csrf": {csrfOf(t, b)}}
		if status, _ := consolePost(t, b, "/console/contacts/"+newID+"/trash", good, "https://evil.example"); status != http.StatusForbidden {
			t.Fatalf("a post from another site: got %d, want 403", status)
		}
		if r := l.as("GET", "/v1/contacts/"+newID, nil); r.str("state") != "active" {
			t.Fatalf("a refused write changed the contact: %s", r.Raw)
		}
		// The same request with the token goes through: the refusals were the token's.
		if status, _ := consolePost(t, b, "/console/contacts/"+newID+"/trash", good, ""); status != http.StatusSeeOther {
			t.Fatalf("with the token: got %d, want 303", status)
		}
		if r := l.as("GET", "/v1/contacts/"+newID, nil); r.str("state") != "trashed" {
			t.Fatalf("the write with the token: %s", r.Raw)
		}
	})

	step("an operator sees no personal data", func(t *testing.T) {
		r := l.as("POST", "/v1/tokens", map[string]any{"role": "operator", "label": "on-call"})
		want(t, r, 201, "")
		op := newTab(t, l.url())
		op.signIn(r.str("token"))
		// The subscriptions' URLs and descriptions are the admins' (a URL can carry a receiver's credentials).
		personal := []string{"Ada Lovelace", "ada@analytical.example", "Deleted Lately", "new@example.com", "Batch 0", "Mass 001", "xss@example.com", "Analyst",
			up.URL(), down.URL(), "Ada's CRM", "Grace's archive"}
		for _, path := range []string{"/console/", "/console/engineers", "/console/contacts", "/console/contacts?view=trash",
			"/console/contacts/" + adaID, "/console/contacts/" + newID + "/edit", "/console/audit", "/console/contacts/" + oldID + "/receipt"} {
			op.open(path)
			text, html := op.body()
			for _, s := range personal {
				if strings.Contains(text, s) || strings.Contains(html, s) {
					t.Fatalf("the operator sees %q on %s", s, path)
				}
			}
		}
		op.open("/console/contacts")
		if !strings.Contains(op.text("main"), "operator role may not") {
			t.Fatalf("operator on contacts: %q", op.text("main"))
		}
		op.open("/console/")
		if op.text("h1") != "Engineers" || op.text("nav") != "Engineers" {
			t.Fatalf("the operator's console: %q, nav %q", op.text("h1"), op.text("nav"))
		}
		// The on-call engineer sees how webhooks deliver, by subscription id.
		if !strings.EqualFold(op.text("#hook-"+downHook+" .badge"), "failing") || !strings.Contains(op.text("table.hook-failures"), "HTTP 500") {
			t.Fatalf("the operator's webhook status: %q", op.text("main"))
		}
	})

	step("sign-out and revocation end the session", func(t *testing.T) {
		cookie := sessionCookie(t, b)
		b.open("/console/contacts")
		b.submit(`form[action="/console/sign-out"] button`)
		if b.text(".notice") != "You are signed out." {
			t.Fatalf("after sign-out: %q", b.text("main"))
		}
		b.open("/console/contacts")
		if !strings.HasPrefix(b.text("h1"), "Sign in") {
			t.Fatal("the console still opens after sign-out")
		}
		if status := consoleStatus(t, l.url(), cookie, "/console/contacts"); status != http.StatusSeeOther {
			t.Fatalf("the signed-out cookie replayed: got %d, want a redirect to sign in", status)
		}
		// A revoked token's session ends with it.
		r := l.as("POST", "/v1/tokens", map[string]any{"role": "member", "label": "to revoke"})
		b.signIn(r.str("token"))
		cookie = sessionCookie(t, b)
		if status := consoleStatus(t, l.url(), cookie, "/console/contacts"); status != http.StatusOK {
			t.Fatalf("a live session: got %d", status)
		}
		want(t, l.as("DELETE", "/v1/tokens/"+r.str("id"), nil), 200, "")
		if status := consoleStatus(t, l.url(), cookie, "/console/contacts"); status != http.StatusSeeOther {
			t.Fatalf("the session of a revoked token: got %d, want a redirect to sign in", status)
		}
	})
}

// sessionCookie returns the tab's console session cookie.
func sessionCookie(t *testing.T, b *tab) string {
	t.Helper()
	for _, c := range b.cookies() {
		if c.Name == "ledger_console" {
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// csrfOf returns the CSRF token of the tab's current page.
func csrfOf(t *testing.T, b *tab) string {
	t.Helper()
	return evalInto[string](b, `document.querySelector("input[name=csrf]").value`)
}

// consoleGet fetches a console path with the tab's session cookie.
func consoleGet(t *testing.T, b *tab, path string) []byte {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", b.base+path, nil)
	req.AddCookie(&http.Cookie{Name: "ledger_console", Value: sessionCookie(t, b)})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return body
}

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}

// consolePost posts a form with the tab's session cookie, as another page
// (origin, when set) would, and returns the status.
func consolePost(t *testing.T, b *tab, path string, form url.Values, origin string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	req.AddCookie(&http.Cookie{Name: "ledger_console", Value: sessionCookie(t, b)})
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// consoleStatus gets a console path with a session cookie and returns the status.
func consoleStatus(t *testing.T, base, cookie, path string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", base+path, nil)
	req.AddCookie(&http.Cookie{Name: "ledger_console", Value: cookie})
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
