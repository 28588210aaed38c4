package feed_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/feed"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// secret is a string that stands for personal data: it must appear in an
// event only when personal fields are included.
const secret = "Ada-Secret-Lovelace"

var actor = kernel.Actor{Principal: "tok_feed", Role: kernel.RoleMember}

// cases has one internal event of every type, each carrying secret in its
// personal values, and the public type it must become.
var cases = []struct {
	event  contact.Event
	public string
}{
	{contact.Created{Source: "crm", Tags: []string{secret}, Personal: contact.Personal{Name: secret, Email: "ada@example.com"}}, feed.TypeCreated},
	{contact.Updated{Fields: []string{"name"}, Values: contact.Personal{Name: secret}}, feed.TypeUpdated},
	{contact.Archived{Reason: secret}, feed.TypeArchived},
	{contact.Unarchived{Reason: secret}, feed.TypeUnarchived},
	{contact.Trashed{Reason: secret, From: contact.StateActive}, feed.TypeTrashed},
	{contact.Restored{Reason: secret, To: contact.StateArchived}, feed.TypeRestored},
	{contact.Purged{Erasure: contact.Erasure{Reason: secret, Trigger: contact.TriggerRequest, Erased: []string{"name"}}}, feed.TypePurged},
	{contact.Anonymized{Erasure: contact.Erasure{Reason: secret, Trigger: contact.TriggerRetention, RetentionDays: 30}}, feed.TypeAnonymized},
	{contact.MarkedSpam{Reason: secret}, feed.TypeSpamMarked},
	{contact.UnmarkedSpam{Reason: secret}, feed.TypeSpamUnmarked},
	{contact.TagsChanged{Added: []string{secret}, Removed: []string{"old"}}, feed.TypeTagsChanged},
	{contact.NoteAdded{NoteID: "n_1", Text: secret}, feed.TypeNoteAdded},
	{contact.ListMembershipChanged{List: secret, Status: contact.ListSubscribed}, feed.TypeListMembershipChanged},
	{contact.ListMembershipRemoved{List: secret}, feed.TypeListMembershipRemoved},
	{contact.Linked{Link: contact.Link{Kind: "deal", Ref: secret}}, feed.TypeLinked},
	{contact.Unlinked{Link: contact.Link{Kind: "deal", Ref: secret}}, feed.TypeUnlinked},
}

func record(e contact.Event, causation string) kernel.Record {
	id := contact.NewID()
	return kernel.Record{
		ID: ulid.Make(), Stream: id.Stream(), Version: 3, Position: kernel.Position{Commit: 812, Prepare: 4031},
		Type: e.EventType(), Time: time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC), Workspace: "default", Actor: actor,
		CorrelationID: "req-1", CausationID: causation, Schema: 1,
	}
}

// TestEveryTypeHasItsPublicType maps one event of every internal type and
// checks its public type and envelope fields.
func TestEveryTypeHasItsPublicType(t *testing.T) {
	if len(cases) != len(feed.Types()) {
		t.Fatalf("the test covers %d types, the schema has %d", len(cases), len(feed.Types()))
	}
	for _, c := range cases {
		t.Run(c.public, func(t *testing.T) {
			r := record(c.event, "req-1")
			e, err := feed.Map(feed.Stored{Record: r, Event: c.event, Readable: true, Personal: true})
			if err != nil {
				t.Fatal(err)
			}
			id, _ := contact.IDFromStream(r.Stream)
			if e.Type != c.public || e.ContactID != id.String() || e.Workspace != "default" || e.Version != 3 ||
				e.Position != "812-4031" || !e.OccurredAt.Equal(r.Time) || e.Actor != actor || e.SchemaVersion != feed.SchemaVersion {
				t.Fatalf("got %+v, want type %s of contact %s at 812-4031", e, c.public, id)
			}
			if got, _ := feed.PublicType(r.Type); got != c.public {
				t.Fatalf("PublicType(%s): got %s, want %s", r.Type, got, c.public)
			}
			if c.public == feed.TypeRestored && e.Change.To != contact.StateArchived {
				t.Fatalf("a restore says where it returns: got %q", e.Change.To)
			}
		})
	}
}

// TestPersonalFields checks that personal values appear only when the
// reader may have them and the key exists, and that an erasure notice never
// carries any.
func TestPersonalFields(t *testing.T) {
	for _, c := range cases {
		for _, tc := range []struct {
			name               string
			readable, personal bool
			status             string
		}{
			{"included", true, true, feed.PersonalIncluded},
			{"withheld", true, false, feed.PersonalWithheld},
			{"erased", false, true, feed.PersonalErased},
			{"erased and withheld", false, false, feed.PersonalErased},
		} {
			t.Run(c.public+"/"+tc.name, func(t *testing.T) {
				r := record(c.event, "req-1")
				e, err := feed.Map(feed.Stored{Record: r, Event: c.event, Readable: tc.readable, Personal: tc.personal})
				if err != nil {
					t.Fatal(err)
				}
				b, err := feed.Marshal(r.ID.String(), e)
				if err != nil {
					t.Fatal(err)
				}
				want := tc.status
				if feed.IsErasure(r.Type) {
					want = feed.PersonalErased
				}
				if e.PersonalStatus != want {
					t.Fatalf("personal_status: got %q, want %q", e.PersonalStatus, want)
				}
				has := strings.Contains(string(b), secret)
				if has != (want == feed.PersonalIncluded) || (e.Personal != nil) != (want == feed.PersonalIncluded) {
					t.Fatalf("status %s, but the personal value is there: %v; event %s", want, has, b)
				}
			})
		}
	}
}

// TestErasureNotice checks what a purge tells receivers.
func TestErasureNotice(t *testing.T) {
	ev := contact.Purged{Erasure: contact.Erasure{Trigger: contact.TriggerRequest, Request: "DSR-12", Erased: []string{"name", "email"}}}
	e, err := feed.Map(feed.Stored{Record: record(ev, "req-9"), Event: ev, Readable: true, Personal: true})
	if err != nil {
		t.Fatal(err)
	}
	er := e.Change.Erasure
	if er == nil || er.Notice != feed.ErasureNotice || er.Request != "DSR-12" || !slices.Equal(er.Erased, []string{"name", "email"}) || e.Operation.Origin != feed.OriginErasure {
		t.Fatalf("got %+v (erasure %+v), want the notice with its request and erased fields, origin erasure", e, er)
	}
}

// TestOrigin derives each origin from the causation id (the operation) and actor.
func TestOrigin(t *testing.T) {
	for _, tc := range []struct {
		name      string
		typ       string
		causation string
		actor     kernel.Actor
		legacyJob bool
		want      string
	}{
		{"a single request", contact.TypeTrashed, "req-1", actor, false, feed.OriginUser},
		{"a bulk request", contact.TypeTrashed, "bulk:req-2", actor, false, feed.OriginBulk},
		{"an import", contact.TypeCreated, "import:01IMPORT", actor, false, feed.OriginImport},
		{"a restore job", contact.TypeRestored, "job:01JOB", actor, false, feed.OriginRestoreJob},
		{"a restore job before operation ids", contact.TypeRestored, "01JOB", actor, true, feed.OriginRestoreJob},
		{"a retention sweep", contact.TypePurged, "retention:01SWEEP", kernel.System("retention"), false, feed.OriginRetention},
		{"a retention sweep before operation ids", contact.TypePurged, "retention-01SWEEP", kernel.System("retention"), false, feed.OriginRetention},
		{"a purge asked for by a person", contact.TypePurged, "req-3", actor, false, feed.OriginErasure},
		{"a bulk purge", contact.TypePurged, "bulk:req-4", actor, false, feed.OriginBulk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := kernel.Record{Type: tc.typ, CausationID: tc.causation, Actor: tc.actor}
			if got := feed.Origin(r, tc.legacyJob); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestCloudEvent checks the envelope with the CloudEvents SDK itself:
// the JSON parses back into a valid CloudEvents 1.0 event with the same
// attributes and data.
func TestCloudEvent(t *testing.T) {
	c := cases[0]
	r := record(c.event, "import:01IMPORT")
	e, err := feed.Map(feed.Stored{Record: r, Event: c.event, Readable: true, Personal: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := feed.Marshal(r.ID.String(), e)
	if err != nil {
		t.Fatal(err)
	}
	var ce event.Event
	if err := json.Unmarshal(b, &ce); err != nil {
		t.Fatalf("the SDK cannot read %s: %v", b, err)
	}
	if err := ce.Validate(); err != nil {
		t.Fatal(err)
	}
	if ce.SpecVersion() != "1.0" || ce.ID() != r.ID.String() || ce.Type() != feed.TypeCreated || ce.Subject() != e.ContactID ||
		ce.Source() != "/workspaces/default" || ce.DataSchema() != feed.DataSchema || !ce.Time().Equal(r.Time) || ce.DataContentType() != "application/json" {
		t.Fatalf("got envelope %s", b)
	}
	var back feed.Event
	if err := ce.DataAs(&back); err != nil {
		t.Fatal(err)
	}
	if back.Operation.ID != "import:01IMPORT" || back.Operation.Origin != feed.OriginImport || back.Operation.RequestID != "req-1" ||
		back.Personal == nil || back.Personal.Name != secret || back.Change.Source != "crm" {
		t.Fatalf("got data %+v", back)
	}
}

// TestInternalTypes maps a filter of public types onto the log's types.
func TestInternalTypes(t *testing.T) {
	got, err := feed.InternalTypes("types", []string{feed.TypeRestored, feed.TypeCreated})
	if err != nil || !slices.Equal(got, []string{contact.TypeCreated, contact.TypeRestored}) {
		t.Fatalf("got %v %v", got, err)
	}
	if _, err := feed.InternalTypes("types", []string{"ContactCreated"}); kernel.ErrorCode(err) != kernel.CodeInvalid {
		t.Fatalf("an internal name as a public type: got %v, want invalid", err)
	}
}
