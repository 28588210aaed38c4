package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"time"
)

// consoleBench measures the server time of the console's trash page (the
// Deleted Contacts view of the articles, 50 rows rendered as HTML) beside
// the API's trash list query of the same page, measured in the same run,
// alternately, so both see the same machine.
func (b *bench) consoleBench(ctx context.Context, s *server, d dataset, store string) error {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return err
	}
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := client.PostForm(s.base+"/console/sign-in", url.Values{"token": {s.token}})
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/console/contacts" {
		return fmt.Errorf("console sign-in: %d at %s", resp.StatusCode, resp.Request.URL.Path)
	}
	day := d.start.Format(time.DateOnly)
	after := url.QueryEscape(time.Date(d.start.Year(), d.start.Month(), d.start.Day(), 0, 0, 0, 0, time.UTC).Format(time.RFC3339))
	page := func() error {
		resp, err := client.Get(s.base + "/console/contacts?view=trash&deleted_from=" + day)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && (resp.StatusCode != 200 || strings.Count(string(body), `class="row-select"`) != 50) {
			err = fmt.Errorf("console trash page: %d, %d rows", resp.StatusCode, strings.Count(string(body), `class="row-select"`))
		}
		return err
	}
	api := func() error {
		st, err := s.call(ctx, "GET", "/v1/contacts?view=trash&limit=50&deleted_after="+after, nil, nil)
		if err == nil && st != 200 {
			err = fmt.Errorf("trash page: %d", st)
		}
		return err
	}
	var consoleTimes, apiTimes []time.Duration
	for range 1000 {
		for _, m := range []struct {
			f   func() error
			out *[]time.Duration
		}{{page, &consoleTimes}, {api, &apiTimes}} {
			t0 := time.Now()
			if err := m.f(); err != nil {
				return err
			}
			*m.out = append(*m.out, time.Since(t0))
		}
	}
	p := func(ds []time.Duration, q float64) float64 {
		slices.Sort(ds)
		return float64(ds[int(q*float64(len(ds)-1))]) / float64(time.Millisecond)
	}
	apiP99 := p(apiTimes, 0.99)
	b.report(figure{Name: "console.trash-page.p50", Store: store, Value: p(consoleTimes, 0.50), Unit: "ms", BaselineName: "API trash list p50"}, p(apiTimes, 0.50), false, 0)
	b.report(figure{Name: "console.trash-page.p99", Store: store, Value: p(consoleTimes, 0.99), Unit: "ms", BaselineName: "API trash list p99", Target: "<50ms"}, apiP99, false, 50)
	return nil
}
