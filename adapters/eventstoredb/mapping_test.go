package eventstoredb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/contactledger/ledger/adapters/eventstoredb"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/storetest"
	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestEventIDIsTheULID(t *testing.T) {
	u := ulid.Make()
	id := eventstoredb.EventID(u)
	if !bytes.Equal(id[:], u[:]) {
		t.Fatalf("got event id %x, want the ULID's bytes %x", id[:], u[:])
	}
	if eventstoredb.EventID(u) != id {
		t.Fatal("the event id is not a function of the ULID: a retried append would not be idempotent")
	}
}

func TestExpectedRevision(t *testing.T) {
	for _, tc := range []struct {
		expected uint64
		want     esdb.ExpectedRevision
	}{
		{0, esdb.NoStream{}},
		{1, esdb.Revision(0)},
		{2, esdb.Revision(1)},
		{5000, esdb.Revision(4999)},
	} {
		if got := eventstoredb.ExpectedRevision(tc.expected); got != tc.want {
			t.Errorf("expected version %d: got %#v, want %#v", tc.expected, got, tc.want)
		}
	}
}

func TestPositions(t *testing.T) {
	if got := eventstoredb.ToPosition(esdb.Position{Commit: 1788, Prepare: 1700}); got != (kernel.Position{Commit: 1788, Prepare: 1700}) {
		t.Errorf("got %v, want commit 1788 prepare 1700", got)
	}
	if got := eventstoredb.ToPosition(esdb.Position{Commit: math.MaxUint64, Prepare: math.MaxUint64}); !got.IsZero() {
		t.Errorf("no position (all ones, from old servers' stream reads): got %v, want zero", got)
	}
	if got := eventstoredb.FromPosition(kernel.Position{}); got != (esdb.Start{}) {
		t.Errorf("zero position: got %#v, want esdb.Start{}", got)
	}
	if got := eventstoredb.FromPosition(kernel.Position{Commit: 9, Prepare: 8}); got != (esdb.Position{Commit: 9, Prepare: 8}) {
		t.Errorf("got %#v, want esdb.Position{9, 8}", got)
	}
}

func TestIsContactEvent(t *testing.T) {
	for _, tc := range []struct {
		stream, typ string
		want        bool
	}{
		{"contact-01J0000000000000000000000A", "ContactCreated", true},
		{"contact-01J0000000000000000000000A", "$streamDeleted", false},
		{"$$contact-01J0000000000000000000000A", "$metadata", false},
		{"$ce-contact", "$>", false},
		{"orders-1", "OrderPlaced", false},
	} {
		if got := eventstoredb.IsContactEvent(tc.stream, tc.typ); got != tc.want {
			t.Errorf("%s %s: got %v, want %v", tc.stream, tc.typ, got, tc.want)
		}
	}
}

func TestEncodeDecode(t *testing.T) {
	st := contact.NewID().Stream()
	r := storetest.Rec("ws-1", st, 3)
	r.Data = []byte(`{"fields": ["name"],  "spaced":true}`) // kept byte for byte, whitespace too
	r.PrevHash = []byte("previous-hash")
	r.Time = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	r.Hash = kernel.ChainHash(r.PrevHash, r)

	ev, err := eventstoredb.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ContentType != esdb.ContentTypeJson || ev.EventType != r.Type || ev.EventID != eventstoredb.EventID(r.ID) || !bytes.Equal(ev.Data, r.Data) {
		t.Fatalf("got event %+v", ev)
	}
	var meta map[string]any
	if err := json.Unmarshal(ev.Metadata, &meta); err != nil {
		t.Fatalf("metadata is not JSON: %v", err)
	}
	for key, want := range map[string]any{
		"$correlationId": r.CorrelationID, "$causationId": r.CausationID, "workspace": "ws-1", "principal": "tok_suite",
		"role": "member", "schema": 1.0, "version": 3.0, "time": "2026-01-02T03:04:05.123456Z",
	} {
		if meta[key] != want {
			t.Errorf("metadata %s: got %v, want %v", key, meta[key], want)
		}
	}
	if meta["sealed"] == nil || meta["hash"] == nil || meta["prevHash"] == nil {
		t.Errorf("metadata misses the sealed blob or the hashes: %s", ev.Metadata)
	}

	rec := &esdb.RecordedEvent{
		EventID: ev.EventID, EventType: ev.EventType, ContentType: "application/json", StreamID: st, EventNumber: 2,
		Position: esdb.Position{Commit: 500, Prepare: 500}, Data: ev.Data, UserMetadata: ev.Metadata,
	}
	got, err := eventstoredb.Decode(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := r
	want.Position = kernel.Position{Commit: 500, Prepare: 500}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("round trip:\ngot  %+v\nwant %+v", got, want)
	}
	if !bytes.Equal(kernel.ChainHash(got.PrevHash, got), r.Hash) {
		t.Fatal("the chain hash does not verify after the round trip")
	}

	// nil and empty sealed blobs stay what they were.
	for _, sealed := range [][]byte{nil, {}} {
		r.Sealed = sealed
		ev, err := eventstoredb.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		rec.UserMetadata = ev.Metadata
		got, err := eventstoredb.Decode(rec)
		if err != nil {
			t.Fatal(err)
		}
		if (got.Sealed == nil) != (sealed == nil) || len(got.Sealed) != 0 {
			t.Fatalf("sealed %#v came back as %#v", sealed, got.Sealed)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	st := contact.NewID().Stream()
	for name, mutate := range map[string]func(r *kernel.Record){
		"a zero id (the client would replace it)": func(r *kernel.Record) { r.ID = ulid.ULID{} },
		"a system event type":                     func(r *kernel.Record) { r.Type = "$streamDeleted" },
		"no type":                                 func(r *kernel.Record) { r.Type = "" },
		"a payload that is not JSON":              func(r *kernel.Record) { r.Data = []byte("{not json") },
	} {
		r := storetest.Rec("ws", st, 1)
		mutate(&r)
		if _, err := eventstoredb.Encode(r); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	st := contact.NewID().Stream()
	ev, err := eventstoredb.Encode(storetest.Rec("ws", st, 1))
	if err != nil {
		t.Fatal(err)
	}
	for name, rec := range map[string]*esdb.RecordedEvent{
		"metadata that is not an envelope": {StreamID: st, EventNumber: 0, UserMetadata: []byte("[1,2]")},
		"no metadata":                      {StreamID: st, EventNumber: 0},
		"a version that is not its place":  {StreamID: st, EventNumber: 4, UserMetadata: ev.Metadata},
	} {
		if _, err := eventstoredb.Decode(rec); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
}

func TestTranslate(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: none of the domain's errors
	}{
		{"wrong expected version", esdbErr(esdb.ErrorCodeWrongExpectedVersion, errors.New("wrong expected version: expecting '1' but got '2'")), kernel.ErrConcurrency},
		{"stream not found", esdbErr(esdb.ErrorCodeResourceNotFound, errors.New("stream 'x' is not found")), kernel.ErrNotFound},
		{"stream hard-deleted by an operator", esdbErr(esdb.ErrorCodeStreamDeleted, errors.New("stream 'x' is deleted")), kernel.ErrNotFound},
		{"node unavailable", esdbErr(esdb.ErrorUnavailable, status.Error(codes.Unavailable, "connection refused")), eventstoredb.ErrUnavailable},
		{"not leader", esdbErr(esdb.ErrorCodeNotLeader, nil), eventstoredb.ErrUnavailable},
		{"client deadline", esdbErr(esdb.ErrorCodeDeadlineExceeded, nil), eventstoredb.ErrUnavailable},
		{"server write timeout", esdbErr(esdb.ErrorAborted, nil), eventstoredb.ErrUnavailable},
		{"client closed itself", esdbErr(esdb.ErrorCodeConnectionClosed, nil), eventstoredb.ErrUnavailable},
		{"append stream lost", esdbErr(esdb.ErrorCodeUnknown, fmt.Errorf("could not send append request. Reason: %w", io.EOF)), eventstoredb.ErrUnavailable},
		{"raw gRPC unavailable", status.Error(codes.Unavailable, "gone"), eventstoredb.ErrUnavailable},
		{"access denied", esdbErr(esdb.ErrorCodeAccessDenied, nil), eventstoredb.ErrAccess},
		{"bad credentials", esdbErr(esdb.ErrorCodeUnauthenticated, nil), eventstoredb.ErrAccess},
		{"raw gRPC permission denied", status.Error(codes.PermissionDenied, "no"), eventstoredb.ErrAccess},
		// Several client calls wrap the *esdb.Error; esdb.FromError would see ErrorCodeUnknown.
		{"wrapped wrong expected version", fmt.Errorf("failed to perform read. Reason: %w", esdbErr(esdb.ErrorCodeWrongExpectedVersion, nil)), kernel.ErrConcurrency},
		{"wrapped unavailable", fmt.Errorf("failed to construct subscription. Reason: %w", esdbErr(esdb.ErrorUnavailable, nil)), eventstoredb.ErrUnavailable},
		{"unknown", esdbErr(esdb.ErrorCodeUnknown, status.Error(codes.InvalidArgument, "Maximum Append Size of 1048576 Exceeded.")), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := eventstoredb.Translate(ctx, "append to contact-x", tc.err)
			if !strings.HasPrefix(got.Error(), "append to contact-x: ") {
				t.Errorf("got %q, want the operation first", got)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("the native error left the chain: %v", got)
			}
			for _, domain := range []error{kernel.ErrConcurrency, kernel.ErrNotFound, eventstoredb.ErrUnavailable, eventstoredb.ErrAccess} {
				if is := errors.Is(got, domain); is != (domain == tc.want) {
					t.Errorf("errors.Is(%v, %v) = %v", got, domain, is)
				}
			}
		})
	}
	if got := eventstoredb.Translate(ctx, "op", nil); got != nil {
		t.Errorf("nil: got %v", got)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	got := eventstoredb.Translate(cancelled, "read x", esdbErr(esdb.ErrorCodeUnknown, status.Error(codes.Canceled, "context canceled")))
	if !errors.Is(got, context.Canceled) || errors.Is(got, eventstoredb.ErrUnavailable) {
		t.Errorf("a call its caller cancelled: got %v, want context.Canceled", got)
	}
	if code := kernel.ErrorCode(eventstoredb.Translate(ctx, "op", esdbErr(esdb.ErrorUnavailable, nil))); code != kernel.CodeUnavailable {
		t.Errorf("unavailable maps to code %q, want %q (a 503 for the API)", code, kernel.CodeUnavailable)
	}
}

// TestDialAcceptsTheDocumentedConnectionStrings parses the connection
// strings the README and docker-compose files use, without connecting.
func TestDialAcceptsTheDocumentedConnectionStrings(t *testing.T) {
	for _, url := range []string{
		"esdb://localhost:2113?tls=false",
		"esdb://kurrentdb:2113?tls=false",
		"esdb://kurrentdb-1:2113,kurrentdb-2:2113,kurrentdb-3:2113?tls=false&nodePreference=leader",
		"esdb://ledger:secret@db1.example:2113,db2.example:2113,db3.example:2113?tlsVerifyCert=true",
		"esdb+discover://ledger:secret@cluster.example:2113",
	} {
		if _, err := eventstoredb.Dial(url, nil); err != nil {
			t.Errorf("%s: %v", url, err)
		}
	}
	for _, url := range []string{"http://localhost:2113", "esdb://localhost:2113/path", "esdb://"} {
		if _, err := eventstoredb.Dial(url, nil); err == nil {
			t.Errorf("%s: got no error", url)
		}
	}
}
