package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/projections"
)

// ShadowIndexes describes a store's view tables to RunShadowIndexes.
type ShadowIndexes struct {
	Store  projections.StateStore
	Shadow projections.ShadowStore
	// Table names the table of a view or shadow ("active", "active~g1").
	Table func(name string) string
	// Indexes returns the secondary indexes of a table, each as its
	// definition without the table's or the index's name, sorted.
	Indexes func(table string) []string
	// Want is how many secondary indexes a view has.
	Want int
}

// RunShadowIndexes checks that a rebuild's table is loaded with its
// primary key only and gets every index of the view before it goes live:
// from IndexShadow, or from the switch itself when IndexShadow never ran.
func RunShadowIndexes(t *testing.T, h ShadowIndexes) {
	ctx := context.Background()
	live := h.Table("active")
	want := h.Indexes(live)
	if len(want) != h.Want {
		t.Fatalf("the live view has indexes %v, want %d", want, h.Want)
	}
	for _, gen := range []string{"g1", "g2"} {
		if err := h.Shadow.CreateShadow(ctx, "active", gen); err != nil {
			t.Fatal(err)
		}
		shadow := h.Table(projections.Shadow("active", gen))
		if got := h.Indexes(shadow); len(got) != 0 {
			t.Fatalf("a new shadow has indexes %v, want none until it is loaded", got)
		}
		if gen == "g1" {
			if err := h.Shadow.IndexShadow(ctx, "active", gen); err != nil {
				t.Fatal(err)
			}
			if got := h.Indexes(shadow); !slices.Equal(got, want) {
				t.Fatalf("after IndexShadow:\n%v\nwant\n%v", got, want)
			}
		}
		if err := h.Store.Commit(ctx, projections.Batch{Projection: projections.Shadow("active", gen), To: kernel.Position{Commit: 1, Prepare: 1}}); err != nil {
			t.Fatal(err)
		}
		if err := h.Shadow.SwitchShadow(ctx, "active", gen, nil); err != nil {
			t.Fatal(err)
		}
		if got := h.Indexes(live); !slices.Equal(got, want) {
			t.Fatalf("live after switching %s in:\n%v\nwant\n%v", gen, got, want)
		}
	}
}
