package job_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/contactledger/ledger/domain/job"
	"github.com/contactledger/ledger/domain/kernel"
)

func roundTrip(t *testing.T, e any) any {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := job.Decode(job.TypeOf(e), b)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestJobFold(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	j := &job.Job{ID: "J"}
	events := []any{
		job.Queued{Total: 4, By: kernel.Actor{Principal: "tok_a", Role: kernel.RoleAdmin}, Filter: job.Filter{Tag: "x", Query: true}},
		job.Planned{IDs: []string{"a", "b"}}, job.Planned{IDs: []string{"c", "d"}},
		job.Started{},
		job.Progressed{Restored: []string{"a"}, Failed: []job.Failure{{ID: "b", Reason: "contact is active"}}},
		// A resumed runner may report a contact again: it counts once.
		job.Started{Resumed: true},
		job.Progressed{Restored: []string{"a", "c"}},
		job.CancelRequested{},
	}
	for _, e := range events {
		if err := j.Apply(roundTrip(t, e), at); err != nil {
			t.Fatal(err)
		}
	}
	if j.State != job.StateRunning || j.Restored != 2 || len(j.Failures) != 1 || !j.CancelRequested || !slices.Equal(j.Pending(), []string{"d"}) || j.Version != 8 {
		t.Fatalf("folded job: %+v, pending %v", j, j.Pending())
	}
	if err := j.Apply(job.Cancelled{}, at); err != nil || j.State != job.StateCancelled || !j.State.Terminal() {
		t.Fatalf("cancel: %v %s", err, j.State)
	}
	if err := j.Apply(job.Progressed{Restored: []string{"d"}}, at); err == nil {
		t.Fatal("an event after the end was applied")
	}
	if err := (&job.Job{}).Apply(job.Started{}, at); err == nil {
		t.Fatal("a job started before it was queued")
	}
	if _, err := job.Decode("RestoreJobTeleported", []byte("{}")); err == nil {
		t.Fatal("an unknown event decoded")
	}
}

func TestLockAdmitsOneJob(t *testing.T) {
	var l job.Lock
	if err := l.Apply(job.Admitted{Job: "A"}); err != nil || l.Holder != "A" {
		t.Fatalf("admit: %v %+v", err, l)
	}
	if err := l.Apply(job.Admitted{Job: "B"}); err == nil {
		t.Fatal("a second job was admitted while the first holds the slot")
	}
	if err := l.Apply(job.Released{Job: "B"}); err == nil {
		t.Fatal("a job released a slot it does not hold")
	}
	if err := l.Apply(job.Released{Job: "A"}); err != nil || l.Holder != "" || l.Version != 2 {
		t.Fatalf("release: %v %+v", err, l)
	}
}
