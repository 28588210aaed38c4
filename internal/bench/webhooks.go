package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/contactledger/ledger/ledger"
)

// benchReceiver is a webhook receiver on 127.0.0.1 for the bench: it
// counts deliveries and, while lags is on, records how long after its
// event's time each arrived.
type benchReceiver struct {
	srv   *http.Server
	url   string
	count atomic.Int64
	mu    sync.Mutex
	lags  []time.Duration
	track atomic.Bool
}

func newBenchReceiver() (*benchReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &benchReceiver{url: "http://" + ln.Addr().String() + "/hook"}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

var occurredAt = []byte(`"occurred_at":"`)

func (r *benchReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	now := time.Now()
	if r.track.Load() {
		if i := bytes.Index(body, occurredAt); i >= 0 {
			rest := body[i+len(occurredAt):]
			if j := bytes.IndexByte(rest, '"'); j > 0 {
				if at, err := time.Parse(time.RFC3339Nano, string(rest[:j])); err == nil {
					r.mu.Lock()
					r.lags = append(r.lags, max(0, now.Sub(at)))
					r.mu.Unlock()
				}
			}
		}
	}
	r.count.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

func (r *benchReceiver) close() { r.srv.Close() }

// percentiles returns the 50th and 99th percentiles of ds, in milliseconds.
func percentiles(ds []time.Duration) (float64, float64) {
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	at := func(p float64) float64 {
		return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))].Microseconds()) / 1000
	}
	return at(0.50), at(0.99)
}

// rawPosts is the baseline of the webhook figures: plain HTTP POSTs of
// body to the same receiver, from workers goroutines, n in all, with no
// ledger in between. It returns POSTs per second.
func rawPosts(ctx context.Context, target string, body []byte, workers, n int) (float64, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	var next atomic.Int64
	var wg sync.WaitGroup
	var ferr atomic.Pointer[error]
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				if err := post(ctx, client, target, body); err != nil {
					ferr.Store(&err)
					return
				}
			}
		})
	}
	wg.Wait()
	if e := ferr.Load(); e != nil {
		return 0, *e
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func post(ctx context.Context, client *http.Client, target string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

// paced runs op about rate times a second for d, each call on a goroutine
// of a pool (so a slow call does not slow the pace), and returns the rate
// it achieved.
func paced(ctx context.Context, rate int, d time.Duration, op func(ctx context.Context, i int) error) (float64, error) {
	jobs := make(chan int, 4*rate)
	var wg sync.WaitGroup
	var done atomic.Int64
	var ferr atomic.Pointer[error]
	for range 64 {
		wg.Go(func() {
			for i := range jobs {
				if err := op(ctx, i); err != nil {
					ferr.Store(&err)
					continue
				}
				done.Add(1)
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	sent := 0
	for time.Since(start) < d && ctx.Err() == nil {
		<-tick.C
		// Catch up after a late tick, so the pace holds on average.
		for due := int(time.Since(start).Seconds() * float64(rate)); sent < due; sent++ {
			jobs <- sent
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	if e := ferr.Load(); e != nil {
		return 0, *e
	}
	return float64(done.Load()) / time.Since(start).Seconds(), nil
}

// webhookBench measures, on a `ledger serve` process, deliveries per second
// to a receiver on 127.0.0.1 (a backlog replayed to one subscription) beside
// raw HTTP POSTs to the same receiver, and the lag from each event's time
// (taken just before its append) to its arrival while clients send 1,000
// commands a second, beside the latency of a raw POST to the receiver at
// the same pace.
func (b *bench) webhookBench(ctx context.Context, store string) error {
	n := max(5_000, b.opts.contacts/20)
	e, err := b.newEnv(ctx, store)
	if err != nil {
		return err
	}
	defer e.drop()
	rc, err := newBenchReceiver()
	if err != nil {
		return err
	}
	defer rc.close()

	// A backlog of n events, written through the port (a creation each).
	b.logf("%s: webhooks: writing %d events", store, n)
	m, err := e.open(ctx)
	if err != nil {
		return err
	}
	if err := m.Bootstrap(ctx); err != nil {
		m.Close()
		return err
	}
	key, _ := shred.NewDataKey()
	actor := kernel.Actor{Principal: "tok_bench", Role: kernel.RoleMember}
	var next atomic.Int64
	var sample []byte
	if _, err := measure(ctx, 8, time.Hour, func(ctx context.Context, w, i int) error {
		k := int(next.Add(1))
		if k > n {
			return errBenchDone
		}
		id := contact.NewID()
		c, err := contact.Create(id, "default", contact.Draft{Personal: contact.Personal{Name: fmt.Sprintf("Hook Person %d", k),
			Email: fmt.Sprintf("hook%d@example.com", k)}}, actor, time.Now())
		if err != nil {
			return err
		}
		recs, err := ledger.SealChanges(ledger.ContactKey{Key: key, KeyID: "dk_bench"}, id.Stream(), "default", ledger.Meta{Actor: actor, CorrelationID: "bench"}, 0, nil, c.Changes())
		if err != nil {
			return err
		}
		_, err = m.Log().Append(ctx, id.Stream(), 0, recs)
		return err
	}); err != nil && !errors.Is(err, errBenchDone) {
		m.Close()
		return err
	}
	if page, err := m.Feed(ctx, ledger.FeedQuery{Workspace: "default", Limit: 1}); err == nil && len(page.Events) > 0 {
		sample = page.Events[0].Body
	}
	m.Close()

	s, err := b.serve(ctx, e, "", "LEDGER_WEBHOOK_ALLOW=127.0.0.1/32")
	if err != nil {
		return err
	}
	defer s.stop()
	// The projections fold the backlog first: the figure is delivery's alone.
	if err := s.caughtUp(ctx); err != nil {
		return err
	}
	var hook struct{ ID string }
	if st, err := s.call(ctx, "POST", "/v1/webhooks", map[string]any{"url": rc.url}, &hook); err != nil || st != 201 {
		return fmt.Errorf("create a subscription: %d %v", st, err)
	}
	b.logf("%s: webhooks: delivering the backlog of %d events", store, n)
	start := time.Now()
	if st, err := s.call(ctx, "POST", "/v1/webhooks/"+hook.ID+"/replay", map[string]any{"after": "0"}, nil); err != nil || st != 200 {
		return fmt.Errorf("replay: %d %v", st, err)
	}
	if err := waitCount(ctx, rc, int64(n), 10*time.Minute); err != nil {
		return err
	}
	rate := float64(n) / time.Since(start).Seconds()
	b.logf("%s: webhooks: raw POSTs of the same body to the same receiver", store)
	raw, err := rawPosts(ctx, rc.url, sample, 64, n)
	if err != nil {
		return err
	}
	b.report(figure{Name: "webhooks.deliveries", Store: store, Value: rate, Unit: "deliveries/s", BaselineName: "raw HTTP POSTs to the same receiver, 64 at once", Target: ">=5000"},
		raw, true, 5000)

	// The lag under a steady load of 1,000 commands a second.
	d := max(5*time.Second, b.opts.duration)
	b.logf("%s: webhooks: lag while clients send 1,000 commands/s for %s", store, d)
	rc.count.Store(0)
	rc.track.Store(true)
	achieved, err := paced(ctx, 1000, d, func(ctx context.Context, i int) error {
		st, err := s.call(ctx, "POST", "/v1/contacts", map[string]any{"name": fmt.Sprintf("Lag Person %d", i)}, nil)
		if err == nil && st != 201 {
			err = fmt.Errorf("create: %d", st)
		}
		return err
	})
	if err != nil {
		return err
	}
	sent := int64(achieved*d.Seconds() + 0.5)
	if err := waitCount(ctx, rc, sent*99/100, time.Minute); err != nil {
		return err
	}
	time.Sleep(time.Second)
	rc.track.Store(false)
	rc.mu.Lock()
	p50, p99 := percentiles(rc.lags)
	rc.lags = nil
	rc.mu.Unlock()
	b.logf("%s: webhooks: raw POST latency at the same pace", store)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	var rawLat []time.Duration
	if _, err := paced(ctx, 1000, min(d, 5*time.Second), func(ctx context.Context, _ int) error {
		t := time.Now()
		err := post(ctx, client, rc.url, sample)
		mu.Lock()
		rawLat = append(rawLat, time.Since(t))
		mu.Unlock()
		return err
	}); err != nil {
		return err
	}
	r50, r99 := percentiles(rawLat)
	b.report(figure{Name: "webhooks.lag.p50", Store: store, Value: p50, Unit: fmt.Sprintf("ms at %.0f commands/s", achieved), BaselineName: "raw POST latency, same pace"},
		r50, false, 0)
	b.report(figure{Name: "webhooks.lag.p99", Store: store, Value: p99, Unit: fmt.Sprintf("ms at %.0f commands/s", achieved), BaselineName: "raw POST latency, same pace", Target: "<500"},
		r99, false, 500)
	return nil
}

// errBenchDone ends a measure loop that has done its count.
var errBenchDone = errors.New("done")

// waitCount waits until the receiver has counted want deliveries.
func waitCount(ctx context.Context, rc *benchReceiver, want int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for rc.count.Load() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("webhooks: %d of %d deliveries after %s", rc.count.Load(), want, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
