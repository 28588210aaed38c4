package ledger

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// Meta is who runs a command and in which context.
type Meta struct {
	Actor         kernel.Actor
	CorrelationID string // the request id, or a job id
	CausationID   string // what caused this command, when not the request itself
	// Operation names the operation a command is part of, when it is more
	// than a single request: "bulk:<request id>", "import:<import id>",
	// "job:<restore job id>", "retention:<sweep id>" (see OperationBulk and
	// the others). When set it is the events' causation id, so every event
	// names the operation that caused it; a single request leaves it empty
	// and its events' causation id is the request id.
	Operation string
	// IfMatch, when set, is the version the caller last saw: the command
	// fails with ErrConcurrency unless the contact is still at it.
	IfMatch *uint64
	// IdempotencyKey and IdempotentSince are set when the command runs
	// under an Idempotency-Key (since when the key is claimed): a create
	// derives its contact's id from them, so a create repeated after the
	// server died mid-way finds the contact its first run made instead of
	// making a second one.
	IdempotencyKey  string
	IdempotentSince time.Time
	// DryRun asks for the answer the command would get, without doing it:
	// the command is decided exactly as it would be (the same checks, on
	// the same state), but nothing is appended, claimed or destroyed.
	DryRun bool
}

// The prefixes of operation ids (Meta.Operation): an event's causation id
// starts with one when the event is part of such an operation.
const (
	OperationBulk      = "bulk:"
	OperationImport    = "import:"
	OperationJob       = "job:"
	OperationRetention = "retention:"
)

// causation is the causation id of the events a command appends: its
// operation, else what caused it, else its request.
func (m Meta) causation() string {
	switch {
	case m.Operation != "":
		return m.Operation
	case m.CausationID != "":
		return m.CausationID
	}
	return m.CorrelationID
}

// seal turns a contact's recorded changes into log records, sealing each
// personal part under the contact's key and chaining each record to the one before.
func seal(key ContactKey, stream, workspace string, meta Meta, after uint64, prevHash []byte, changes []contact.Change) ([]kernel.Record, error) {
	key, err := key.withSealer()
	if err != nil {
		return nil, err
	}
	out := make([]kernel.Record, 0, len(changes))
	for i, ch := range changes {
		enc, err := contact.Encode(ch.Event)
		if err != nil {
			return nil, err
		}
		r := kernel.Record{
			ID: ulid.Make(), Stream: stream, Version: after + uint64(i) + 1, Type: enc.Type,
			Time: ch.At.UTC().Truncate(time.Microsecond), Workspace: workspace, Actor: ch.By,
			CorrelationID: meta.CorrelationID, CausationID: meta.causation(), Schema: enc.Schema, Data: enc.Data,
		}
		if enc.Personal != nil {
			if key.Destroyed {
				return nil, fmt.Errorf("seal %s of %s: the data key is destroyed", enc.Type, stream)
			}
			if r.Sealed, err = key.sealer.Seal(stream, r.ID[:], enc.Personal); err != nil {
				return nil, err
			}
		}
		r.PrevHash = prevHash
		r.Hash = kernel.ChainHash(prevHash, r)
		prevHash = r.Hash
		out = append(out, r)
	}
	return out, nil
}

// SealChanges turns changes recorded by the aggregate into log records, as
// commands do: sealed under the contact's key and chained after prevHash.
// Bulk tools (benchmarks, imports) that build streams themselves use it.
func SealChanges(key ContactKey, stream, workspace string, meta Meta, after uint64, prevHash []byte, changes []contact.Change) ([]kernel.Record, error) {
	return seal(key, stream, workspace, meta, after, prevHash, changes)
}

// open decodes one stream's records into envelopes, reading personal parts
// with the contact's key, or as shredded when it is destroyed.
func open(key ContactKey, recs []kernel.Record) ([]contact.Envelope, error) {
	out := make([]contact.Envelope, len(recs))
	// A long history is opened by every core: decrypting and decoding are
	// half of folding a 10,000-event stream. Each part gets its own cipher.
	parts := 1
	if len(recs) >= 2*openPart {
		parts = min(runtime.GOMAXPROCS(0), len(recs)/openPart)
	}
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		from, to := p*len(recs)/parts, (p+1)*len(recs)/parts
		run := func() {
			k := key
			if parts > 1 {
				k.sealer = nil // a cipher per goroutine, shared with none
			}
			k, err := k.withSealer()
			for i := from; i < to && err == nil; i++ {
				out[i], err = openOne(k, recs[i])
			}
			errs[p] = err
		}
		if p == parts-1 {
			run()
		} else {
			wg.Go(run)
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// openPart is the fewest events worth a goroutine of their own.
const openPart = 1000

// OpenRecord decodes one record with its contact's key.
func OpenRecord(key ContactKey, r kernel.Record) (contact.Envelope, error) { return openOne(key, r) }

func openOne(key ContactKey, r kernel.Record) (contact.Envelope, error) {
	var personal []byte
	shredded := false
	if r.Sealed != nil {
		if key.Destroyed {
			shredded = true
		} else {
			var err error
			if key, err = key.withSealer(); err != nil {
				return contact.Envelope{}, err
			}
			if personal, err = key.sealer.Open(r.Stream, r.ID[:], r.Sealed); err != nil {
				return contact.Envelope{}, fmt.Errorf("open %s v%d: %w", r.Stream, r.Version, err)
			}
		}
	}
	ev, err := contact.Decode(r.Type, r.Schema, r.Data, personal, shredded)
	if err != nil {
		return contact.Envelope{}, fmt.Errorf("decode %s v%d: %w", r.Stream, r.Version, err)
	}
	return contact.Envelope{EventID: r.ID, Version: r.Version, At: r.Time, By: r.Actor, Workspace: r.Workspace, Event: ev, Operation: r.CausationID}, nil
}
