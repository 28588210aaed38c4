package ledger_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/contactledger/ledger/ledger"
	"github.com/oklog/ulid/v2"
)

// The golden events: one stored record of every event type at every schema
// version the ledger has ever written, in testdata/events at the
// repository's root (see its README). Old events are never rewritten, so a
// log holds them all forever; TestGoldenEvents reads each one with today's
// code.

var update = flag.Bool("update", false, "write the golden event of each type's current schema that testdata/events lacks (an existing golden is never rewritten)")

const goldenDir = "../testdata/events"

// goldenRecord is a stored event as a golden file keeps it: every field of
// kernel.Record the log stores, byte for byte.
type goldenRecord struct {
	ID            string    `json:"id"`
	Stream        string    `json:"stream"`
	Version       uint64    `json:"version"`
	Type          string    `json:"type"`
	Schema        int       `json:"schema"`
	Time          time.Time `json:"time"`
	Workspace     string    `json:"workspace"`
	Principal     string    `json:"principal"`
	Role          string    `json:"role"`
	CorrelationID string    `json:"correlation_id"`
	CausationID   string    `json:"causation_id"`
	Data          string    `json:"data"`             // the clear payload, exactly as stored
	Sealed        []byte    `json:"sealed,omitempty"` // the personal part, sealed under datakey.hex (base64)
	PrevHash      string    `json:"prev_hash"`        // hex
	Hash          string    `json:"hash"`             // hex: kernel.ChainHash(prev_hash, record)
}

// goldenCase is what one golden file must decode to, with its key and
// after the key is destroyed.
type goldenCase struct {
	typ     string
	schema  int
	variant string // "" or a few words: two goldens of one type and schema
	want    contact.Event
	// shredded is what the event reads as once its contact's key is
	// destroyed: schema 1 kept free text other than personal fields in clear.
	shredded contact.Event
}

func (c goldenCase) file() string {
	name := fmt.Sprintf("%s.v%d", c.typ, c.schema)
	if c.variant != "" {
		name += "." + c.variant
	}
	return name + ".json"
}

// The values the goldens hold. Free text names a person on purpose: it is
// what sealing is for.
var (
	goldenStream  = contact.StreamPrefix + "01KAZ0G0LDEN0000000000000A"
	goldenAt      = time.Date(2026, 11, 30, 12, 0, 0, 123456000, time.UTC)
	goldenActor   = kernel.Actor{Principal: "tok_golden", Role: kernel.RoleAdmin}
	goldenReason  = "Ada Lovelace asked by phone (+44 20 7946 0000)"
	goldenPerson  = contact.Personal{Name: "Ada Lovelace", Email: "ada@example.com", Phone: "+44 20 7946 0000", JobTitle: "Analyst", Address: "12 St James's Square, London", CustomFields: map[string]string{"tier": "gold"}, ExternalID: "crm-42"}
	goldenErasure = contact.Erasure{Reason: goldenReason, Trigger: contact.TriggerRequest, Request: "DSR-7", KeyID: "dk_golden", Erased: contact.PersonalFields}
	goldenExpiry  = contact.Erasure{Reason: goldenReason, Trigger: contact.TriggerRetention, RetentionDays: 365, KeyID: "dk_golden", Erased: contact.PersonalFields}
)

func goldenCases() []goldenCase {
	noReason := func(e contact.Erasure) contact.Erasure { e.Reason = ""; return e }
	link := contact.Link{Kind: "deal", Ref: "deal-ada-lovelace"}
	cases := []goldenCase{
		{typ: contact.TypeCreated, schema: 1, want: contact.Created{Source: "import", Tags: []string{"vip", "friends-of-ada"}, Personal: goldenPerson},
			shredded: contact.Created{Source: "import", Tags: []string{"vip", "friends-of-ada"}, Shredded: true}},
		{typ: contact.TypeCreated, schema: 2, want: contact.Created{Source: "import", Tags: []string{"vip", "friends-of-ada"}, Personal: goldenPerson},
			shredded: contact.Created{Source: "import", Shredded: true}},
		{typ: contact.TypeUpdated, schema: 1, want: contact.Updated{Fields: []string{"email", "custom_fields.tier"}, Values: contact.Personal{Email: "ada@analytical.example", CustomFields: map[string]string{"tier": "platinum"}}},
			shredded: contact.Updated{Fields: []string{"email", "custom_fields.tier"}, Shredded: true}},
		{typ: contact.TypeNoteAdded, schema: 1, want: contact.NoteAdded{NoteID: "note_01KAZ0G0LDEN0000000000000N", Text: "Met Ada at the engine demo"},
			shredded: contact.NoteAdded{NoteID: "note_01KAZ0G0LDEN0000000000000N", Shredded: true}},
		{typ: contact.TypeArchived, schema: 2, variant: "no-reason", want: contact.Archived{}, shredded: contact.Archived{}},
		{typ: contact.TypeRestored, schema: 2, variant: "keep-both", want: contact.Restored{Reason: goldenReason, To: contact.StateActive, KeepBoth: true},
			shredded: contact.Restored{To: contact.StateActive, KeepBoth: true}},
		{typ: contact.TypeHeld, schema: 1, want: contact.Held{HoldID: "hold_01KAZ0G0LDEN0000000000000H", Case: "Case 2026-117 (Lovelace v. Babbage)", Reason: goldenReason},
			shredded: contact.Held{HoldID: "hold_01KAZ0G0LDEN0000000000000H"}},
		{typ: contact.TypeHoldReleased, schema: 1, want: contact.HoldReleased{HoldID: "hold_01KAZ0G0LDEN0000000000000H", Reason: goldenReason},
			shredded: contact.HoldReleased{HoldID: "hold_01KAZ0G0LDEN0000000000000H"}},
	}
	// The events whose free text moved from the clear payload (schema 1)
	// to the sealed part (schema 2): the same value at both.
	for _, c := range []struct {
		want, shredded2 contact.Event
	}{
		{contact.Archived{Reason: goldenReason}, contact.Archived{}},
		{contact.Unarchived{Reason: goldenReason}, contact.Unarchived{}},
		{contact.Trashed{Reason: goldenReason, From: contact.StateArchived}, contact.Trashed{From: contact.StateArchived}},
		{contact.Restored{Reason: goldenReason, To: contact.StateArchived}, contact.Restored{To: contact.StateArchived}},
		{contact.Purged{Erasure: goldenErasure}, contact.Purged{Erasure: noReason(goldenErasure)}},
		{contact.Anonymized{Erasure: goldenExpiry}, contact.Anonymized{Erasure: noReason(goldenExpiry)}},
		{contact.TagsChanged{Added: []string{"friends-of-ada"}, Removed: []string{"lead"}}, contact.TagsChanged{}},
		{contact.ListMembershipChanged{List: "ada-newsletter", Status: contact.ListSubscribed}, contact.ListMembershipChanged{Status: contact.ListSubscribed}},
		{contact.ListMembershipRemoved{List: "ada-newsletter"}, contact.ListMembershipRemoved{}},
		{contact.Linked{Link: link}, contact.Linked{Link: contact.Link{Kind: link.Kind}}},
		{contact.Unlinked{Link: link}, contact.Unlinked{Link: contact.Link{Kind: link.Kind}}},
		{contact.MarkedSpam{Reason: goldenReason}, contact.MarkedSpam{}},
		{contact.UnmarkedSpam{Reason: goldenReason}, contact.UnmarkedSpam{}},
	} {
		typ := c.want.EventType()
		cases = append(cases,
			goldenCase{typ: typ, schema: 1, want: c.want, shredded: c.want},
			goldenCase{typ: typ, schema: 2, want: c.want, shredded: c.shredded2})
	}
	return cases
}

// TestGoldenEvents decodes every golden event with today's code, with its
// contact's key and after the key is destroyed, and checks it reads as the
// value it was written from; that every type has a golden at every schema
// from 1 to its current one; that each stored record still verifies in the
// hash chain; and that today's encoder writes the current schema exactly as
// its golden holds it (a change of encoding needs a new schema version).
func TestGoldenEvents(t *testing.T) {
	key := goldenKey(t)
	cases := goldenCases()
	schemas := contact.Schemas()

	// Every type at every schema it has had.
	for typ, current := range schemas {
		for v := 1; v <= current; v++ {
			if !slices.ContainsFunc(cases, func(c goldenCase) bool { return c.typ == typ && c.schema == v }) {
				t.Errorf("%s schema %d has no golden case: add one to goldenCases (and its file with -update)", typ, v)
			}
		}
	}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.file(), ".json"), func(t *testing.T) {
			current := schemas[c.typ]
			path := filepath.Join(goldenDir, c.file())
			b, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) && *update && c.schema == current {
				writeGolden(t, path, key, c)
				b, err = os.ReadFile(path)
			}
			if err != nil {
				t.Fatalf("%v (run 'go test ./ledger/ -run TestGoldenEvents -update' to write the golden of a current schema)", err)
			}
			rec := readGolden(t, b)
			if rec.Type != c.typ || rec.Schema != c.schema {
				t.Fatalf("the golden is %s schema %d, want %s schema %d", rec.Type, rec.Schema, c.typ, c.schema)
			}
			if got := kernel.ChainHash(rec.PrevHash, rec); !bytes.Equal(got, rec.Hash) {
				t.Fatalf("the record's chain hash is %x, stored %x: a stored chain would no longer verify", got, rec.Hash)
			}

			env, err := ledger.OpenRecord(ledger.ContactKey{Key: key, KeyID: "dk_golden"}, rec)
			if err != nil {
				t.Fatalf("reading with the key: %v", err)
			}
			if !reflect.DeepEqual(env.Event, c.want) {
				t.Fatalf("reading with the key:\n got %#v\nwant %#v", env.Event, c.want)
			}
			if env.EventID != rec.ID || env.Version != rec.Version || !env.At.Equal(rec.Time) ||
				env.By != rec.Actor || env.Workspace != rec.Workspace || env.Operation != rec.CausationID {
				t.Fatalf("envelope %+v does not carry the record's metadata", env)
			}
			env, err = ledger.OpenRecord(ledger.ContactKey{Destroyed: true}, rec)
			if err != nil {
				t.Fatalf("reading after the key is destroyed: %v", err)
			}
			if !reflect.DeepEqual(env.Event, c.shredded) {
				t.Fatalf("reading after the key is destroyed:\n got %#v\nwant %#v", env.Event, c.shredded)
			}

			if c.schema == current {
				checkCurrentEncoding(t, key, c, rec)
			}
		})
	}
}

// checkCurrentEncoding fails when today's encoder writes c.want otherwise
// than the golden of its current schema holds it.
func checkCurrentEncoding(t *testing.T, key shred.DataKey, c goldenCase, rec kernel.Record) {
	t.Helper()
	enc, err := contact.Encode(c.want)
	if err != nil {
		t.Fatal(err)
	}
	var personal []byte
	if rec.Sealed != nil {
		if personal, err = shred.Open(key, rec.Stream, rec.ID[:], rec.Sealed); err != nil {
			t.Fatal(err)
		}
	}
	if enc.Schema != rec.Schema || !jsonEqual(enc.Data, rec.Data) || !jsonEqual(enc.Personal, personal) {
		t.Fatalf("today's encoder writes %s schema %d as %s + sealed %s; the golden of schema %d holds %s + sealed %s: "+
			"a change of encoding needs a new schema version (see the README, 'How an event type evolves')",
			c.typ, enc.Schema, enc.Data, enc.Personal, rec.Schema, rec.Data, personal)
	}
}

// TestGoldenFilesAreRead checks that every golden file is one of the cases
// the golden tests read: none lies there unread.
func TestGoldenFilesAreRead(t *testing.T) {
	read := map[string]bool{}
	for _, c := range goldenCases() {
		read[c.file()] = true
	}
	for _, c := range jobGoldens() {
		read[c.file()] = true
	}
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in %s: %v", goldenDir, err)
	}
	for _, f := range files {
		if !read[filepath.Base(f)] {
			t.Errorf("%s has no golden case: every golden must be read", f)
		}
	}
}

// goldenKey is the data key every golden is sealed under: a test key,
// committed so the sealed parts can be opened.
func goldenKey(t *testing.T) shred.DataKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "datakey.hex"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != shred.KeySize {
		t.Fatalf("datakey.hex: %d bytes, %v; want %d", len(raw), err, shred.KeySize)
	}
	return shred.DataKey(raw)
}

func readGolden(t *testing.T, b []byte) kernel.Record {
	t.Helper()
	var g goldenRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		t.Fatalf("golden file: %v", err)
	}
	id, err := ulid.ParseStrict(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := hex.DecodeString(g.PrevHash)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := hex.DecodeString(g.Hash)
	if err != nil {
		t.Fatal(err)
	}
	return kernel.Record{
		ID: id, Stream: g.Stream, Version: g.Version, Type: g.Type, Time: g.Time, Workspace: g.Workspace,
		Actor: kernel.Actor{Principal: g.Principal, Role: kernel.Role(g.Role)}, CorrelationID: g.CorrelationID,
		CausationID: g.CausationID, Schema: g.Schema, Data: []byte(g.Data), Sealed: g.Sealed, PrevHash: prev, Hash: hash,
	}
}

// writeGolden seals c.want as a command does and writes the record. Only
// the current schema can be written so: an older one was written by the
// code of its time (testdata/events/README.md says how).
func writeGolden(t *testing.T, path string, key shred.DataKey, c goldenCase) {
	t.Helper()
	var after uint64
	var prev []byte
	if c.typ != contact.TypeCreated {
		after = 2
		h := sha256.Sum256([]byte("the golden event's predecessor"))
		prev = h[:]
	}
	meta := ledger.Meta{Actor: goldenActor, CorrelationID: "req_golden"}
	recs, err := ledger.SealChanges(ledger.ContactKey{Key: key, KeyID: "dk_golden"}, goldenStream, "ws_golden", meta, after, prev,
		[]contact.Change{{Event: c.want, At: goldenAt, By: goldenActor}})
	if err != nil {
		t.Fatal(err)
	}
	writeRecord(t, path, recs[0])
}

// writeRecord writes a golden file.
func writeRecord(t *testing.T, path string, r kernel.Record) {
	t.Helper()
	g := goldenRecord{
		ID: r.ID.String(), Stream: r.Stream, Version: r.Version, Type: r.Type, Schema: r.Schema, Time: r.Time,
		Workspace: r.Workspace, Principal: r.Actor.Principal, Role: string(r.Actor.Role), CorrelationID: r.CorrelationID,
		CausationID: r.CausationID, Data: string(r.Data), Sealed: r.Sealed, PrevHash: hex.EncodeToString(r.PrevHash), Hash: hex.EncodeToString(r.Hash),
	}
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// jsonEqual reports whether a and b are the same JSON document (both
// absent counts as equal).
func jsonEqual(a, b []byte) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// jobGolden is what one golden restore-job event must decode to. Job
// events are plain JSON, all schema 1, and their payloads grew by optional
// fields: data, when set, is a payload as an older version of the code
// wrote it (quoted from the git history), kept so it is read forever.
type jobGolden struct {
	variant string
	want    any
	data    string
}

func (c jobGolden) file() string {
	name := job.TypeOf(c.want) + ".v1"
	if c.variant != "" {
		name += "." + c.variant
	}
	return name + ".json"
}

func jobGoldens() []jobGolden {
	by := kernel.Actor{Principal: "tok_golden", Role: kernel.RoleAdmin}
	after := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ids := []string{"01KAZ0G0LDEN0000000000000A", "01KAZ0G0LDEN0000000000000B"}
	return []jobGolden{
		// As the first restore jobs (4944507) wrote it: the tag in clear.
		{variant: "tag-in-clear", want: job.Queued{Filter: job.Filter{DeletedBy: "tok_golden", Tag: "friends-of-ada"}, Reason: "undo Monday's cleanup", Total: 2, By: by},
			data: `{"filter":{"deleted_by":"tok_golden","tag":"friends-of-ada"},"reason":"undo Monday's cleanup","total":2,"requested_by":{"principal":"tok_golden","role":"admin"}}`},
		// As written from bac437d (tags sealed) until 06df6d6 (operation, keep_both).
		{variant: "tagged", want: job.Queued{Filter: job.Filter{DeletedAfter: &after, Tagged: true, Query: true}, Reason: "undo Monday's cleanup", Total: 2, By: by},
			data: `{"filter":{"deleted_after":"2026-11-01T00:00:00Z","tagged":true,"query":true},"reason":"undo Monday's cleanup","total":2,"requested_by":{"principal":"tok_golden","role":"admin"}}`},
		{want: job.Queued{Filter: job.Filter{DeletedAfter: &after, Operation: "bulk:req_golden"}, Reason: "undo Monday's cleanup", Total: 2, By: by, KeepBoth: true}},
		{want: job.Planned{IDs: ids}},
		{want: job.Started{Resumed: true}},
		{want: job.Progressed{Restored: ids[:1], Failed: []job.Failure{{ID: ids[1], Reason: "identity-conflict"}}}},
		{want: job.CancelRequested{By: by}},
		{want: job.Succeeded{}},
		{want: job.Failed{Error: "the log is unavailable"}},
		{want: job.Cancelled{}},
		{want: job.Admitted{Job: "job-01KAZ0G0LDEN0000000000000J"}},
		{want: job.Released{Job: "job-01KAZ0G0LDEN0000000000000J"}},
	}
}

// TestGoldenJobEvents reads every golden restore-job event (every type,
// and the older shapes of RestoreJobQueued) with today's code, checks each
// record still verifies in the hash chain, and that today's code writes the
// current shape as its golden holds it.
func TestGoldenJobEvents(t *testing.T) {
	cases := jobGoldens()
	for _, typ := range job.Types() {
		if !slices.ContainsFunc(cases, func(c jobGolden) bool { return job.TypeOf(c.want) == typ }) {
			t.Errorf("%s has no golden case: add one to jobGoldens (and its file with -update)", typ)
		}
	}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.file(), ".json"), func(t *testing.T) {
			path := filepath.Join(goldenDir, c.file())
			b, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) && *update {
				writeJobGolden(t, path, c)
				b, err = os.ReadFile(path)
			}
			if err != nil {
				t.Fatalf("%v (run 'go test ./ledger/ -run TestGoldenJobEvents -update' to write it)", err)
			}
			rec := readGolden(t, b)
			if got := kernel.ChainHash(rec.PrevHash, rec); !bytes.Equal(got, rec.Hash) {
				t.Fatalf("the record's chain hash is %x, stored %x: a stored chain would no longer verify", got, rec.Hash)
			}
			got, err := job.Decode(rec.Type, rec.Data)
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("decoding:\n got %#v, %v\nwant %#v", got, err, c.want)
			}
			if c.data == "" {
				now, err := json.Marshal(c.want)
				if err != nil || !jsonEqual(now, rec.Data) {
					t.Fatalf("today's code writes %s as %s; the golden holds %s: a payload only grows by optional fields, "+
						"and the old shape stays a golden of its own", rec.Type, now, rec.Data)
				}
			}
		})
	}
}

// writeJobGolden writes a job event's record as the service appends one
// (ledger's appendPlain): plain JSON, schema 1, chained.
func writeJobGolden(t *testing.T, path string, c jobGolden) {
	t.Helper()
	data := []byte(c.data)
	if c.data == "" {
		var err error
		if data, err = json.Marshal(c.want); err != nil {
			t.Fatal(err)
		}
	}
	prev := sha256.Sum256([]byte("the golden event's predecessor"))
	r := kernel.Record{
		ID: ulid.Make(), Stream: "job-01KAZ0G0LDEN0000000000000J", Version: 3, Type: job.TypeOf(c.want), Time: goldenAt,
		Workspace: "ws_golden", Actor: goldenActor, CorrelationID: "req_golden", CausationID: "req_golden", Schema: 1, Data: data, PrevHash: prev[:],
	}
	switch c.want.(type) {
	case job.Admitted, job.Released:
		r.Stream = "restorejobs-ws_golden"
	}
	r.Hash = kernel.ChainHash(r.PrevHash, r)
	writeRecord(t, path, r)
}
