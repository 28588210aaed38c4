package kernel_test

import (
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

func chain(stream string, n int) []kernel.Record {
	var prev []byte
	var out []kernel.Record
	for i := range n {
		r := kernel.Record{ID: ulid.Make(), Stream: stream, Version: uint64(i + 1), Type: "ContactUpdated",
			Time: time.Unix(int64(1_800_000_000+i), 0).UTC(), Workspace: "ws", Data: []byte(`{}`), Sealed: []byte{byte(i)},
			Position: kernel.Position{Commit: uint64(i + 1), Prepare: uint64(i + 1)}}
		r.PrevHash = prev
		r.Hash = kernel.ChainHash(prev, r)
		prev = r.Hash
		out = append(out, r)
	}
	return out
}

func TestChainVerifier(t *testing.T) {
	for name, tc := range map[string]struct {
		alter   func([]kernel.Record) []kernel.Record
		kind    kernel.BreakKind
		version uint64
	}{
		"intact": {func(r []kernel.Record) []kernel.Record { return r }, "", 0},
		"changed data": {func(r []kernel.Record) []kernel.Record {
			r[2].Data = []byte(`{"x":1}`)
			return r
		}, kernel.BreakChanged, 3},
		"changed ciphertext": {func(r []kernel.Record) []kernel.Record {
			r[1].Sealed = []byte{9}
			return r
		}, kernel.BreakChanged, 2},
		"changed and rehashed": {func(r []kernel.Record) []kernel.Record {
			r[1].Actor.Principal = "tok_forger"
			r[1].Hash = kernel.ChainHash(r[1].PrevHash, r[1])
			return r
		}, kernel.BreakLink, 3},
		"removed": {func(r []kernel.Record) []kernel.Record {
			return append(r[:2], r[3:]...)
		}, kernel.BreakRemoved, 4},
		"reordered": {func(r []kernel.Record) []kernel.Record {
			r[2], r[3] = r[3], r[2]
			return r
		}, kernel.BreakRemoved, 4},
		"duplicated": {func(r []kernel.Record) []kernel.Record {
			return append(r[:3], r[2:]...)
		}, kernel.BreakReordered, 3},
	} {
		t.Run(name, func(t *testing.T) {
			v := kernel.NewChainVerifier()
			var first *kernel.Break
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
