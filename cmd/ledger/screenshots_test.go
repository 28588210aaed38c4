package main_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/delivery"
	"github.com/contactledger/ledger/domain/feed"
	"github.com/contactledger/ledger/internal/hooktest"
)

// TestConsoleLayout opens the console's main pages at a 390-pixel phone
// width and at 1280×800 and checks nothing is wider than the screen, so no
// page needs sideways scrolling. With LEDGER_SCREENSHOTS=DIR (make
// screenshots) it also saves each page as a PNG in DIR.
func TestConsoleLayout(t *testing.T) {
	l := start(t, "sqlite", func(m *main.Main) {
		m.Config.WebhookAllow = []string{"127.0.0.1/32"}
		m.Webhook = delivery.Options{Schedule: []time.Duration{50 * time.Millisecond}, Scan: 50 * time.Millisecond, Poll: 50 * time.Millisecond}
	})
	// A webhook subscriber that acknowledges everything and one that is
	// down, for the engineers page and the receipt's propagation.
	up, down := hooktest.NewReceiver(t), hooktest.NewReceiver(t)
	down.SetFail(func(feed.Event) int { return http.StatusServiceUnavailable })
	for _, h := range []struct {
		rc   *hooktest.Receiver
		body map[string]any
	}{{up, map[string]any{"description": "CRM sync"}}, {down, map[string]any{"description": "Data warehouse", "types": []string{"contact.purged"}}}} {
		h.body["url"] = h.rc.URL()
		r := l.as("POST", "/v1/webhooks", h.body)
		want(t, r, 201, "")
		h.rc.Trust(r.str("secret"))
	}
	b := newTab(t, l.url())
	ids := make([]string, 0, 8)
	for i, p := range []struct{ name, email, phone string }{
		{"Ada Lovelace", "ada@analytical.example", "+44 20 7946 0018"}, {"Grace Hopper", "grace@navy.example", "+1 202 555 0143"},
		{"Alan Turing", "alan@bletchley.example", "+44 1908 640404"}, {"Katherine Johnson", "katherine@nasa.example", "+1 757 555 0199"},
		{"Edsger Dijkstra", "edsger@eindhoven.example", "+31 40 247 9111"}, {"Barbara Liskov", "barbara@mit.example", "+1 617 555 0100"},
	} {
		r := l.as("POST", "/v1/contacts", map[string]any{"name": p.name, "email": p.email, "phone": p.phone,
			"job_title": "Engineer", "tags": []string{"pioneer", []string{"vip", "math", "navy"}[i%3]}})
		want(t, r, 201, "")
		ids = append(ids, r.str("id"))
	}
	want(t, l.as("POST", "/v1/contacts/"+ids[0]+"/notes", map[string]any{"text": "Met at the Analytical Society; wants the engine notes."}), 201, "")
	want(t, l.as("PUT", "/v1/contacts/"+ids[0]+"/lists/newsletter", map[string]any{"status": "subscribed"}), 200, "")
	want(t, l.as("POST", "/v1/contacts/bulk", map[string]any{"action": "trash", "ids": ids[3:], "expected_count": 3, "reason": "left the company"}), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+ids[5]+"/purge", map[string]any{"reason": "erasure request", "request": "DSR-2026-0042"}), 200, "")
	// The receipt shows the notice acknowledged once the subscriber answered.
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(string(l.as("GET", "/v1/contacts/"+ids[5]+"/erasure-receipt", nil).Raw), `"acknowledged"`); {
		if time.Now().After(deadline) {
			t.Fatal("the erasure notice was never acknowledged")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A deleted contact under legal hold: no delete forever until released.
	want(t, l.as("POST", "/v1/contacts/"+ids[4]+"/hold", map[string]any{"case": "CASE-2026-17", "reason": "litigation hold"}), 200, "")
	b.signIn(l.admin)

	dir := os.Getenv("LEDGER_SCREENSHOTS")
	pages := []struct{ name, path, before string }{
		{"contacts", "/console/contacts", `document.querySelectorAll("input.row-select")[0].click(); document.querySelectorAll("input.row-select")[1].click()`},
		{"trash", "/console/contacts?view=trash", ""},
		{"contact", "/console/contacts/" + ids[0], ""},
		{"delete-forever", "/console/contacts/" + ids[3] + "?confirm=purge", ""},
		{"receipt", "/console/contacts/" + ids[5] + "/receipt", ""},
		{"receipt-propagation", "/console/contacts/" + ids[5] + "/receipt", `document.querySelector("#propagation").scrollIntoView()`},
		{"held", "/console/contacts/" + ids[4], ""},
		{"audit", "/console/audit", ""},
		{"engineers", "/console/engineers", ""},
		{"sign-in", "/console/sign-in", ""},
	}
	for _, vp := range []struct {
		name   string
		width  int64
		height int64
		mobile bool
	}{{"desktop", 1280, 800, false}, {"phone", 390, 844, true}} {
		t.Run(vp.name, func(t *testing.T) {
			b.t = t
			if vp.mobile {
				b.run(chromedp.EmulateViewport(vp.width, vp.height, chromedp.EmulateMobile, chromedp.EmulateScale(1)))
			} else {
				b.run(chromedp.EmulateViewport(vp.width, vp.height))
			}
			for _, p := range pages {
				b.open(p.path)
				if p.before != "" {
					b.eval(p.before + "; true")
				}
				if wide := evalInto[int](b, `document.documentElement.scrollWidth`); wide > int(vp.width) {
					t.Errorf("%s is %d pixels wide at a %d-pixel viewport", p.name, wide, vp.width)
				}
				if dir == "" || (vp.mobile && !strings.Contains("contacts contact trash", p.name)) {
					continue
				}
				time.Sleep(100 * time.Millisecond) // let the dialog's backdrop paint
				png := get(b, chromedp.CaptureScreenshot())
				name := filepath.Join(dir, fmt.Sprintf("%s-%s.png", p.name, vp.name))
				if err := os.WriteFile(name, png, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
