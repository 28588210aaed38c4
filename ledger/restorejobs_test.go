package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/ledgertest"
	"github.com/contactledger/ledger/ledger"
)

// trashed creates n contacts and moves them to trash in one bulk request
// whose request id is req, so that they share the operation bulk:<req>.
func trashed(t *testing.T, e *ledgertest.Env, req string, n int) []contact.ID {
	t.Helper()
	ids := make([]contact.ID, n)
	raw := make([]string, n)
	for i := range ids {
		ids[i] = e.Create(t, req+"-person-"+string(rune('a'+i)), "")
		raw[i] = ids[i].String()
	}
	items, err := e.Svc.Bulk(t.Context(), ledgertest.Workspace, ledgertest.Meta(req), ledger.BulkRequest{Action: ledger.Trash, IDs: raw, ExpectedCount: n})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Err != nil {
			t.Fatalf("trash %s: %v", it.ID, it.Err)
		}
	}
	return ids
}

// lastEvent returns the newest record of a contact's stream.
func lastEvent(t *testing.T, e *ledgertest.Env, id contact.ID) kernel.Record {
	t.Helper()
	recs, err := e.Events.ReadStream(t.Context(), ledgertest.Workspace, id.Stream())
	if err != nil {
		t.Fatal(err)
	}
	return recs[len(recs)-1]
}

func countType(t *testing.T, e *ledgertest.Env, id contact.ID, typ string) int {
	t.Helper()
	recs, err := e.Events.ReadStream(t.Context(), ledgertest.Workspace, id.Stream())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Type == typ {
			n++
		}
	}
	return n
}

// TestRestoreJobRestoresWhatOneOperationTrashed plans a job on the
// operation of one bulk trash, restores one of its contacts by hand before
// the job runs, and runs the job: the others come back with the job's
// operation as causation, the one restored meanwhile is a failure with a
// reason, and the contacts another operation trashed stay in trash. On
// PostgreSQL the job runs under the store's lease.
func TestRestoreJobRestoresWhatOneOperationTrashed(t *testing.T) {
	t.Parallel()
	ledgertest.Stores(t, func(t *testing.T, o ledgertest.Options) {
		e := ledgertest.New(t, o)
		ctx := t.Context()
		mine := trashed(t, e, "req-mine", 3)
		other := trashed(t, e, "req-other", 2)
		j, err := e.Svc.StartRestoreJob(ctx, ledgertest.Workspace, ledgertest.Meta("req-job"), ledger.RestoreFilter{Operation: "bulk:req-mine", Reason: "undo"})
		if err != nil {
			t.Fatal(err)
		}
		if j.State != job.StateQueued || j.Total != 3 || j.Filter.Operation != "bulk:req-mine" {
			t.Fatalf("queued job: state %s, total %d, filter %+v; want queued, 3, the operation", j.State, j.Total, j.Filter)
		}
		e.Move(t, mine[0], ledger.Restore)

		got, err := e.Svc.RunRestoreJob(ctx, ledgertest.Workspace, j.ID, ledger.JobOptions{Lease: e.Lease})
		if err != nil {
			t.Fatal(err)
		}
		if got.State != job.StateSucceeded || got.Restored != 2 || len(got.Failures) != 1 || got.Failures[0].ID != mine[0].String() || got.Failures[0].Reason == "" {
			t.Fatalf("ended job: state %s, restored %d, failures %+v; want succeeded, 2, one for %s with a reason", got.State, got.Restored, got.Failures, mine[0])
		}
		for _, id := range mine[1:] {
			r := lastEvent(t, e, id)
			if r.Type != contact.TypeRestored || r.CausationID != "job:"+j.ID || r.CorrelationID != j.ID {
				t.Errorf("%s: last event %s caused by %q (correlation %q); want a restore by job:%s", id, r.Type, r.CausationID, r.CorrelationID, j.ID)
			}
		}
		trash := e.ViewIDs(t, "trash")
		if len(trash) != 2 || !containsAll(trash, other) {
			t.Errorf("trash after the job: %v; want only %v", trash, other)
		}
		// The slot is free again: a second job is admitted.
		j2, err := e.Svc.StartRestoreJob(ctx, ledgertest.Workspace, ledgertest.Meta("req-job-2"), ledger.RestoreFilter{Operation: "bulk:req-other"})
		if err != nil {
			t.Fatalf("a job after the first ended: %v", err)
		}
		if j2.Total != 2 {
			t.Fatalf("second job plans %d contacts; want 2", j2.Total)
		}
	})
}

func containsAll(have, want []contact.ID) bool {
	set := map[contact.ID]bool{}
	for _, id := range have {
		set[id] = true
	}
	for _, id := range want {
		if !set[id] {
			return false
		}
	}
	return true
}

// TestRestoreJobIsExactlyOnce restores a planned contact with the job's
// own causation before the job runs, as a runner that died before
// recording its progress leaves it: the job counts the contact as
// restored and appends no second restore, for the typed operation id and
// for the bare job id of events written before operation ids.
func TestRestoreJobIsExactlyOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cause func(jobID string) ledger.Meta
	}{
		{"operation id", func(id string) ledger.Meta {
			return ledger.Meta{Actor: ledgertest.Admin, CorrelationID: id, Operation: ledger.OperationJob + id}
		}},
		{"bare job id", func(id string) ledger.Meta { return ledger.Meta{Actor: ledgertest.Admin, CorrelationID: id} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := ledgertest.New(t, ledgertest.Options{})
			ctx := t.Context()
			ids := trashed(t, e, "req-t", 2)
			j, err := e.Svc.StartRestoreJob(ctx, ledgertest.Workspace, ledgertest.Meta("req-job"), ledger.RestoreFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.Svc.Transition(ctx, ledgertest.Workspace, ids[0], tc.cause(j.ID), ledger.Restore, ledger.TransitionInput{}); err != nil {
				t.Fatal(err)
			}
			got, err := e.Svc.RunRestoreJob(ctx, ledgertest.Workspace, j.ID, ledger.JobOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.State != job.StateSucceeded || got.Restored != 2 || len(got.Failures) != 0 {
				t.Fatalf("job: state %s, restored %d, failures %v; want succeeded, 2, none", got.State, got.Restored, got.Failures)
			}
			for _, id := range ids {
				if n := countType(t, e, id, contact.TypeRestored); n != 1 {
					t.Errorf("%s has %d restores; want 1", id, n)
				}
			}
		})
	}
}

// TestRestoreJobCancelled cancels a queued job: it ends cancelled without
// restoring anything, a second cancel is refused as finished, and the
// contacts stay in trash.
func TestRestoreJobCancelled(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	ids := trashed(t, e, "req-t", 3)
	j, err := e.Svc.StartRestoreJob(ctx, ledgertest.Workspace, ledgertest.Meta("req-job"), ledger.RestoreFilter{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.Svc.CancelRestoreJob(ctx, ledgertest.Workspace, j.ID, ledgertest.Meta("req-cancel"))
	if err != nil || !c.CancelRequested {
		t.Fatalf("cancel: %v, requested %v", err, c != nil && c.CancelRequested)
	}
	if again, err := e.Svc.CancelRestoreJob(ctx, ledgertest.Workspace, j.ID, ledgertest.Meta("req-cancel-2")); err != nil || !again.CancelRequested {
		t.Fatalf("a second cancel of a running job: %v", err)
	}
	got, err := e.Svc.RunRestoreJob(ctx, ledgertest.Workspace, j.ID, ledger.JobOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != job.StateCancelled || got.Restored != 0 {
		t.Fatalf("job: state %s, restored %d; want cancelled, 0", got.State, got.Restored)
	}
	if _, err := e.Svc.CancelRestoreJob(ctx, ledgertest.Workspace, j.ID, ledgertest.Meta("req-cancel-3")); !errors.Is(err, ledger.ErrJobFinished) {
		t.Fatalf("cancelling an ended job: %v; want ErrJobFinished", err)
	}
	if trash := e.ViewIDs(t, "trash"); !containsAll(trash, ids) {
		t.Fatalf("trash after a cancelled job: %v; want %v", trash, ids)
	}
}

// TestRestoreJobRefusals lists what StartRestoreJob refuses, each leaving
// the log as it was.
func TestRestoreJobRefusals(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	trashed(t, e, "req-t", 2)
	running, err := e.Svc.StartRestoreJob(ctx, ledgertest.Workspace, ledgertest.Meta("req-first"), ledger.RestoreFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.SetPolicy(ctx, ledgertest.Workspace, contact.PolicySettings{RetentionDays: 30, RestoreRole: kernel.RoleAdmin, PurgeAllowed: true}); err != nil {
		t.Fatal(err)
	}
	member := ledger.Meta{Actor: kernel.Actor{Principal: "tok_member", Role: kernel.RoleMember}, CorrelationID: "req-m"}
	for _, tc := range []struct {
		name string
		meta ledger.Meta
		f    ledger.RestoreFilter
		want error
	}{
		{"a reason holding an email", ledgertest.Meta("r1"), ledger.RestoreFilter{Reason: "asked by ann@example.com"}, kernel.ErrInvalid},
		{"a malformed operation", ledgertest.Meta("r2"), ledger.RestoreFilter{Operation: "bulk:has spaces"}, kernel.ErrInvalid},
		{"a member when only admins restore", member, ledger.RestoreFilter{}, kernel.ErrRoleNotAllowed},
		{"a second job while one is queued", ledgertest.Meta("r3"), ledger.RestoreFilter{}, ledger.ErrJobRunning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head, _ := e.Events.Head(ctx)
			_, err := e.Svc.StartRestoreJob(ctx, ledgertest.Workspace, tc.meta, tc.f)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v; want %v", err, tc.want)
			}
			if tc.want == ledger.ErrJobRunning {
				var jr *ledger.JobRunningError
				if !errors.As(err, &jr) || jr.Job != running.ID {
					t.Fatalf("got %v; want a JobRunningError naming %s", err, running.ID)
				}
				return // its own stream ends as not admitted: the log grows
			}
			if after, _ := e.Events.Head(ctx); after != head {
				t.Fatalf("the log moved from %v to %v", head, after)
			}
			if _, err := e.Svc.PreviewRestoreJob(ctx, ledgertest.Workspace, tc.meta, tc.f); !errors.Is(err, tc.want) {
				t.Fatalf("dry run: got %v; want %v", err, tc.want)
			}
		})
	}
	for _, id := range []string{"not-a-job", "01ARZ3NDEKTSV4RRFFQ69G5FAV"} {
		if _, err := e.Svc.RestoreJob(ctx, ledgertest.Workspace, id); !errors.Is(err, ledger.ErrJobNotFound) {
			t.Errorf("job %q: %v; want ErrJobNotFound", id, err)
		}
	}
}

// TestRestoreJobPreview asks what a job would do: the planned contacts,
// each restorable one counted OK and a purged-meanwhile one failed, with
// nothing written.
func TestRestoreJobPreview(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx := t.Context()
	ids := trashed(t, e, "req-t", 3)
	e.Move(t, ids[2], ledger.Purge)
	e.CaughtUp(t)
	head, _ := e.Events.Head(ctx)
	p, err := e.Svc.PreviewRestoreJob(ctx, ledgertest.Workspace, ledgertest.Meta("req-p"), ledger.RestoreFilter{Operation: "bulk:req-t"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 2 || p.OK != 2 || p.Failed != 0 || len(p.Items) != 2 || p.Truncated {
		t.Fatalf("preview: total %d ok %d failed %d items %d; want 2 2 0 2", p.Total, p.OK, p.Failed, len(p.Items))
	}
	for _, it := range p.Items {
		if !it.Result.DryRun || it.Result.Effect.To != contact.StateActive || it.Result.EventID != "" {
			t.Errorf("item %s: %+v; want a dry run to active with no event", it.ID, it.Result)
		}
	}
	if after, _ := e.Events.Head(ctx); after != head {
		t.Fatalf("a preview moved the log from %v to %v", head, after)
	}
}

// TestRestoreJobRunner runs the background runner: a queued job is taken
// up at once (woken by StartRestoreJob), throttled by Rate, and ends
// succeeded; the runner returns when its context ends.
func TestRestoreJobRunner(t *testing.T) {
	t.Parallel()
	e := ledgertest.New(t, ledgertest.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Svc.RunRestoreJobs(ctx, ledger.JobOptions{Rate: 500, Scan: 50 * time.Millisecond}) }()
	ids := trashed(t, e, "req-t", 4)
	j, err := e.Svc.StartRestoreJob(ctx, ledgertest.Workspace, ledgertest.Meta("req-job"), ledger.RestoreFilter{Reason: "undo"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := e.Svc.RestoreJob(ctx, ledgertest.Workspace, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State.Terminal() {
			if got.State != job.StateSucceeded || got.Restored != len(ids) {
				t.Fatalf("job: state %s, restored %d; want succeeded, %d", got.State, got.Restored, len(ids))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runner left the job %s", got.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if active := e.ViewIDs(t, "active"); !containsAll(active, ids) {
		t.Fatalf("active after the job: %v; want %v", active, ids)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("runner returned %v; want context.Canceled", err)
	}
}
