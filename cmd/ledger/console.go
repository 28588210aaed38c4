package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/contactledger/ledger/adapters/console"
	"github.com/contactledger/ledger/ledger"
)

// consoleTimes parses the console's session limits from the configuration.
func (m *Main) consoleTimes() (ledger.SessionTimes, error) {
	idle, err := time.ParseDuration(m.Config.ConsoleIdle)
	if err != nil || idle <= 0 {
		return ledger.SessionTimes{}, fmt.Errorf("console idle timeout %q: use a duration such as 30m", m.Config.ConsoleIdle)
	}
	maxAge, err := time.ParseDuration(m.Config.ConsoleMaxAge)
	if err != nil || maxAge <= 0 {
		return ledger.SessionTimes{}, fmt.Errorf("console session lifetime %q: use a duration such as 12h", m.Config.ConsoleMaxAge)
	}
	return ledger.SessionTimes{Idle: idle, MaxAge: maxAge}, nil
}

// withConsole serves the browser console at /console/ beside the API, on
// the same service and permission table.
func (m *Main) withConsole(api http.Handler, times ledger.SessionTimes) (http.Handler, error) {
	c, err := console.New(console.Options{
		Queries: m.Svc, Commands: m.Svc, Jobs: m.Svc, Compliance: m.Svc, Sessions: m.Svc, Projections: m.Runner, Webhooks: m.Svc,
		Logger: m.log, Times: times, TrustForwardedProto: m.Config.TrustForwardedProto,
	})
	if err != nil {
		return nil, err
	}
	m.Console = c
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/console":
			http.Redirect(w, r, console.Prefix, http.StatusMovedPermanently)
		case strings.HasPrefix(r.URL.Path, console.Prefix):
			c.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	}), nil
}

// expireSessions deletes ended console sessions every few minutes.
func (m *Main) expireSessions(ctx context.Context, times ledger.SessionTimes) {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		if n, err := m.access.ExpireSessions(ctx, times); err != nil && ctx.Err() == nil {
			m.log.Warn("expiring console sessions failed", "err", err)
		} else if n > 0 {
			m.log.Debug("expired console sessions", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
