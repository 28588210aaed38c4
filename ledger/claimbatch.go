package ledger

import (
	"context"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
)

// appendClaiming appends a batch whose commands claim the values
// chs[k].pending for their contacts owners[k] (with the new contacts'
// keys when keys is set: the store is then a KeyedAppender). When the log
// and the claims share a database the claims commit with the appends, in
// the same statement; else they are claimed in one statement before the
// append, and those of a stream that is not appended are given back in
// one after it. A stream one of whose values another contact has claimed
// fails with ErrClaimTaken: its command runs again alone, where a stale
// claim is taken over, a pending one waited for and a holder named.
func (s *core) appendClaiming(ctx context.Context, workspace string, owners []contact.ID, chs []identityChange, keys []KeyRow, batch []kernel.StreamAppend) ([]kernel.AppendResult, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	start := time.Now()
	res, err := s.claimAndAppend(ctx, workspace, owners, chs, keys, batch)
	if s.metrics != nil {
		d := time.Since(start)
		for k := range batch {
			if err != nil {
				s.metrics.Append(d, err)
			} else {
				s.metrics.Append(d, res[k].Err)
			}
		}
	}
	return res, err
}

func (s *core) claimAndAppend(ctx context.Context, workspace string, owners []contact.ID, chs []identityChange, keys []KeyRow, batch []kernel.StreamAppend) ([]kernel.AppendResult, error) {
	claims, n, now := make([][]IdentityClaim, len(batch)), 0, s.now()
	for k, ch := range chs {
		for _, v := range ch.pending {
			claims[k] = append(claims[k], IdentityClaim{Workspace: workspace, Kind: v.kind, Index: v.index, Contact: owners[k], At: now})
			n++
		}
	}
	if s.claimsWithLog != nil {
		return s.claimsWithLog.AppendClaimed(ctx, keys, claims, batch)
	}
	appendAll := func(keys []KeyRow, batch []kernel.StreamAppend) ([]kernel.AppendResult, error) {
		if keys != nil {
			return s.keysWithLog.AppendWithKeys(ctx, keys, batch)
		}
		return kernel.AppendMany(ctx, s.events, batch)
	}
	if n == 0 {
		return appendAll(keys, batch)
	}
	flat := make([]IdentityClaim, 0, n)
	for _, cs := range claims {
		flat = append(flat, cs...)
	}
	cur, inserted, err := s.claims.ClaimIdentities(ctx, flat)
	if err != nil {
		return nil, err
	}
	var (
		out      = make([]kernel.AppendResult, len(batch))
		giveBack []IdentityClaim
		pass     []int
		j        int
	)
	for k := range batch {
		var made []IdentityClaim
		taken := false
		for _, c := range claims[k] {
			switch {
			case inserted[j]:
				made = append(made, c)
			case cur[j].Contact != owners[k]:
				taken = true
			}
			j++
		}
		if taken {
			out[k].Err, giveBack = ErrClaimTaken, append(giveBack, made...)
			continue
		}
		claims[k], pass = made, append(pass, k)
	}
	defer func() { s.releaseClaims(ctx, giveBack) }()
	if len(pass) == 0 {
		return out, nil
	}
	part := make([]kernel.StreamAppend, len(pass))
	var partKeys []KeyRow
	if keys != nil {
		partKeys = make([]KeyRow, len(pass))
	}
	for m, k := range pass {
		part[m] = batch[k]
		if keys != nil {
			partKeys[m] = keys[k]
		}
	}
	res, err := appendAll(partKeys, part)
	if err != nil {
		for _, k := range pass {
			giveBack = append(giveBack, claims[k]...)
		}
		return nil, err
	}
	for m, k := range pass {
		if out[k] = res[m]; res[m].Err != nil {
			giveBack = append(giveBack, claims[k]...)
		}
	}
	return out, nil
}

// settleMany releases, in one statement, the values the contacts of a
// batch's appended commands (owners[k] for k in appended) stopped holding.
func (s *core) settleMany(ctx context.Context, workspace string, owners []contact.ID, chs []identityChange, appended []int) {
	var cs []IdentityClaim
	for _, k := range appended {
		for _, v := range chs[k].released {
			cs = append(cs, IdentityClaim{Workspace: workspace, Kind: v.kind, Index: v.index, Contact: owners[k]})
		}
	}
	s.releaseClaims(ctx, cs)
}

// releaseClaims deletes the claims of cs that are still their contacts',
// in one statement. A claim left behind is harmless (see release).
func (s *core) releaseClaims(ctx context.Context, cs []IdentityClaim) {
	if s.claims == nil || len(cs) == 0 {
		return
	}
	if err := s.claims.ReleaseIdentities(context.WithoutCancel(ctx), cs); err != nil {
		s.log.Warn("releasing identity claims failed; the next claimants take them over", "claims", len(cs), "err", err)
	}
}
