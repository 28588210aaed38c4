package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Position is a place in the global log. Stores that number their events
// with one sequence use Commit == Prepare; PostgreSQL orders by (transaction,
// sequence) and EventStoreDB by (commit, prepare). The zero Position is the
// start of the log, before the first event.
type Position struct {
	Commit  uint64
	Prepare uint64
}

// Less reports whether p comes before q in the log.
func (p Position) Less(q Position) bool {
	return p.Commit < q.Commit || (p.Commit == q.Commit && p.Prepare < q.Prepare)
}

// IsZero reports whether p is the start of the log.
func (p Position) IsZero() bool { return p == Position{} }

// String encodes p: "<n>" when both parts are equal, else "<commit>-<prepare>".
// Clients treat it as an opaque token.
func (p Position) String() string {
	if p.Commit == p.Prepare {
		return strconv.FormatUint(p.Commit, 10)
	}
	return strconv.FormatUint(p.Commit, 10) + "-" + strconv.FormatUint(p.Prepare, 10)
}

// ParsePosition parses the form String returns. The empty string is the start of the log.
func ParsePosition(s string) (Position, error) {
	if s == "" {
		return Position{}, nil
	}
	bad := Invalid(FieldError{Field: "position", Message: "is not a position returned by this service"})
	c, p, two := strings.Cut(s, "-")
	commit, err := strconv.ParseUint(c, 10, 64)
	if err != nil {
		return Position{}, bad
	}
	prepare := commit
	if two {
		if prepare, err = strconv.ParseUint(p, 10, 64); err != nil {
			return Position{}, bad
		}
	}
	return Position{Commit: commit, Prepare: prepare}, nil
}

// MarshalText encodes the position as String does.
func (p Position) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses the form String returns.
func (p *Position) UnmarshalText(b []byte) error {
	v, err := ParsePosition(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Record is an event as the log stores it: the envelope, the clear payload
// and the sealed personal blob.
type Record struct {
	ID            ulid.ULID
	Stream        string
	Version       uint64 // 1 for the first event of a stream
	Position      Position
	Type          string
	Time          time.Time // UTC, microsecond precision
	Workspace     string
	Actor         Actor
	CorrelationID string
	CausationID   string
	Schema        int
	Data          []byte // clear, non-personal JSON payload
	Sealed        []byte // personal fields sealed under the contact's data key, or nil
	PrevHash      []byte // Hash of the previous event of the stream (empty for the first)
	Hash          []byte // ChainHash(PrevHash, this record)
}

// ChainHash returns the hash that links r to its predecessor: SHA-256 over
// the predecessor's hash and every stored byte of r (ciphertext included, so
// destroying a key never breaks the chain). Position and Hash are not covered:
// the store assigns the first, and the second is the result.
func ChainHash(prev []byte, r Record) []byte {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field(prev)
	field(r.ID[:])
	field([]byte(r.Stream))
	field(binary.BigEndian.AppendUint64(nil, r.Version))
	field([]byte(r.Type))
	field(binary.BigEndian.AppendUint64(nil, uint64(r.Time.UnixMicro())))
	field([]byte(r.Workspace))
	field([]byte(r.Actor.Principal))
	field([]byte(r.Actor.Role))
	field([]byte(r.CorrelationID))
	field([]byte(r.CausationID))
	field(binary.BigEndian.AppendUint64(nil, uint64(r.Schema)))
	field(r.Data)
	field(r.Sealed)
	return h.Sum(nil)
}

// EventStore is the port of the log.
type EventStore interface {
	// Append appends events to stream if the stream's current version is
	// expected (0: the stream must not exist yet), atomically: all or none.
	// The records carry their versions; the store assigns positions and
	// returns the position of the last one. Errors: ErrConcurrency.
	Append(ctx context.Context, stream string, expected uint64, events []Record) (Position, error)
	// ReadStream returns the events of stream in the given workspace, in
	// version order. Errors: ErrNotFound when the workspace has no such stream.
	ReadStream(ctx context.Context, workspace, stream string) ([]Record, error)
	// ReadAll returns up to limit events after position from, in global order.
	ReadAll(ctx context.Context, from Position, limit int) ([]Record, error)
	// Subscribe calls handle with batches of events after from, in global
	// order, as they are committed, until ctx ends or handle fails. It
	// returns handle's error, or ctx's.
	Subscribe(ctx context.Context, from Position, handle func(context.Context, []Record) error) error
	// Head returns the position of the newest event (the zero Position for an empty log).
	Head(ctx context.Context) (Position, error)
}

// Validate checks that a batch of records can be appended to stream after version expected.
func Validate(stream string, expected uint64, events []Record) error {
	if len(events) == 0 {
		return fmt.Errorf("append to %s: no events", stream)
	}
	for i, e := range events {
		if e.Stream != stream || e.Version != expected+uint64(i)+1 {
			return fmt.Errorf("append to %s: event %d has stream %s version %d", stream, i, e.Stream, e.Version)
		}
	}
	return nil
}

// StreamAppend is one stream's part of a batched append: events to append
// to Stream if it is at version Expected (0: it must not exist yet).
type StreamAppend struct {
	Stream   string
	Expected uint64
	Events   []Record
}

// AppendResult is what became of one stream of a batched append: the
// position of its last event, or why it was refused (Err).
type AppendResult struct {
	Position Position
	Err      error
}

// BatchAppender is implemented by event stores that append to many streams
// in one call.
//
// A batch commits per stream: each stream is checked against its own
// expected version and appended whole or not at all, on its own. A stream
// whose check fails (ErrConcurrency; ErrNotFound when the stream belongs to
// another workspace; an invalid batch as Validate says) fails alone, with
// its error in its result, and every other stream of the batch is still
// appended. Stores with transactions commit every stream that passes in one
// transaction, so a batch costs one commit (one fsync) however many streams
// it holds; EventStoreDB, which has no transaction across streams, sends the
// streams' appends concurrently.
//
// We chose per-stream commit over all-or-nothing because every caller
// (restore jobs, bulk actions, retention, imports) treats its contacts one by
// one: a contact changed concurrently must not hold back the hundred others
// of its chunk, and it is the same contract on every store.
type BatchAppender interface {
	// AppendMany appends each element of batch to its stream as Append
	// would, and returns one result per element, in order. The error is
	// for the batch as a whole, with no results: a batch that names a
	// stream twice is refused (nothing is appended), and a failure of the
	// store itself (the commit failed, the connection broke) leaves every
	// stream's outcome as a failed Append would.
	AppendMany(ctx context.Context, batch []StreamAppend) ([]AppendResult, error)
}

// ErrDuplicateStream is returned when a batched append names a stream twice.
var ErrDuplicateStream = errors.New("a batched append names a stream more than once")

// CheckBatch refuses a batch that names a stream twice, and returns the
// error Validate finds in each stream's part (nil when it is sound).
func CheckBatch(batch []StreamAppend) ([]error, error) {
	seen := make(map[string]bool, len(batch))
	errs := make([]error, len(batch))
	for i, a := range batch {
		if seen[a.Stream] {
			return nil, fmt.Errorf("append to %s: %w", a.Stream, ErrDuplicateStream)
		}
		seen[a.Stream] = true
		errs[i] = Validate(a.Stream, a.Expected, a.Events)
	}
	return errs, nil
}

// appendWorkers bounds how many appends AppendMany sends at once to a store
// that has no batched append.
const appendWorkers = 16

// AppendMany appends a batch to many streams (see BatchAppender): in one go
// when the store can, else each stream on its own, a few at once.
func AppendMany(ctx context.Context, es EventStore, batch []StreamAppend) ([]AppendResult, error) {
	if ba, ok := es.(BatchAppender); ok {
		return ba.AppendMany(ctx, batch)
	}
	return AppendEach(ctx, batch, es.Append)
}

// AppendEach appends each stream of a batch with appendOne, a few at once,
// after refusing a batch that names a stream twice: the batched append of
// stores whose appends are per stream anyway.
func AppendEach(ctx context.Context, batch []StreamAppend, appendOne func(ctx context.Context, stream string, expected uint64, events []Record) (Position, error)) ([]AppendResult, error) {
	errs, err := CheckBatch(batch)
	if err != nil {
		return nil, err
	}
	out := make([]AppendResult, len(batch))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(appendWorkers, len(batch)) {
		wg.Go(func() {
			for i := range next {
				if errs[i] != nil {
					out[i].Err = errs[i]
					continue
				}
				a := batch[i]
				out[i].Position, out[i].Err = appendOne(ctx, a.Stream, a.Expected, a.Events)
			}
		})
	}
	for i := range batch {
		next <- i
	}
	close(next)
	wg.Wait()
	return out, nil
}

// MultiReader is implemented by event stores that read many streams in one go.
type MultiReader interface {
	// ReadStreams returns the events of each of the streams that workspace
	// has, in version order; unknown streams are absent from the map.
	ReadStreams(ctx context.Context, workspace string, streams []string) (map[string][]Record, error)
}

// TailReader is implemented by event stores that read a stream from a
// version on, for readers that keep what they folded before (a restore
// job's status, polled while the job appends its progress).
type TailReader interface {
	// ReadStreamAfter returns the events of stream in workspace with a
	// version above after, in version order: none when there are none, or
	// when the workspace has no such stream.
	ReadStreamAfter(ctx context.Context, workspace, stream string, after uint64) ([]Record, error)
}

// ReadStreams reads many streams of a workspace: in one go when the store
// can, else one by one.
func ReadStreams(ctx context.Context, es EventStore, workspace string, streams []string) (map[string][]Record, error) {
	if mr, ok := es.(MultiReader); ok {
		return mr.ReadStreams(ctx, workspace, streams)
	}
	out := make(map[string][]Record, len(streams))
	for _, st := range streams {
		recs, err := es.ReadStream(ctx, workspace, st)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[st] = recs
	}
	return out, nil
}
