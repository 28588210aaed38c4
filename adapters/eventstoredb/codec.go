package eventstoredb

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"
)

// How a kernel.Record is stored as an EventStoreDB event:
//
//	event id      the record's ULID, byte for byte (a ULID and a UUID are both
//	              16 bytes), so a retried append is idempotent on the server
//	event type    the record's type (ContactCreated, ...)
//	content type  application/json
//	data          the clear, non-personal payload exactly as recorded (JSON)
//	metadata      the envelope as JSON (see envelope), with the sealed
//	              personal blob in base64
//	stream        contact-<ULID>; revision = version - 1
//	position      the $all commit/prepare position
//
// The data is kept byte for byte, so the chain hash (which covers it) still
// verifies after a round trip, and EventStoreDB's own tools show the payload
// as the event's body.

// envelope is the JSON of an event's metadata. $correlationId and
// $causationId are EventStoreDB's own names, so its $by_correlation_id
// system projection works on the ledger's events.
type envelope struct {
	CorrelationID string `json:"$correlationId"`
	CausationID   string `json:"$causationId"`
	Workspace     string `json:"workspace"`
	Principal     string `json:"principal"`
	Role          string `json:"role"`
	Schema        int    `json:"schema"`
	Version       uint64 `json:"version"`
	Time          string `json:"time"`     // RFC 3339, UTC, microseconds
	PrevHash      []byte `json:"prevHash"` // base64
	Hash          []byte `json:"hash"`     // base64
	// Sealed is the personal fields sealed under the contact's data key, in
	// base64; null when the event has no personal part.
	Sealed []byte `json:"sealed"`
}

// eventID returns the EventStoreDB event id of a record: its ULID's bytes.
func eventID(id ulid.ULID) uuid.UUID { return uuid.UUID(id) }

// expectedRevision maps the port's expected version (the number of events
// already in the stream; 0: none) to EventStoreDB's, whose revisions count
// from 0.
func expectedRevision(expected uint64) esdb.ExpectedRevision {
	if expected == 0 {
		return esdb.NoStream{}
	}
	return esdb.Revision(expected - 1)
}

// toPosition maps a $all position to the port's. Servers before 22.x send
// no position on stream reads (the client reports all ones): that is the
// zero Position.
func toPosition(p esdb.Position) kernel.Position {
	if p.Commit == math.MaxUint64 || p.Prepare == math.MaxUint64 {
		return kernel.Position{}
	}
	return kernel.Position{Commit: p.Commit, Prepare: p.Prepare}
}

// fromPosition maps the port's position to a $all start point; the zero
// Position is the start of the log.
func fromPosition(p kernel.Position) esdb.AllPosition {
	if p.IsZero() {
		return esdb.Start{}
	}
	return esdb.Position{Commit: p.Commit, Prepare: p.Prepare}
}

// isContactEvent reports whether an event of $all is one of the ledger's:
// in a contact stream, and not a system event such as $streamDeleted (which
// lives in the stream it deletes).
func isContactEvent(stream, eventType string) bool {
	return strings.HasPrefix(stream, contact.StreamPrefix) && !strings.HasPrefix(eventType, "$")
}

// encode turns a record into the event to append.
func encode(r kernel.Record) (esdb.EventData, error) {
	if r.ID == (ulid.ULID{}) {
		// The client would silently replace an all-zero id with a random one.
		return esdb.EventData{}, fmt.Errorf("event %s v%d has no id", r.Stream, r.Version)
	}
	if r.Type == "" || strings.HasPrefix(r.Type, "$") {
		return esdb.EventData{}, fmt.Errorf("event %s v%d: type %q is not allowed", r.Stream, r.Version, r.Type)
	}
	if len(r.Data) > 0 && !json.Valid(r.Data) {
		return esdb.EventData{}, fmt.Errorf("event %s v%d: the payload is not JSON", r.Stream, r.Version)
	}
	meta, err := json.Marshal(envelope{
		CorrelationID: r.CorrelationID, CausationID: r.CausationID, Workspace: r.Workspace,
		Principal: r.Actor.Principal, Role: string(r.Actor.Role), Schema: r.Schema, Version: r.Version,
		Time: r.Time.UTC().Format(time.RFC3339Nano), PrevHash: r.PrevHash, Hash: r.Hash, Sealed: r.Sealed,
	})
	if err != nil {
		return esdb.EventData{}, fmt.Errorf("event %s v%d: %w", r.Stream, r.Version, err)
	}
	return esdb.EventData{
		EventID: eventID(r.ID), EventType: r.Type, ContentType: esdb.ContentTypeJson,
		Data: r.Data, Metadata: meta,
	}, nil
}

// decode turns a recorded event back into a record. An event that the
// ledger did not write, or that does not sit where its envelope says, is an
// error: the log would not be what the ledger appended.
func decode(e *esdb.RecordedEvent) (kernel.Record, error) {
	var env envelope
	if err := json.Unmarshal(e.UserMetadata, &env); err != nil {
		return kernel.Record{}, fmt.Errorf("event %s@%d: metadata is not a ledger envelope: %w", e.StreamID, e.EventNumber, err)
	}
	if env.Version != e.EventNumber+1 {
		return kernel.Record{}, fmt.Errorf("event %s@%d: envelope says version %d", e.StreamID, e.EventNumber, env.Version)
	}
	t, err := time.Parse(time.RFC3339Nano, env.Time)
	if err != nil {
		return kernel.Record{}, fmt.Errorf("event %s@%d: time: %w", e.StreamID, e.EventNumber, err)
	}
	r := kernel.Record{
		ID: ulid.ULID(e.EventID), Stream: e.StreamID, Version: env.Version, Position: toPosition(e.Position),
		Type: e.EventType, Time: t.UTC(), Workspace: env.Workspace,
		Actor:         kernel.Actor{Principal: env.Principal, Role: kernel.Role(env.Role)},
		CorrelationID: env.CorrelationID, CausationID: env.CausationID, Schema: env.Schema,
		Data: e.Data, Sealed: env.Sealed, PrevHash: env.PrevHash, Hash: env.Hash,
	}
	if len(r.Data) == 0 {
		r.Data = nil
	}
	return r, nil
}
