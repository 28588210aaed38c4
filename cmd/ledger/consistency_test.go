package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
)

// soak reports whether the long runs of the reliability tests were asked
// for (LEDGER_SOAK=1, as `make soak` does); `make test` runs short ones.
func soak() bool { return os.Getenv("LEDGER_SOAK") == "1" }

// sized returns short under `make test` and long under `make soak`.
func sized[T any](short, long T) T {
	if soak() {
		return long
	}
	return short
}

// tb is what the consistency checks need of a test; *testing.T and
// *rapid.T both have it.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// logContents is the whole log as read back from a store.
type logContents struct {
	head    kernel.Position
	streams map[string][]kernel.Record // every stream, in version order
	// byCorrelation holds the events of each correlation id (a request's X-Request-Id).
	byCorrelation map[string][]kernel.Record
	events        int
}

// readLog reads the whole log in global order and checks what every log
// must hold: each stream's versions run from 1 without a gap or a repeat,
// each event links to its predecessor by hash, positions only grow, and no
// event id appears twice.
func readLog(t tb, es kernel.EventStore) logContents {
	t.Helper()
	ctx := context.Background()
	lc := logContents{streams: map[string][]kernel.Record{}, byCorrelation: map[string][]kernel.Record{}}
	ids := map[[16]byte]bool{}
	var from kernel.Position
	for {
		recs, err := es.ReadAll(ctx, from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if !from.Less(r.Position) {
				t.Fatalf("the log goes back from %s to %s (%s v%d)", from, r.Position, r.Stream, r.Version)
			}
			from = r.Position
			if ids[r.ID] {
				t.Fatalf("event id %s appears twice in the log", r.ID)
			}
			ids[r.ID] = true
			prev := lc.streams[r.Stream]
			if want := uint64(len(prev)) + 1; r.Version != want {
				t.Fatalf("%s: version %d follows version %d", r.Stream, r.Version, want-1)
			}
			var prevHash []byte
			if len(prev) > 0 {
				prevHash = prev[len(prev)-1].Hash
			}
			if !bytes.Equal(r.PrevHash, prevHash) || !bytes.Equal(r.Hash, kernel.ChainHash(prevHash, r)) {
				t.Fatalf("%s v%d: the hash chain is broken", r.Stream, r.Version)
			}
			lc.streams[r.Stream] = append(prev, r)
			lc.byCorrelation[r.CorrelationID] = append(lc.byCorrelation[r.CorrelationID], r)
			lc.events++
		}
	}
	head, err := es.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head != from {
		t.Fatalf("the head is %s, but reading the log ends at %s", head, from)
	}
	lc.head = head
	return lc
}

// contactIDs returns the contacts that have a stream in the log.
func (lc logContents) contactIDs() []contact.ID {
	var out []contact.ID
	for stream := range lc.streams {
		if id, ok := contact.IDFromStream(stream); ok {
			out = append(out, id)
		}
	}
	return out
}

// folded is a contact as a from-scratch fold of its stream gives it.
type folded struct {
	Snapshot contact.Snapshot
	Last     kernel.Record
}

// checkConsistent checks that the read models of m's stores equal a
// from-scratch fold of the log, once every projection has caught up with
// it (no writes may run meanwhile). For every contact stream of workspace
// ws, the stream is folded through the service (which opens every sealed
// part with the contact's key), and then:
//   - a contact that is not erased has its key, and reads unshredded; an
//     erased one has none;
//   - each view (and the identity index) holds a row for it exactly when
//     the view shows its state, and that row is the one a projection builds
//     from the fold: same snapshot, version, position, order and blind
//     indexes;
//   - no view holds a row of a contact the log does not have.
//
// It returns the log and the fold of every contact.
func checkConsistent(t tb, m *main.Main, ws string) (logContents, map[contact.ID]folded) {
	t.Helper()
	ctx := context.Background()
	head, err := m.Events().Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store := m.State().(projections.Store)
	for _, name := range projections.Names() {
		deadline := time.Now().Add(30 * time.Second)
		for {
			cp, err := store.Checkpoint(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if cp == head {
				break
			}
			if head.Less(cp) || time.Now().After(deadline) {
				t.Fatalf("projection %s is at %s, the head of the log at %s", name, cp, head)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	lc := readLog(t, m.Events())
	if lc.head != head {
		t.Fatalf("the log moved from %s to %s during the check: something still writes", head, lc.head)
	}

	ids := lc.contactIDs()
	folds := map[contact.ID]folded{}
	var refs []projections.Ref
	for _, id := range ids {
		recs := lc.streams[id.Stream()]
		if recs[0].Workspace != ws {
			continue
		}
		v, err := m.Svc.Get(ctx, ws, id)
		if err != nil {
			t.Fatalf("fold %s: %v", id, err)
		}
		if v.Version != uint64(len(recs)) {
			t.Fatalf("fold %s: version %d of %d events", id, v.Version, len(recs))
		}
		key, err := m.Vault().ContactKey(ctx, ws, id)
		if err != nil {
			t.Fatal(err)
		}
		erased := v.State == contact.StatePurged || v.State == contact.StateAnonymized
		if key.Destroyed != erased || v.Shredded != erased {
			t.Fatalf("%s is %s with its key destroyed %v and shredded %v: half-visible", id, v.State, key.Destroyed, v.Shredded)
		}
		folds[id] = folded{Snapshot: v.Snapshot, Last: recs[len(recs)-1]}
		refs = append(refs, projections.Ref{Workspace: ws, ID: id})
	}

	bidx, err := m.Vault().BlindIndex(ctx, ws)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range append(projections.Views(), projections.IdentityView()) {
		holds := func(s contact.State) bool {
			if v.Name == projections.Identities {
				return s == contact.StateActive || s == contact.StateArchived || s == contact.StateTrashed
			}
			return s == v.State
		}
		rows, err := store.Rows(ctx, v.Name, refs)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, ref := range refs {
			f := folds[ref.ID]
			row, in := rows[ref.ID]
			if in != holds(f.Snapshot.State) {
				t.Fatalf("view %s: contact %s (%s, v%d) in the view: %v", v.Name, ref.ID, f.Snapshot.State, f.Snapshot.Version, in)
			}
			if !in {
				continue
			}
			want++
			exp := projections.BuildRow(f.Snapshot, bidx, f.Last.Position)
			if v.Name != projections.Identities {
				exp.ExtIndex = "" // only the identity index keeps it
			} else {
				exp.TagIndexes = nil // only the views filter on tags
			}
			if got, w := jsonOf(t, row), jsonOf(t, exp); got != w {
				t.Fatalf("view %s: the row of %s differs from the fold of its stream\nrow  %s\nfold %s", v.Name, ref.ID, got, w)
			}
		}
		if v.Name == projections.Identities {
			continue
		}
		if n := countView(t, m, ws, v.Name); n != want {
			t.Fatalf("view %s holds %d rows, the log %d contacts in its state", v.Name, n, want)
		}
	}
	if orphans := orphanKeys(t, m, lc); orphans > 0 {
		t.Logf("%d data keys of contacts that never reached the log (creates cut short)", orphans)
	}
	return lc, folds
}

func jsonOf(t tb, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// countView counts the rows of a view, page by page.
func countView(t tb, m *main.Main, ws, view string) int {
	t.Helper()
	rm := m.State().(ledger.ReadModels)
	n := 0
	q := ledger.ListQuery{Workspace: ws, View: view, Limit: 500}
	for {
		items, err := rm.List(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		n += len(items)
		if len(items) < q.Limit {
			return n
		}
		last := items[len(items)-1]
		q.After = &ledger.Cursor{SortAt: last.SortAt, ID: last.Contact.ID.String()}
	}
}

// orphanKeys counts the data keys whose contact has no stream: a create
// that stored its key and died before its first event was appended leaves
// one. Such a key never sealed anything that was kept.
func orphanKeys(t tb, m *main.Main, lc logContents) int {
	t.Helper()
	rw, ok := m.State().(ledger.KeyRewrapper)
	if !ok {
		return 0
	}
	// Every key is wrapped under a KEK other than this name.
	keys, err := rw.KeysNotWrappedBy(context.Background(), "no-such-kek", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range keys {
		if strings.HasPrefix(k.Owner, "bidx:") {
			continue
		}
		if _, ok := lc.streams[contact.StreamPrefix+k.Owner]; !ok {
			n++
		}
	}
	return n
}

// openStores opens the stores of a data directory (and database) in this
// process, without serving and without running the projections, to look
// at what a server left behind.
func openStores(t *testing.T, dataDir, databaseURL string) *main.Main {
	t.Helper()
	m := main.NewMain()
	m.Config.DataDir, m.Config.DatabaseURL, m.Config.KEKURL, m.Config.EventStoreURL = dataDir, databaseURL, "", ""
	m.Config.LogLevel = "error"
	m.Stdout, m.Stderr = io.Discard, io.Discard
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}
