package eventstoredb

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// FuzzDecodeEnvelope feeds the envelope decoder any metadata and payload
// as the server could return them: it must decode or refuse, never panic,
// and what it decodes must encode back to the same envelope.
func FuzzDecodeEnvelope(f *testing.F) {
	good, _ := encode(kernel.Record{
		ID: ulid.Make(), Stream: "contact-X", Version: 3, Type: contact.TypeUpdated, Time: time.Now().UTC().Truncate(time.Microsecond),
		Workspace: "ws", Actor: kernel.Actor{Principal: "tok_1", Role: kernel.RoleMember}, CorrelationID: "c", CausationID: "c",
		Schema: 1, Data: []byte(`{"fields":["name"]}`), Sealed: []byte{1, 2, 3}, PrevHash: []byte{4}, Hash: []byte{5},
	})
	f.Add(good.Metadata, good.Data, uint64(2))
	f.Add([]byte(`{}`), []byte(`{}`), uint64(0))
	f.Add([]byte(`{"version":1,"time":"2026-01-01T00:00:00Z","sealed":"@@"}`), []byte(nil), uint64(0))
	f.Add([]byte(`not json`), []byte(`{}`), uint64(0))
	f.Fuzz(func(t *testing.T, meta, data []byte, number uint64) {
		ev := &esdb.RecordedEvent{EventID: [16]byte(ulid.Make()), EventType: contact.TypeUpdated, StreamID: "contact-X",
			EventNumber: number, UserMetadata: meta, Data: data}
		r, err := decode(ev)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Data, data) && !(len(data) == 0 && r.Data == nil) {
			t.Fatalf("payload changed: %q -> %q", data, r.Data)
		}
		if len(r.Data) > 0 && !json.Valid(r.Data) {
			return // the server holds an event the ledger would never write; decoding it is enough
		}
		again, err := encode(r)
		if err != nil {
			return
		}
		back, err := decode(&esdb.RecordedEvent{EventID: again.EventID, EventType: again.EventType, StreamID: r.Stream,
			EventNumber: number, UserMetadata: again.Metadata, Data: again.Data})
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
		if back.Workspace != r.Workspace || back.Version != r.Version || !back.Time.Equal(r.Time) || !bytes.Equal(back.Sealed, r.Sealed) ||
			!bytes.Equal(back.Hash, r.Hash) || back.Actor != r.Actor || back.Schema != r.Schema {
			t.Fatalf("round trip: %+v -> %+v", r, back)
		}
	})
}
