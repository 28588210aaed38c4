package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The browser of the console's tests: one headless Chromium for the whole
// package run, started by the first test that needs it and stopped by
// TestMain. Each test gets a browser context of its own (its own cookies).
var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	dir    string
	err    string
}

// chromiumPath finds the browser: $LEDGER_TEST_CHROMIUM, or Debian's chromium.
func chromiumPath() string {
	if p := os.Getenv("LEDGER_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func startBrowser() {
	path := chromiumPath()
	if path == "" {
		browser.err = "no Chromium found (install Debian's chromium package; `make test` does as root, or set LEDGER_TEST_CHROMIUM)"
		return
	}
	dir, err := os.MkdirTemp("", "ledger-chromium-")
	if err != nil {
		browser.err = err.Error()
		return
	}
	browser.dir = dir
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.UserDataDir(dir), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 800))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		cancelAlloc()
		browser.err = "starting Chromium: " + err.Error()
		return
	}
	browser.ctx, browser.cancel = ctx, func() { cancel(); cancelAlloc() }
}

// closeBrowser stops the shared browser, if a test started it.
func closeBrowser() {
	if browser.cancel != nil {
		browser.cancel()
	}
	if browser.dir != "" {
		os.RemoveAll(browser.dir)
	}
}

// tab is a page in a fresh browser context, with the JavaScript dialogs
// (alert, confirm) it opened counted: the console never opens one, so one
// means a script someone injected ran.
type tab struct {
	t       *testing.T
	ctx     context.Context
	base    string
	mu      sync.Mutex
	dialogs []string
}

// newTab opens a page on base in a browser context of its own. Without a
// browser the test skips, or fails under CI=true.
func newTab(t *testing.T, base string) *tab {
	t.Helper()
	browser.once.Do(startBrowser)
	if browser.err != "" {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("a browser is required under CI: %s", browser.err)
		}
		t.Skip(browser.err)
	}
	ctx, cancel := chromedp.NewContext(browser.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	b := &tab{t: t, ctx: ctx, base: base}
	// The first run opens the tab; it must not have a deadline (that would close the tab).
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.dialogs = append(b.dialogs, ev.Message)
			b.mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	return b
}

// fatal fails the test with what the page shows.
func (b *tab) fatal(err error) {
	b.t.Helper()
	lctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(lctx, chromedp.Location())
	body, _ := chromedp.Run(lctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 1500) : ""`))
	b.t.Fatalf("browser: %v\nat %s\n%s", err, loc, body)
}

// run runs browser actions, failing the test after 15 s.
func (b *tab) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fatal(err)
	}
}

// get runs one action that returns a value.
func get[T any](b *tab, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	// chromedp finds a node in its copy of the DOM, then reads it: when the
	// page is replaced in between (a load finishing on a busy machine), the
	// read fails with a stale node id. Reading again reads the page now.
	for try := 0; err != nil && strings.Contains(err.Error(), "No node with given id found") && try < 3; try++ {
		time.Sleep(100 * time.Millisecond)
		v, err = chromedp.Run(ctx, a)
	}
	if err != nil {
		b.fatal(err)
	}
	return v
}

// open loads a console path and waits for its main element.
func (b *tab) open(path string) {
	b.t.Helper()
	b.run(chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("main")))
}

// click clicks a visible element.
func (b *tab) click(sel string) {
	b.t.Helper()
	b.run(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// submit clicks a button or link that loads another page, and waits for it.
func (b *tab) submit(sel string) {
	b.t.Helper()
	before := b.eval(`document.querySelector("footer small").textContent`)
	b.click(sel)
	b.waitJS(`document.readyState === "complete" && document.querySelector("footer small") !== null && document.querySelector("footer small").textContent !== ` + strconv.Quote(fmt.Sprint(before)))
}

// text returns a visible element's text.
func (b *tab) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(get(b, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible)))
}

// body returns the page's visible text and its HTML.
func (b *tab) body() (text, html string) {
	b.t.Helper()
	return get(b, chromedp.Evaluate[string](`document.body.innerText`)), get(b, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
}

// eval evaluates a script expression.
func (b *tab) eval(js string) any {
	b.t.Helper()
	return get(b, chromedp.Evaluate[any](js))
}

// evalInto evaluates a script expression into a value of type T.
func evalInto[T any](b *tab, js string) T {
	b.t.Helper()
	return get(b, chromedp.Evaluate[T](js))
}

// waitJS polls a script expression until it is true. A page that
// navigates meanwhile only makes it try again on the next page.
func (b *tab) waitJS(js string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		var ok bool
		ok, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { try { return !!(`+js+`); } catch (e) { return false; } })()`))
		cancel()
		if err == nil && ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.fatal(fmt.Errorf("waiting for %s: %v", js, err))
}

// waitVisible waits for an element to show.
func (b *tab) waitVisible(sel string) {
	b.t.Helper()
	b.run(chromedp.WaitVisible(chromedp.CSS(sel)))
}

// fill sets an input's value.
func (b *tab) fill(sel, value string) {
	b.t.Helper()
	b.run(chromedp.SetValue(chromedp.CSS(sel), value))
}

// keys types into an element.
func (b *tab) keys(sel, text string) {
	b.t.Helper()
	b.run(chromedp.SendKeys(chromedp.CSS(sel), text))
}

// enter types text into an element and presses Enter, which submits its
// form: the page it leaves may end the typing with "target navigated".
// Enter goes to the element the typing left focused, not to the element
// looked up again: on a loaded machine the page can be gone by then, and
// the lookup fail with "No node with given id found" though the form was
// submitted.
func (b *tab) enter(sel, text string) {
	b.t.Helper()
	b.keys(sel, text)
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	err := chromedp.Do(ctx, chromedp.KeyEvent("\r"))
	if err != nil && !strings.Contains(err.Error(), "navigated or closed") && !strings.Contains(err.Error(), "Cannot find context") {
		b.fatal(err)
	}
}

// location returns the page's address.
func (b *tab) location() string {
	b.t.Helper()
	return get(b, chromedp.Location())
}

// signIn signs in with a token by typing it and pressing Enter, as a person would.
func (b *tab) signIn(token string) {
	b.t.Helper()
	b.open("/console/")
	b.waitVisible("#token")
	b.enter("#token", token)
	b.waitJS(`location.pathname !== "/console/sign-in" && document.readyState === "complete"`)
}

// cookies returns the browser's cookies for the console.
func (b *tab) cookies() []*network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/console/"}})
	if err != nil {
		b.fatal(err)
	}
	return res.Cookies
}

// seenDialogs returns the JavaScript dialogs the page opened.
func (b *tab) seenDialogs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.dialogs...)
}
