package main_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/internal/pgtest"
	"github.com/contactledger/ledger/ledger"
)

// BenchmarkRebuild measures the rebuild rate of every view, in events per
// second, on a log of LEDGER_BENCH_EVENTS events (1,000,000 by default) that
// it writes first: contacts of ten events each (created, six updates and
// lifecycle moves), ending 70% active, 10% archived, 10% in trash, 5%
// anonymized and 5% purged. Run it with
//
//	go test -run '^$' -bench BenchmarkRebuild -benchtime 1x -timeout 1h ./cmd/ledger/
//
// (scripts/with-postgres.sh in front for the PostgreSQL half).
func BenchmarkRebuild(b *testing.B) {
	events := 1_000_000
	if v := os.Getenv("LEDGER_BENCH_EVENTS"); v != "" {
		events, _ = strconv.Atoi(v)
	}
	for _, store := range stores {
		b.Run(store, func(b *testing.B) {
			m := main.NewMain()
			m.Config.DataDir, m.Config.LogLevel, m.Config.KEKURL, m.Config.DatabaseURL = b.TempDir(), "error", "", ""
			if store == "postgres" {
				m.Config.DatabaseURL = pgtest.URL(b)
			}
			m.Stdout, m.Stderr = io.Discard, io.Discard
			ctx := context.Background()
			if err := m.Open(ctx); err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			if _, err := m.Svc.CreateWorkspace(ctx, "bench"); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			seed(b, m, events/10)
			b.Logf("%s: wrote %d events in %s", store, events, time.Since(start).Round(time.Second))
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				job, err := m.Runner.RunRebuild(ctx, "all", "requested", "bench", nil)
				if err != nil {
					b.Fatal(err)
				}
				secs := time.Since(t0).Seconds()
				b.ReportMetric(float64(job.EventsDone)/secs, "events/s")
				b.Logf("%s: rebuilt all views from %d events in %.1fs: %.0f events/s", store, job.EventsDone, secs, float64(job.EventsDone)/secs)
			}
		})
	}
}

// seed writes n contacts of ten events each through the domain, the vault
// and the log, as commands would, with eight writers.
func seed(b *testing.B, m *main.Main, n int) {
	ctx := context.Background()
	p := contact.DefaultPolicy()
	actor := kernel.Actor{Principal: "tok_bench", Role: kernel.RoleAdmin}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				if err := seedOne(ctx, m, i, p, actor); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}

func seedOne(ctx context.Context, m *main.Main, i int, p contact.Policy, actor kernel.Actor) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	id := contact.NewID()
	c, err := contact.Create(id, "bench", contact.Draft{
		Personal: contact.Personal{Name: fmt.Sprintf("Bench Person %d", i), Email: fmt.Sprintf("bench%d@example.com", i), Phone: fmt.Sprintf("+1 555 %07d", i)},
		Tags:     []string{fmt.Sprint("t", i%5)},
	}, actor, now)
	if err != nil {
		return err
	}
	for u := range 6 {
		title := fmt.Sprintf("Title %d", u)
		if err := c.Update(contact.Patch{JobTitle: &title}, actor, now); err != nil {
			return err
		}
	}
	er := contact.Erasure{Trigger: contact.TriggerRequest, KeyID: "dk_bench"}
	steps := []func() error{func() error { return c.Archive("", actor, now) }}
	switch k := i % 20; {
	case k < 14:
		steps = append(steps, func() error { return c.Unarchive("", actor, now) }, func() error {
			name := "Renamed"
			return c.Update(contact.Patch{Name: &name}, actor, now)
		})
	case k < 16:
		steps = append(steps, func() error { return c.Unarchive("", actor, now) }, func() error { return c.Archive("", actor, now) })
	case k < 18:
		steps = append(steps, func() error { return c.Unarchive("", actor, now) }, func() error { return c.Trash("", p, actor, now) })
	case k < 19:
		steps = append(steps, func() error { return c.Trash("", p, actor, now) }, func() error { return c.Anonymize(er, p, actor, now) })
	default:
		steps = append(steps, func() error { return c.Trash("", p, actor, now) }, func() error { return c.Purge(er, p, actor, now) })
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	k, keyID, err := m.Vault().NewContactKey(ctx, "bench", id, now)
	if err != nil {
		return err
	}
	recs, err := ledger.SealChanges(ledger.ContactKey{Key: k, KeyID: keyID}, id.Stream(), "bench", ledger.Meta{Actor: actor, CorrelationID: "bench"}, 0, nil, c.Changes())
	if err != nil {
		return err
	}
	if _, err := m.Events().Append(ctx, id.Stream(), 0, recs); err != nil {
		return err
	}
	if c.Tombstone() != nil {
		return m.Vault().Destroy(ctx, "bench", id)
	}
	return nil
}
