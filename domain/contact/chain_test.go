package contact_test

import (
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/oklog/ulid/v2"
)

func chain(stream string, n int) []contact.Record {
	var prev []byte
	var out []contact.Record
	for i := range n {
		r := contact.Record{ID: ulid.Make(), Stream: stream, Version: uint64(i + 1), Type: contact.TypeUpdated,
			Time: time.Unix(int64(1_800_000_000+i), 0).UTC(), Workspace: "ws", Data: []byte(`{}`), Sealed: []byte{byte(i)},
			Position: contact.Position{Commit: uint64(i + 1), Prepare: uint64(i + 1)}}
		r.PrevHash = prev
		r.Hash = contact.ChainHash(prev, r)
		prev = r.Hash
		out = append(out, r)
	}
	return out
}

func TestChainVerifier(t *testing.T) {
	for name, tc := range map[string]struct {
		alter   func([]contact.Record) []contact.Record
		kind    contact.BreakKind
		version uint64
	}{
		"intact": {func(r []contact.Record) []contact.Record { return r }, "", 0},
		"changed data": {func(r []contact.Record) []contact.Record {
			r[2].Data = []byte(`{"x":1}`)
			return r
		}, contact.BreakChanged, 3},
		"changed ciphertext": {func(r []contact.Record) []contact.Record {
			r[1].Sealed = []byte{9}
			return r
		}, contact.BreakChanged, 2},
		"changed and rehashed": {func(r []contact.Record) []contact.Record {
			r[1].Actor.Principal = "tok_forger"
			r[1].Hash = contact.ChainHash(r[1].PrevHash, r[1])
			return r
		}, contact.BreakLink, 3},
		"removed": {func(r []contact.Record) []contact.Record {
			return append(r[:2], r[3:]...)
		}, contact.BreakRemoved, 4},
		"reordered": {func(r []contact.Record) []contact.Record {
			r[2], r[3] = r[3], r[2]
			return r
		}, contact.BreakRemoved, 4},
		"duplicated": {func(r []contact.Record) []contact.Record {
			return append(r[:3], r[2:]...)
		}, contact.BreakReordered, 3},
	} {
		t.Run(name, func(t *testing.T) {
			v := contact.NewChainVerifier()
			var first *contact.Break
			for _, r := range tc.alter(chain("contact-x", 5)) {
				if b := v.Add(r); b != nil && first == nil {
					first = b
				}
			}
			if tc.kind == "" {
				if first != nil {
					t.Fatalf("intact chain: got break %+v", first)
				}
				return
			}
			if first == nil || first.Kind != tc.kind || first.Version != tc.version {
				t.Fatalf("got %+v, want %s at version %d", first, tc.kind, tc.version)
			}
		})
	}
}
