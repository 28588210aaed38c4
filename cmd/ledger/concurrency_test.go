package main_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/ledger"
)

// race is one command of TestConcurrentCommands, with when it was sent and answered.
type race struct {
	outcome
	ifMatch      uint64 // 0: sent without If-Match
	sent, answer time.Time
	detail       string
}

// TestConcurrentCommands has 64 clients update, trash and restore the same
// six contacts at once, half of the time with If-Match, while a restore
// job restores three of them (with 300 others) and an import syncs the
// other three by email (and creates 200 new contacts), each in batches
// that race the clients. Afterwards: every accepted change is in the log
// once, at the version its answer gave (with If-Match, right after the
// version it named), and is a change its contact's state allowed; every
// refusal is a concurrency answer (409 or 412 concurrent-modification)
// when the contact really had moved on, or a lifecycle conflict that was
// right for a state the contact was in while the request ran; no version
// is used twice; the job restored each contact at most once, from trash,
// and its counts match the log; the import made an event for each row it
// says it created or updated, and no other; and the views and the API
// show the fold of the log.
func TestConcurrentCommands(t *testing.T) { eachStore(t, testConcurrentCommands) }

func testConcurrentCommands(t *testing.T, store string) {
	const clients = 64
	perClient := sized(5, 40)
	began := time.Now()
	l := start(t, store)
	var ids []string
	for i := range 6 {
		ids = append(ids, l.create(map[string]any{"name": fmt.Sprintf("Contended %d", i), "email": fmt.Sprintf("contended%d@example.com", i), "tags": []string{"contended"}}))
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer hc.CloseIdleConnections()
	// A restore job and an import race the clients on the same contacts:
	// the job plans half of them in trash (with others, so that it lasts),
	// the import syncs the other half by email and creates new contacts.
	others := trashMany(t, l, 300, "contended")
	trashIDs(t, l, ids[:3])
	var file strings.Builder
	file.WriteString("email,job_title\n")
	for k := range 40 {
		fmt.Fprintf(&file, "contended%d@example.com,Imported %d\n", 3+k%3, k)
	}
	for k := range 200 {
		fmt.Fprintf(&file, "racenew%d@example.com,New %d\n", k, k)
	}

	var (
		mu    sync.Mutex
		races []race
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(c)))
			<-start
			for k := range perClient {
				id := ids[rng.IntN(len(ids))]
				r := race{outcome: outcome{reqID: fmt.Sprintf("Race-%d-%d", c, k), id: id}}
				var headers []string
				if rng.IntN(2) == 0 {
					// A version the client may have seen: the current one or a recent one.
					g, err := try(hc, l.url(), l.admin, "GET", "/v1/contacts/"+id, nil)
					if err != nil || g.Status != 200 {
						t.Errorf("GET %s: %v %d", id, err, g.Status)
						return
					}
					r.ifMatch = max(1, uint64(g.num("version"))-uint64(rng.IntN(2)))
					headers = []string{"If-Match", fmt.Sprintf(`"%d"`, r.ifMatch)}
				}
				headers = append(headers, "X-Request-Id", r.reqID)
				var method, path string
				var body any
				switch r.op = []string{"update", "trash", "restore"}[rng.IntN(3)]; r.op {
				case "update":
					method, path, body = "PATCH", "/v1/contacts/"+id, map[string]any{"job_title": "Title " + r.reqID}
				case "trash":
					method, path = "DELETE", "/v1/contacts/"+id
				case "restore":
					method, path = "POST", "/v1/contacts/"+id+"/restore"
				}
				r.sent = time.Now()
				a, err := try(hc, l.url(), l.admin, method, path, body, headers...)
				r.answer = time.Now()
				if err != nil {
					t.Errorf("%s %s: no answer from an in-process server: %v", method, path, err)
					return
				}
				r.status, r.code, r.detail = a.Status, a.str("code"), a.str("detail")
				if r.acked() {
					r.version, r.position = uint64(a.num("version")), a.str("position")
				}
				mu.Lock()
				races = append(races, r)
				mu.Unlock()
			}
		})
	}
	jr := l.as("POST", "/v1/restore-jobs", map[string]any{"tag": "contended"})
	want(t, jr, 202, "")
	job := jr.str("id")
	var imported []importResult
	var importTotals map[string]int
	wg.Go(func() {
		<-start
		r := l.as("POST", "/v1/contacts/import?source=race", file.String(), "Content-Type", "text/csv", "X-Request-Id", "RaceImport")
		var out struct {
			Results []importResult
			Totals  map[string]int
			Error   any
		}
		if err := json.Unmarshal(r.Raw, &out); err != nil || r.Status != 200 || out.Error != nil {
			t.Errorf("the import beside the race: %d %s", r.Status, r.Raw)
		}
		imported, importTotals = out.Results, out.Totals
	})
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	jr = waitJob(t, l, job, 60*time.Second, func(r reply) bool { return r.str("state") == "succeeded" })

	lc, folds := checkConsistent(t, l.Main, "default")
	// The state each contact was in after each of its versions, and when
	// each version was known to be committed (the answer that acknowledged it).
	states := map[string][]contact.State{}
	for _, id := range ids {
		cid, _ := contact.ParseID(id)
		states[id] = []contact.State{""}
		for _, rec := range lc.streams[cid.Stream()] {
			ev, err := contact.Decode(rec.Type, rec.Schema, rec.Data, nil, contact.HasPersonal(rec.Type))
			if err != nil {
				t.Fatal(err)
			}
			st := states[id][len(states[id])-1]
			if to, ok := contact.EntersState(ev); ok {
				st = to
			}
			states[id] = append(states[id], st)
		}
		// The API shows the fold too.
		r := l.as("GET", "/v1/contacts/"+id, nil)
		if f := folds[cid].Snapshot; r.str("state") != string(f.State) || uint64(r.num("version")) != f.Version || r.Header.Get("ETag") != fmt.Sprintf(`"%d"`, f.Version) {
			t.Fatalf("GET %s: %s v%v, the fold of its log %s v%d", id, r.str("state"), r.num("version"), f.State, f.Version)
		}
	}
	committed := map[string]time.Time{} // "id/version" -> when an answer acknowledged it
	for _, r := range races {
		if r.acked() {
			key := fmt.Sprintf("%s/%d", r.id, r.version)
			if _, twice := committed[key]; twice {
				t.Fatalf("version %d of %s was acknowledged twice", r.version, r.id)
			}
			committed[key] = r.answer
		}
	}
	// seen returns the versions of a contact that a request could have
	// loaded: committed before it was answered (an event's time is taken
	// before it is appended), and not yet followed by a version whose
	// acknowledgement came before the request was sent.
	seen := func(r race, evs int) []uint64 {
		cid, _ := contact.ParseID(r.id)
		recs := lc.streams[cid.Stream()]
		var out []uint64
		for v := 1; v <= evs; v++ {
			if recs[v-1].Time.After(r.answer) {
				break
			}
			if at, ok := committed[fmt.Sprintf("%s/%d", r.id, v+1)]; ok && at.Before(r.sent) {
				continue
			}
			out = append(out, uint64(v))
		}
		return out
	}
	forbidden := map[string]func(contact.State) bool{
		"update":  func(s contact.State) bool { return s != contact.StateActive },
		"trash":   func(s contact.State) bool { return s == contact.StateTrashed },
		"restore": func(s contact.State) bool { return s != contact.StateTrashed },
	}
	event := map[string]string{"update": contact.TypeUpdated, "trash": contact.TypeTrashed, "restore": contact.TypeRestored}
	namedState := regexp.MustCompile(`^contact is (active|archived|trashed);`)
	var n struct{ acked, stale, lost, conflict int }
	for _, r := range races {
		evs := lc.byCorrelation[r.reqID]
		cid, _ := contact.ParseID(r.id)
		versions := len(lc.streams[cid.Stream()])
		switch {
		case r.acked():
			n.acked++
			if len(evs) != 1 || evs[0].Stream != cid.Stream() || evs[0].Version != r.version || evs[0].Position.String() != r.position || evs[0].Type != event[r.op] {
				t.Fatalf("accepted %s %s (%s) answered v%d at %s; the log has %d events for it", r.op, r.id, r.reqID, r.version, r.position, len(evs))
			}
			if r.ifMatch != 0 && r.version != r.ifMatch+1 {
				t.Fatalf("%s with If-Match %d was accepted as version %d", r.op, r.ifMatch, r.version)
			}
			if before := states[r.id][r.version-1]; forbidden[r.op](before) {
				t.Fatalf("%s was accepted on a contact that was %s", r.op, before)
			}
		case len(evs) != 0:
			t.Fatalf("refused %s %s (%d %s) has %d events in the log", r.op, r.reqID, r.status, r.code, len(evs))
		case r.code == "concurrent-modification" && r.ifMatch != 0:
			n.stale++
			if r.status != 412 {
				t.Fatalf("a stale If-Match got %d, want 412", r.status)
			}
			moved := false
			for _, v := range seen(r, versions) {
				moved = moved || v != r.ifMatch
			}
			if !moved {
				t.Fatalf("%s with If-Match %d got 412, but the contact was at that version all along (%v)", r.op, r.ifMatch, seen(r, versions))
			}
		case r.code == "concurrent-modification":
			n.lost++ // lost the race on every retry
			if r.status != 409 {
				t.Fatalf("a lost race without If-Match got %d, want 409", r.status)
			}
		case r.status == 409 && (r.code == "invalid-transition" || r.code == "not-editable"):
			n.conflict++
			st := contact.StateTrashed // "contact is already in trash"
			if m := namedState.FindStringSubmatch(r.detail); m != nil {
				st = contact.State(m[1])
			}
			if !forbidden[r.op](st) {
				t.Fatalf("%s refused (%s: %q), but the lifecycle allows it from %s", r.op, r.code, r.detail, st)
			}
			if r.ifMatch != 0 && st != states[r.id][r.ifMatch] {
				t.Fatalf("%s with If-Match %d refused for a contact %s, but version %d is %s", r.op, r.ifMatch, st, r.ifMatch, states[r.id][r.ifMatch])
			}
			was := false
			for _, v := range seen(r, versions) {
				was = was || states[r.id][v] == st
			}
			if !was {
				t.Fatalf("%s (%s) refused for a contact %s, but it was not while the request ran (versions %v)", r.op, r.reqID, st, seen(r, versions))
			}
		default:
			t.Fatalf("%s %s: got %d %s: %s", r.op, r.reqID, r.status, r.code, r.detail)
		}
	}
	if n.acked == 0 || n.stale == 0 || n.conflict == 0 {
		t.Fatalf("%d accepted, %d stale If-Match, %d lifecycle conflicts: the race did not happen", n.acked, n.stale, n.conflict)
	}
	// The job restored each contact it planned at most once, each time
	// from trash, and noted every other as failed.
	if jr.num("restored")+jr.num("failed") != jr.num("total") || jr.num("total") != float64(len(others)+3) {
		t.Fatalf("the restore job: %s", jr.Raw)
	}
	byJob := 0
	for _, id := range append(slices.Clone(others), ids[:3]...) {
		cid, _ := contact.ParseID(id)
		n := 0
		for _, rec := range lc.streams[cid.Stream()] {
			if rec.Type != contact.TypeRestored || rec.CausationID != ledger.OperationJob+job {
				continue
			}
			if n++; n > 1 {
				t.Fatalf("%s was restored twice by the job", id)
			}
			if st := states[id]; st != nil && st[rec.Version-1] != contact.StateTrashed {
				t.Fatalf("the job restored %s from %s", id, st[rec.Version-1])
			}
		}
		byJob += n
	}
	if byJob != int(jr.num("restored")) {
		t.Fatalf("the job says it restored %v contacts; the log has %d of its restores", jr.num("restored"), byJob)
	}
	// The import made one event per row it says it changed, and no other.
	changes := map[string]int{}
	for _, rec := range lc.byCorrelation["RaceImport"] {
		changes[rec.Stream]++
	}
	changed := 0
	for _, r := range imported {
		switch r.Result {
		case "created", "updated":
			changed++
			cid, _ := contact.ParseID(r.ID)
			if changes[cid.Stream()] == 0 {
				t.Fatalf("import row %d says %s, but the log has no event of it on %s", r.Row, r.Result, r.ID)
			}
		case "skipped":
			if !strings.HasPrefix(r.Reason, "in trash") && !strings.HasPrefix(r.Reason, "changed by someone else") {
				t.Fatalf("import row %d skipped: %s", r.Row, r.Reason)
			}
		}
	}
	if got := len(lc.byCorrelation["RaceImport"]); got != changed || importTotals["created"] != 200 {
		t.Fatalf("the import created or updated %d rows (totals %v); the log has %d of its events", changed, importTotals, got)
	}
	t.Logf("%s: %d clients, %d commands on %d contacts: %d accepted, %d stale If-Match (412), %d lost races (409), %d lifecycle conflicts (409); "+
		"beside them a restore job (%v restored, %v failed) and an import (%v); %s",
		store, clients, len(races), len(ids), n.acked, n.stale, n.lost, n.conflict, jr.num("restored"), jr.num("failed"), importTotals,
		time.Since(began).Round(100*time.Millisecond))
}
