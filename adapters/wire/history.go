package wire

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/oklog/ulid/v2"
)

// HistoryEventJSON is one event as the history, the audit log and
// `ledger replay` show it. With Sealed set, it holds every stored byte the
// chain hash covers, so anyone can recompute the hash (RecordOf).
type HistoryEventJSON struct {
	EventID       string       `json:"event_id"`
	Contact       string       `json:"contact_id,omitempty"`
	Stream        string       `json:"stream"`
	Workspace     string       `json:"workspace"`
	Type          string       `json:"type"`
	Version       uint64       `json:"version"`
	Position      string       `json:"position"`
	Time          time.Time    `json:"time"`
	Actor         kernel.Actor `json:"actor"`
	CorrelationID string       `json:"correlation_id"`
	CausationID   string       `json:"causation_id"`
	// Operation is the operation the event was part of (its causation id):
	// bulk:<request id>, import:<id>, job:<job id>, retention:<sweep id>,
	// or the request id of a single request.
	Operation string          `json:"operation"`
	Schema    int             `json:"schema"`
	Data      json.RawMessage `json:"data"`
	Personal  json.RawMessage `json:"personal,omitempty"`
	Shredded  bool            `json:"shredded,omitempty"`
	// Sealed is the personal part's ciphertext (base64url), when asked for.
	Sealed   *string `json:"sealed,omitempty"`
	Hash     string  `json:"hash"`
	PrevHash string  `json:"prev_hash,omitempty"`
}

var b64 = base64.RawURLEncoding

// EventJSON renders one stored event; withSealed adds its ciphertext.
func EventJSON(r kernel.Record, withSealed bool) HistoryEventJSON {
	e := HistoryEventJSON{
		EventID: r.ID.String(), Stream: r.Stream, Workspace: r.Workspace, Type: r.Type, Version: r.Version,
		Position: r.Position.String(), Time: r.Time, Actor: r.Actor, CorrelationID: r.CorrelationID,
		CausationID: r.CausationID, Operation: r.CausationID, Schema: r.Schema, Data: r.Data,
		Hash: b64.EncodeToString(r.Hash), PrevHash: b64.EncodeToString(r.PrevHash),
	}
	if id, ok := contact.IDFromStream(r.Stream); ok {
		e.Contact = id.String()
	}
	if withSealed && r.Sealed != nil {
		s := b64.EncodeToString(r.Sealed)
		e.Sealed = &s
	}
	return e
}

// RecordOf rebuilds the stored record from an event rendered with its
// ciphertext, for recomputing its chain hash offline.
func RecordOf(e HistoryEventJSON) (kernel.Record, error) {
	r := kernel.Record{
		Stream: e.Stream, Version: e.Version, Type: e.Type, Time: e.Time.UTC(), Workspace: e.Workspace, Actor: e.Actor,
		CorrelationID: e.CorrelationID, CausationID: e.CausationID, Schema: e.Schema, Data: []byte(e.Data),
	}
	var err error
	if r.ID, err = ulid.ParseStrict(e.EventID); err != nil {
		return kernel.Record{}, fmt.Errorf("event id %q: %w", e.EventID, err)
	}
	if r.Position, err = kernel.ParsePosition(e.Position); err != nil {
		return kernel.Record{}, fmt.Errorf("position %q: %w", e.Position, err)
	}
	if e.Sealed != nil {
		if r.Sealed, err = b64.DecodeString(*e.Sealed); err != nil {
			return kernel.Record{}, fmt.Errorf("sealed part of %s: %w", e.EventID, err)
		}
	} else if contact.RequiresPersonal(e.Type, e.Schema) {
		return kernel.Record{}, fmt.Errorf("event %s has no sealed part: replay with --json", e.EventID)
	}
	if r.Hash, err = b64.DecodeString(e.Hash); err != nil {
		return kernel.Record{}, fmt.Errorf("hash of %s: %w", e.EventID, err)
	}
	if r.PrevHash, err = b64.DecodeString(e.PrevHash); err != nil {
		return kernel.Record{}, fmt.Errorf("previous hash of %s: %w", e.EventID, err)
	}
	if len(r.PrevHash) == 0 {
		r.PrevHash = nil
	}
	return r, nil
}

// HistoryJSON renders history entries; withSealed adds each event's ciphertext.
func HistoryJSON(entries []ledger.HistoryEntry, withSealed bool) []HistoryEventJSON {
	out := make([]HistoryEventJSON, 0, len(entries))
	for _, e := range entries {
		j := EventJSON(e.Record, withSealed)
		j.Personal, j.Shredded = e.Personal, e.Shredded
		out = append(out, j)
	}
	return out
}

func ParseTime(field, v string) (time.Time, *kernel.FieldError) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, &kernel.FieldError{Field: field, Message: "must be a time in RFC 3339 form, such as 2026-01-31T00:00:00Z"}
	}
	return t.UTC(), nil
}
