package ledger_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/ledgertest"
	"github.com/contactledger/ledger/ledger"
)

// skips records what retention sweeps told the metrics.
type skips struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *skips) Command(string, error, time.Duration) {}
func (s *skips) Append(time.Duration, error)          {}
func (s *skips) RetentionSkipped(reason string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]int{}
	}
	s.n[reason] += n
}

func (s *skips) get(reason string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[reason]
}

func setRetention(t *testing.T, e *ledgertest.Env, days int) {
	t.Helper()
	if _, err := e.Svc.SetPolicy(t.Context(), ledgertest.Workspace, contact.PolicySettings{RetentionDays: days, RestoreRole: kernel.RoleMember, PurgeAllowed: days > 0}); err != nil {
		t.Fatal(err)
	}
}

// TestRetentionSweep trashes contacts at different times and sweeps: only
// those in trash longer than the policy's days are purged, by the
// retention actor under the sweep's operation, losing their keys; one
// under legal hold stays and is counted, as is everything while the
// workspace is held; a policy without retention purges nothing.
func TestRetentionSweep(t *testing.T) {
	t.Parallel()
	obs := &skips{}
	e := ledgertest.New(t, ledgertest.Options{Metrics: obs})
	ctx := t.Context()
	setRetention(t, e, 10)
	due, held, late := e.Create(t, "Due", ""), e.Create(t, "Held", ""), e.Create(t, "Late", "")
	e.Move(t, due, ledger.Trash)
	e.Move(t, held, ledger.Trash)
	if _, _, err := e.Svc.PlaceHold(ctx, ledgertest.Workspace, held, ledgertest.Meta("req-hold"), "CASE-1", "litigation"); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(10*24*time.Hour + time.Minute)
	e.Move(t, late, ledger.Trash)

	// While the workspace is held, nothing is purged: the due ones are counted.
	if _, err := e.Svc.PlaceWorkspaceHold(ctx, ledgertest.Workspace, ledgertest.Meta("req-wh"), "CASE-2", "audit"); err != nil {
		t.Fatal(err)
	}
	reps, err := e.Svc.SweepRetention(ctx, ledgertest.Workspace)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || reps[0].WorkspaceHold == "" || reps[0].SkippedWorkspaceHold != 2 || len(reps[0].Purged) != 0 || reps[0].Skipped() != 2 {
		t.Fatalf("sweep under a workspace hold: %+v; want 2 skipped, none purged", reps)
	}
	if got := obs.get(ledger.SkipWorkspaceHold); got != 2 {
		t.Errorf("metrics: %d skipped for the workspace hold; want 2", got)
	}
	if _, err := e.Svc.ReleaseWorkspaceHold(ctx, ledgertest.Workspace, ledgertest.Meta("req-wr"), "audit over"); err != nil {
		t.Fatal(err)
	}

	reps, err = e.Svc.SweepRetention(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	rep := reps[slices.IndexFunc(reps, func(r ledger.SweepReport) bool { return r.Workspace == ledgertest.Workspace })]
	if !slices.Equal(rep.Purged, []contact.ID{due}) || rep.SkippedHeld != 1 || len(rep.Failed) != 0 || rep.RetentionDays != 10 {
		t.Fatalf("sweep: purged %v, skipped held %d, failed %v, days %d; want [%s], 1, none, 10", rep.Purged, rep.SkippedHeld, rep.Failed, rep.RetentionDays, due)
	}
	if !strings.HasPrefix(rep.Operation, ledger.OperationRetention) {
		t.Errorf("operation %q; want retention:<sweep>", rep.Operation)
	}
	if got := obs.get(ledger.SkipContactHold); got != 1 {
		t.Errorf("metrics: %d skipped for a contact hold; want 1", got)
	}
	r := lastEvent(t, e, due)
	if r.Type != contact.TypePurged || r.CausationID != rep.Operation || r.Actor.Principal != "system:retention" {
		t.Errorf("tombstone: %s by %s caused by %q; want a purge by system:retention caused by %s", r.Type, r.Actor.Principal, r.CausationID, rep.Operation)
	}
	if k, err := e.Vault.ContactKey(ctx, ledgertest.Workspace, due); err != nil || !k.Destroyed {
		t.Errorf("the purged contact's key: destroyed %v, %v", k.Destroyed, err)
	}
	v, err := e.Svc.Get(ctx, ledgertest.Workspace, due)
	if err != nil || v.Tombstone == nil || v.Tombstone.Erasure.Trigger != contact.TriggerRetention || v.Tombstone.Erasure.RetentionDays != 10 {
		t.Errorf("the purged contact: %+v, %v; want a tombstone triggered by retention", v.Tombstone, err)
	}
	if trash := e.ViewIDs(t, "trash"); len(trash) != 2 || !containsAll(trash, []contact.ID{held, late}) {
		t.Errorf("trash after the sweep: %v; want %s and %s", trash, held, late)
	}

	// A later sweep finds nothing new; with retention off, nothing is due.
	setRetention(t, e, 0)
	e.Clock.Advance(365 * 24 * time.Hour)
	reps, err = e.Svc.SweepRetention(ctx, ledgertest.Workspace)
	if err != nil || len(reps) != 1 || reps[0].RetentionDays != 0 || len(reps[0].Purged) != 0 {
		t.Fatalf("sweep with retention off: %+v, %v", reps, err)
	}
}

// TestRunRetention runs the sweeper in the background: it sweeps at once,
// purging the due contact, and returns when its context ends.
func TestRunRetention(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	setRetention(t, e, 1)
	id := e.Create(t, "Old", "")
	e.Move(t, id, ledger.Trash)
	e.Clock.Advance(48 * time.Hour)
	e.CaughtUp(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Svc.RunRetention(ctx, time.Hour, nil) }()
	deadline := time.Now().Add(20 * time.Second)
	for lastEvent(t, e, id).Type != contact.TypePurged {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not purge the due contact")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunRetention returned %v; want context.Canceled", err)
	}
}
