package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

// claimedStore is a store that keeps the log, the key vault and the
// identity claims together.
type claimedStore interface {
	keyedStore
	ledger.IdentityClaims
	ledger.ClaimedAppender
}

func wsClaim(kind, index string, id contact.ID) ledger.IdentityClaim {
	return ledger.IdentityClaim{Workspace: "ws", Kind: kind, Index: index, Contact: id, At: time.Now().UTC().Truncate(time.Microsecond)}
}

// claimHolder returns who holds a value ("" when no one).
func claimHolder(t *testing.T, s claimedStore, kind, index string) string {
	t.Helper()
	c, ok, err := s.IdentityClaimOf(context.Background(), "ws", kind, index)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return ""
	}
	return c.Contact.String()
}

// claimedCases are the contract of appends that carry identity claims
// (ledger.ClaimedAppender) and of claiming many values at once.
var claimedCases = []storeCase[claimedStore]{
	{"claims commit with their streams, and only theirs", func(t *testing.T, s claimedStore) {
		ctx := context.Background()
		a, b, stale := contact.NewID(), contact.NewID(), contact.NewID()
		mustAppend(t, s, stale.Stream(), 0, Recs("ws", stale.Stream(), 0, 1))
		res, err := s.AppendClaimed(ctx, []ledger.KeyRow{keyRow(a), {}, {}},
			[][]ledger.IdentityClaim{{wsClaim("email", "a1", a), wsClaim("phone", "a2", a)}, nil, {wsClaim("email", "s1", stale)}},
			[]kernel.StreamAppend{
				{Stream: a.Stream(), Expected: 0, Events: Recs("ws", a.Stream(), 0, 1)},
				{Stream: b.Stream(), Expected: 0, Events: Recs("ws", b.Stream(), 0, 1)},
				{Stream: stale.Stream(), Expected: 0, Events: Recs("ws", stale.Stream(), 0, 1)},
			})
		if err != nil || res[0].Err != nil || res[1].Err != nil || !errors.Is(res[2].Err, kernel.ErrConcurrency) {
			t.Fatalf("got %v, %v; want nil, nil, ErrConcurrency", res, err)
		}
		if claimHolder(t, s, "email", "a1") != a.String() || claimHolder(t, s, "phone", "a2") != a.String() {
			t.Fatal("an appended stream's claims are missing")
		}
		if claimHolder(t, s, "email", "s1") != "" {
			t.Fatal("a stream that was not appended left its claim")
		}
	}},
	{"a value another contact holds fails its stream alone, storing nothing of it", func(t *testing.T, s claimedStore) {
		ctx := context.Background()
		holder, a, b, own := contact.NewID(), contact.NewID(), contact.NewID(), contact.NewID()
		for _, c := range []ledger.IdentityClaim{wsClaim("email", "held", holder), wsClaim("email", "own", own)} {
			if _, _, err := s.ClaimIdentity(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		res, err := s.AppendClaimed(ctx, []ledger.KeyRow{keyRow(a), keyRow(b), keyRow(own)},
			[][]ledger.IdentityClaim{{wsClaim("phone", "free", a), wsClaim("email", "held", a)}, {wsClaim("email", "b1", b)}, {wsClaim("email", "own", own)}},
			[]kernel.StreamAppend{
				{Stream: a.Stream(), Expected: 0, Events: Recs("ws", a.Stream(), 0, 1)},
				{Stream: b.Stream(), Expected: 0, Events: Recs("ws", b.Stream(), 0, 1)},
				{Stream: own.Stream(), Expected: 0, Events: Recs("ws", own.Stream(), 0, 1)},
			})
		if err != nil || !errors.Is(res[0].Err, ledger.ErrClaimTaken) || res[1].Err != nil || res[2].Err != nil {
			t.Fatalf("got %v, %v; want ErrClaimTaken, nil, nil", res, err)
		}
		if _, err := s.ReadStream(ctx, "ws", a.Stream()); !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("the stream of a taken claim was appended: %v", err)
		}
		if got, _ := s.GetKeys(ctx, "ws", []string{a.String()}); len(got) != 0 {
			t.Fatal("the key of a stream whose claim was taken was stored")
		}
		if claimHolder(t, s, "phone", "free") != "" || claimHolder(t, s, "email", "held") != holder.String() {
			t.Fatal("the failed stream's claims were stored, or the holder's changed")
		}
		if claimHolder(t, s, "email", "b1") != b.String() || claimHolder(t, s, "email", "own") != own.String() {
			t.Fatal("the other streams' claims are missing")
		}
	}},
	{"two streams of a batch claiming one value: the first gets it", func(t *testing.T, s claimedStore) {
		ctx := context.Background()
		a, b := contact.NewID(), contact.NewID()
		res, err := s.AppendClaimed(ctx, nil,
			[][]ledger.IdentityClaim{{wsClaim("email", "both", a)}, {wsClaim("email", "both", b)}},
			[]kernel.StreamAppend{
				{Stream: a.Stream(), Expected: 0, Events: Recs("ws", a.Stream(), 0, 1)},
				{Stream: b.Stream(), Expected: 0, Events: Recs("ws", b.Stream(), 0, 1)},
			})
		if err != nil || res[0].Err != nil || !errors.Is(res[1].Err, ledger.ErrClaimTaken) {
			t.Fatalf("got %v, %v; want nil, ErrClaimTaken", res, err)
		}
		if claimHolder(t, s, "email", "both") != a.String() {
			t.Fatal("the value is not the first stream's")
		}
	}},
	{"racing appends claiming one value: exactly one is appended", func(t *testing.T, s claimedStore) {
		ctx := context.Background()
		const n = 8
		ids := make([]contact.ID, n)
		res, errs := make([][]kernel.AppendResult, n), make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			ids[i] = contact.NewID()
			other := contact.NewID()
			keys := []ledger.KeyRow{keyRow(ids[i]), keyRow(other)}
			claims := [][]ledger.IdentityClaim{{wsClaim("email", "race", ids[i])}, {wsClaim("email", "x-"+other.String(), other)}}
			batch := []kernel.StreamAppend{
				{Stream: ids[i].Stream(), Expected: 0, Events: Recs("ws", ids[i].Stream(), 0, 1)},
				{Stream: other.Stream(), Expected: 0, Events: Recs("ws", other.Stream(), 0, 1)},
			}
			if i%2 == 1 {
				// A single create's append (a store may group those).
				keys, claims, batch = keys[:1], claims[:1], batch[:1]
			}
			wg.Go(func() { res[i], errs[i] = s.AppendClaimed(ctx, keys, claims, batch) })
		}
		wg.Wait()
		winner := -1
		for i := range n {
			if errs[i] != nil || (len(res[i]) > 1 && res[i][1].Err != nil) {
				t.Fatalf("batch %d: %v, %v", i, errs[i], res[i])
			}
			switch {
			case res[i][0].Err == nil && winner >= 0:
				t.Fatal("two streams claiming one value were appended")
			case res[i][0].Err == nil:
				winner = i
			case !errors.Is(res[i][0].Err, ledger.ErrClaimTaken):
				t.Fatalf("a losing stream: %v", res[i][0].Err)
			}
		}
		if winner < 0 || claimHolder(t, s, "email", "race") != ids[winner].String() {
			t.Fatalf("winner %d; the value's claim is %q's", winner, claimHolder(t, s, "email", "race"))
		}
	}},
	{"many values are claimed and released in one call", func(t *testing.T, s claimedStore) {
		ctx := context.Background()
		holder, a := contact.NewID(), contact.NewID()
		if _, _, err := s.ClaimIdentity(ctx, wsClaim("email", "m1", holder)); err != nil {
			t.Fatal(err)
		}
		cur, inserted, err := s.ClaimIdentities(ctx, []ledger.IdentityClaim{wsClaim("email", "m1", a), wsClaim("phone", "m2", a)})
		if err != nil || len(cur) != 2 || inserted[0] || cur[0].Contact != holder || !inserted[1] || cur[1].Contact != a {
			t.Fatalf("got %v %v, %v; want the holder's claim, then a's new one", cur, inserted, err)
		}
		if err := s.ReleaseIdentities(ctx, []ledger.IdentityClaim{wsClaim("email", "m1", a), wsClaim("phone", "m2", a)}); err != nil {
			t.Fatal(err)
		}
		if claimHolder(t, s, "email", "m1") != holder.String() || claimHolder(t, s, "phone", "m2") != "" {
			t.Fatal("release deleted another contact's claim, or kept its own")
		}
	}},
}
