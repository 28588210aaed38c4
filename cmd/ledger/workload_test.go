package main_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// outcome is what a client got for one command it sent.
type outcome struct {
	reqID, op, id string
	// status is 0 when no answer came back: the connection failed, or the
	// server died before the whole answer was read. Such a command may or
	// may not have happened.
	status   int
	code     string
	version  uint64
	position string
}

func (o outcome) acked() bool { return o.status >= 200 && o.status < 300 }

// workload is a set of HTTP clients that send random commands to a ledger
// (creates, updates with and without If-Match, archive, trash, restore,
// tags, notes, and the odd purge or anonymize) and note every answer. Each
// command carries its own X-Request-Id, which the ledger records as the
// event's correlation id: that is how the answers are found in the log.
type workload struct {
	t      *testing.T
	prefix string // of request ids, names and emails
	token  string
	base   atomic.Pointer[string]
	http   *http.Client
	// erase is the share of commands on trashed contacts that purge or anonymize them.
	erase float64

	seq        atomic.Int64
	down       atomic.Int64 // commands not sent: the server was down
	mu         sync.Mutex
	outcomes   []outcome
	unexpected []string
}

func newWorkload(t *testing.T, prefix, token, base string) *workload {
	w := &workload{t: t, prefix: prefix, token: token, erase: 0.1,
		http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	w.base.Store(&base)
	t.Cleanup(w.http.CloseIdleConnections)
	return w
}

// tracked is a contact as one client believes it is.
type tracked struct {
	id, state string
	version   uint64
	lastTag   string
}

// run runs n clients until ctx ends and waits for them.
func (w *workload) run(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { w.client(ctx, i) })
	}
	wg.Wait()
}

func (w *workload) client(ctx context.Context, n int) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(n)))
	var mine []*tracked
	for ctx.Err() == nil {
		if len(mine) < 3 || rng.IntN(8) == 0 {
			if c := w.create(n); c != nil {
				mine = append(mine, c)
			}
			continue
		}
		c := mine[rng.IntN(len(mine))]
		w.step(rng, c)
		if c.state == "purged" || c.state == "anonymized" {
			mine = slices.DeleteFunc(mine, func(x *tracked) bool { return x == c })
		}
	}
}

func (w *workload) create(n int) *tracked {
	k := w.seq.Add(1)
	body := map[string]any{
		"name":  fmt.Sprintf("%s Person %d", w.prefix, k),
		"email": fmt.Sprintf("%s.%d@example.com", strings.ToLower(w.prefix), k),
		"phone": fmt.Sprintf("+1 555 %07d", k), "tags": []string{fmt.Sprintf("client-%d", n)},
	}
	o := w.send("create", "", "POST", "/v1/contacts", body)
	if !o.acked() {
		return nil
	}
	return &tracked{id: o.id, state: "active", version: o.version}
}

// step sends one command on c: usually one its state allows, sometimes any.
func (w *workload) step(rng *rand.Rand, c *tracked) {
	ops := map[string][]string{
		"active":   {"update", "update", "update", "tags", "note", "archive", "trash", "trash"},
		"archived": {"unarchive", "trash", "update"},
		"trashed":  {"restore", "restore", "update"},
	}[c.state]
	if c.state == "trashed" && rng.Float64() < w.erase {
		ops = []string{"purge", "anonymize"}
	}
	if len(ops) == 0 || rng.IntN(10) == 0 {
		ops = []string{"update", "tags", "archive", "unarchive", "trash", "restore"}
	}
	op := ops[rng.IntN(len(ops))]
	var headers []string
	if rng.IntN(2) == 0 {
		headers = []string{"If-Match", fmt.Sprintf(`"%d"`, c.version)}
	}
	var o outcome
	switch op {
	case "update":
		o = w.send(op, c.id, "PATCH", "/v1/contacts/"+c.id, map[string]any{"job_title": fmt.Sprintf("%s title %d", w.prefix, w.seq.Add(1))}, headers...)
	case "tags":
		tag := fmt.Sprintf("t%d", w.seq.Add(1))
		body := map[string]any{"add": []string{tag}}
		if c.lastTag != "" {
			body["remove"] = []string{c.lastTag}
		}
		if o = w.send(op, c.id, "POST", "/v1/contacts/"+c.id+"/tags", body, headers...); o.acked() {
			c.lastTag = tag
		}
	case "note":
		o = w.send(op, c.id, "POST", "/v1/contacts/"+c.id+"/notes", map[string]any{"text": fmt.Sprintf("%s note %d", w.prefix, w.seq.Add(1))}, headers...)
	default:
		o = w.send(op, c.id, "POST", "/v1/contacts/"+c.id+"/"+op, nil, headers...)
	}
	if o.acked() {
		c.version = o.version
		if st := map[string]string{"archive": "archived", "unarchive": "active", "trash": "trashed", "purge": "purged", "anonymize": "anonymized"}[op]; st != "" {
			c.state = st
		}
		if op == "restore" {
			c.state = "" // active or archived: ask
		}
	}
	if !o.acked() || c.state == "" {
		w.resync(c)
	}
}

// resync asks the ledger where a contact is, after an answer that said it
// is not where the client believed (or no answer at all).
func (w *workload) resync(c *tracked) {
	r, err := try(w.http, *w.base.Load(), w.token, "GET", "/v1/contacts/"+c.id, nil)
	switch {
	case err != nil:
		c.state = "active" // unknown: try something, the answer will tell
	case r.Status == 200:
		c.state, c.version = r.str("state"), uint64(r.num("version"))
	case r.Status == 410:
		c.state = "purged"
	}
}

// allowed are the refusals a command may meet under concurrent load: the
// lifecycle forbids it in the state the contact is in by then, someone else
// changed it first, or it was erased. Anything else is a failure.
var allowed = map[int][]string{
	409: {"invalid-transition", "not-editable", "concurrent-modification"},
	412: {"concurrent-modification"},
	410: {"purged"},
	503: {"projection-lagging"},
}

// send sends one command and notes its outcome.
func (w *workload) send(op, id, method, path string, body any, headers ...string) outcome {
	o := outcome{reqID: fmt.Sprintf("%s-%d", w.prefix, w.seq.Add(1)), op: op, id: id}
	r, err := try(w.http, *w.base.Load(), w.token, method, path, body, append(headers, "X-Request-Id", o.reqID)...)
	if err == nil {
		o.status, o.code = r.Status, r.str("code")
		if o.acked() {
			o.version, o.position = uint64(r.num("version")), r.str("position")
			if op == "create" {
				o.id = r.str("id")
			}
			if o.position == "" || o.version == 0 || o.id == "" {
				w.fail("%s %s answered %d without a version or position: %s", method, path, r.Status, r.Raw)
			}
		} else if !slices.Contains(allowed[r.Status], o.code) {
			w.fail("%s %s (%s) answered %d: %s", method, path, op, r.Status, r.Raw)
		}
	} else if errors.Is(err, syscall.ECONNREFUSED) {
		// The server is down: nothing was sent. Don't spin.
		time.Sleep(20 * time.Millisecond)
		w.down.Add(1)
		return o
	}
	w.mu.Lock()
	w.outcomes = append(w.outcomes, o)
	w.mu.Unlock()
	return o
}

func (w *workload) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.unexpected = append(w.unexpected, fmt.Sprintf(format, args...))
}

// tally counts the outcomes by kind.
type tally struct {
	sent, acked, refused, unanswered, unansweredDone int
}

// verify checks every outcome against the log: an acknowledged command's
// event is in the log exactly once, where its answer said (stream, version,
// position); a refused command left nothing; an unanswered one left at
// most one event; and the log holds no event of a request never sent.
func (w *workload) verify(lc logContents) tally {
	t := w.t
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, u := range w.unexpected {
		t.Error(u)
	}
	var n tally
	sent := map[string]bool{}
	for _, o := range w.outcomes {
		n.sent++
		sent[o.reqID] = true
		evs := lc.byCorrelation[o.reqID]
		switch {
		case o.acked():
			n.acked++
			if len(evs) != 1 {
				t.Fatalf("acknowledged %s %s (%s) has %d events in the log, want exactly one", o.op, o.id, o.reqID, len(evs))
			}
			e := evs[0]
			if e.Stream != "contact-"+o.id || e.Version != o.version || e.Position.String() != o.position {
				t.Fatalf("acknowledged %s (%s) answered %s v%d at %s; the log has it as %s v%d at %s",
					o.op, o.reqID, o.id, o.version, o.position, e.Stream, e.Version, e.Position)
			}
		case o.status == 0:
			n.unanswered++
			if len(evs) > 1 {
				t.Fatalf("unanswered %s %s (%s) has %d events in the log, want at most one", o.op, o.id, o.reqID, len(evs))
			}
			if len(evs) == 1 {
				n.unansweredDone++
				if o.id != "" && evs[0].Stream != "contact-"+o.id {
					t.Fatalf("unanswered %s on %s landed in %s", o.op, o.id, evs[0].Stream)
				}
			}
		default:
			n.refused++
			if len(evs) != 0 {
				t.Fatalf("refused %s %s (%s, %d %s) has %d events in the log, want none", o.op, o.id, o.reqID, o.status, o.code, len(evs))
			}
		}
	}
	for corr := range lc.byCorrelation {
		if strings.HasPrefix(corr, w.prefix+"-") && !sent[corr] {
			t.Fatalf("the log has events of request %s, which was never sent", corr)
		}
	}
	return n
}
