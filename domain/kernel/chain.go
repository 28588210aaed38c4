package kernel

import (
	"bytes"
	"crypto/sha256"
	"fmt"
)

// BreakKind says how a stream's chain is broken.
type BreakKind string

// The kinds of chain break.
const (
	// BreakChanged: the event's stored bytes don't hash to its recorded hash.
	BreakChanged BreakKind = "changed"
	// BreakRemoved: versions jump, so events are missing before this one.
	BreakRemoved BreakKind = "removed"
	// BreakReordered: the event comes after one with the same or a higher version.
	BreakReordered BreakKind = "reordered"
	// BreakLink: the event's recorded predecessor hash is not the hash of the
	// event before it (one was replaced, or removed and the rest renumbered).
	BreakLink BreakKind = "broken-link"
)

// Break is the first place where a stream's chain does not hold.
type Break struct {
	Stream   string    `json:"stream"`
	Version  uint64    `json:"version"`
	EventID  string    `json:"event_id"`
	Position Position  `json:"position"`
	Kind     BreakKind `json:"kind"`
	Detail   string    `json:"detail"`
}

// ChainVerifier checks the hash chains of streams whose events it is given
// in order (version order within each stream; streams may interleave, as
// in the global log). It keeps only the last version and hash of each stream.
type ChainVerifier struct {
	last   map[string]link
	broken map[string]bool
	// Events and Streams count what was checked.
	Events, Streams int
}

type link struct {
	version uint64
	hash    []byte
}

// NewChainVerifier returns an empty verifier.
func NewChainVerifier() *ChainVerifier {
	return &ChainVerifier{last: map[string]link{}, broken: map[string]bool{}}
}

// Add checks one more event and returns the break it reveals, if any. Once
// a stream is broken, its later events are not reported again.
func (v *ChainVerifier) Add(r Record) *Break {
	v.Events++
	prev, seen := v.last[r.Stream]
	if !seen {
		v.Streams++
	}
	v.last[r.Stream] = link{version: r.Version, hash: r.Hash}
	if v.broken[r.Stream] {
		return nil
	}
	b := check(prev, r)
	if b != nil {
		v.broken[r.Stream] = true
	}
	return b
}

func check(prev link, r Record) *Break {
	brk := func(k BreakKind, format string, args ...any) *Break {
		return &Break{Stream: r.Stream, Version: r.Version, EventID: r.ID.String(), Position: r.Position, Kind: k, Detail: fmt.Sprintf(format, args...)}
	}
	if !bytes.Equal(ChainHash(r.PrevHash, r), r.Hash) {
		return brk(BreakChanged, "the stored event does not hash to its recorded hash: it was altered after it was written")
	}
	switch {
	case r.Version > prev.version+1:
		return brk(BreakRemoved, "version %d follows version %d: %d event(s) are missing", r.Version, prev.version, r.Version-prev.version-1)
	case r.Version <= prev.version:
		return brk(BreakReordered, "version %d comes after version %d", r.Version, prev.version)
	case !bytes.Equal(r.PrevHash, prev.hash):
		return brk(BreakLink, "the event's predecessor hash is not the hash of version %d", prev.version)
	}
	return nil
}

// TrailDigestAlgorithm names how TrailDigest is computed, for receipts.
const TrailDigestAlgorithm = `SHA-256 over "contact-ledger/trail/v1\n" followed by each event's 32-byte chain hash, in version order`

// TrailDigest is the digest of a stream's trail: SHA-256 over a fixed
// label and the chain hashes of its events in version order. Each chain
// hash covers every stored byte of its event and its predecessor's hash, so
// the digest pins the whole trail; anyone can recompute it from the hashes
// in `ledger replay contact <id> --json` output.
func TrailDigest(hashes [][]byte) []byte {
	h := sha256.New()
	h.Write([]byte("contact-ledger/trail/v1\n"))
	for _, x := range hashes {
		h.Write(x)
	}
	return h.Sum(nil)
}
