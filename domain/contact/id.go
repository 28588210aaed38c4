package contact

import (
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// StreamPrefix starts the name of every contact's stream; stream-prefix
// filters and the $ce-contact category of EventStoreDB rely on it.
const StreamPrefix = "contact-"

// ID identifies a contact. It is a ULID, so ids sort by creation time.
type ID struct{ u ulid.ULID }

// ErrInvalidID is returned for a string that is not a contact id.
var ErrInvalidID = &kernel.Error{Code: kernel.CodeBadRequest, Reason: "invalid-id", Message: "not a valid contact id (a 26-character ULID)"}

// NewID returns a new random contact id.
func NewID() ID { return ID{ulid.Make()} }

// IDFrom returns the id made of a time and entropy (its first 10 bytes):
// the same inputs give the same id, so a command repeated after a crash can
// find what its first run made.
func IDFrom(t time.Time, entropy []byte) ID {
	var u ulid.ULID
	if err := u.SetTime(ulid.Timestamp(t)); err != nil {
		return NewID()
	}
	copy(u[6:], entropy)
	return ID{u}
}

// ParseID parses the canonical 26-character form of an id. It accepts lower
// case too, and rejects anything else with a validation error.
func ParseID(s string) (ID, error) {
	u, err := ulid.ParseStrict(strings.ToUpper(s))
	if err != nil {
		return ID{}, ErrInvalidID
	}
	return ID{u}, nil
}

// IDFromStream returns the id of the contact whose stream is named stream.
func IDFromStream(stream string) (ID, bool) {
	rest, ok := strings.CutPrefix(stream, StreamPrefix)
	if !ok {
		return ID{}, false
	}
	u, err := ulid.ParseStrict(rest)
	if err != nil {
		return ID{}, false
	}
	return ID{u}, true
}

// String returns the canonical form.
func (id ID) String() string { return id.u.String() }

// Stream returns the name of the contact's event stream.
func (id ID) Stream() string { return StreamPrefix + id.u.String() }

// IsZero reports whether id is the zero value.
func (id ID) IsZero() bool { return id.u == ulid.ULID{} }

// ULID returns the id as a ULID.
func (id ID) ULID() ulid.ULID { return id.u }

// MarshalText encodes the id in its canonical form.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses the canonical form.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
