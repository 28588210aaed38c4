package ledger_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contactledger/ledger/adapters/keyring"
	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

// clock is a settable time for the tests of time limits.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sessionService is a service on a real embedded store with a workspace "ws".
func sessionService(t *testing.T) (*ledger.Service, *clock) {
	svc, c, _ := sessionServices(t)
	return svc, c
}

// sessionServices is sessionService and a second service on the same
// stores, as another process serving the same data would be.
func sessionServices(t *testing.T) (*ledger.Service, *clock, *ledger.Service) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys, err := keyring.OpenLocal(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	c := &clock{t: time.Now()}
	opts := ledger.Options{Events: db, Vault: ledger.NewVault(db, keys), Directory: db, Views: db, Identities: db,
		Sessions: db, Now: c.now}
	svc := ledger.New(opts)
	if _, err := svc.CreateWorkspace(ctx, "ws"); err != nil {
		t.Fatal(err)
	}
	return svc, c, ledger.New(opts)
}

// TestSessions walks a console session through each way it ends: idle,
// absolute age, sign-out and the token's revocation; each must refuse the
// cookie from then on.
func TestSessions(t *testing.T) {
	ctx := context.Background()
	times := ledger.SessionTimes{Idle: 10 * time.Minute, MaxAge: time.Hour}
	svc, c := sessionService(t)
	secret, tok, err := svc.CreateToken(ctx, "ws", kernel.RoleMember, "browser")
	if err != nil {
		t.Fatal(err)
	}
	refused := func(t *testing.T, value, why string) {
		t.Helper()
		if _, err := svc.ResumeSession(ctx, value, times); !errors.Is(err, ledger.ErrUnauthorized) {
			t.Fatalf("%s: resume got %v, want ErrUnauthorized", why, err)
		}
	}
	start := func(t *testing.T) string {
		t.Helper()
		v, p, err := svc.StartSession(ctx, secret, times)
		if err != nil || p.TokenID != tok.ID || p.Role != kernel.RoleMember || p.Workspace != "ws" {
			t.Fatalf("start: got %+v %v", p, err)
		}
		if strings.Contains(v, secret) {
			t.Fatal("the session's cookie holds the API token")
		}
		return v
	}
	if _, _, err := svc.StartSession(ctx, "lgr_not-a-token", times); !errors.Is(err, ledger.ErrUnauthorized) {
		t.Fatalf("sign-in with a bad token: got %v, want ErrUnauthorized", err)
	}

	t.Run("idle", func(t *testing.T) {
		v := start(t)
		for range 5 { // used every 9 minutes, it lives past the idle limit
			c.add(9 * time.Minute)
			if p, err := svc.ResumeSession(ctx, v, times); err != nil || p.TokenID != tok.ID {
				t.Fatalf("resume after 9 minutes of use: %+v %v", p, err)
			}
		}
		c.add(11 * time.Minute)
		refused(t, v, "after 11 idle minutes")
	})
	t.Run("max age", func(t *testing.T) {
		v := start(t)
		for range 6 {
			c.add(9 * time.Minute)
			if _, err := svc.ResumeSession(ctx, v, times); err != nil {
				t.Fatal(err)
			}
		}
		c.add(7 * time.Minute)
		refused(t, v, "an hour after sign-in")
	})
	t.Run("sign-out", func(t *testing.T) {
		v, other := start(t), start(t)
		if err := svc.EndSession(ctx, v); err != nil {
			t.Fatal(err)
		}
		refused(t, v, "after sign-out")
		if _, err := svc.ResumeSession(ctx, other, times); err != nil {
			t.Fatalf("signing out one session ended another: %v", err)
		}
	})
	t.Run("forged", func(t *testing.T) {
		v := start(t)
		// One character of the secret changed, to a different one (the
		// last character, which holds 4 bits, was "A" one time in 16).
		changed := []byte(v)
		changed[10] = map[bool]byte{true: 'B', false: 'A'}[changed[10] == 'A']
		refused(t, string(changed), "a changed secret")
		refused(t, "", "no cookie")
		refused(t, secret, "the API token as cookie")
	})
	t.Run("csrf", func(t *testing.T) {
		v, other := start(t), start(t)
		tokn := ledger.SessionCSRF(v)
		if !ledger.CheckSessionCSRF(v, tokn) || ledger.CheckSessionCSRF(other, tokn) || ledger.CheckSessionCSRF(v, "") || ledger.CheckSessionCSRF("", ledger.SessionCSRF("")) {
			t.Fatal("a CSRF token must be its own session's and no other")
		}
	})
	t.Run("revoked token", func(t *testing.T) {
		v := start(t)
		if _, err := svc.RevokeWorkspaceToken(ctx, "ws", tok.ID); err != nil {
			t.Fatal(err)
		}
		refused(t, v, "after the token's revocation")
		if _, _, err := svc.StartSession(ctx, secret, times); !errors.Is(err, ledger.ErrUnauthorized) {
			t.Fatalf("sign-in with a revoked token: got %v", err)
		}
	})
}

// TestSessionAfterRevocationElsewhere checks that a token revoked by
// another process cannot sign in, even while this process still holds
// it in its token cache.
func TestSessionAfterRevocationElsewhere(t *testing.T) {
	ctx := context.Background()
	svc, _, other := sessionServices(t)
	secret, tok, err := svc.CreateToken(ctx, "ws", kernel.RoleAdmin, "browser")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, secret); err != nil { // now in svc's cache
		t.Fatal(err)
	}
	if _, err := other.RevokeWorkspaceToken(ctx, "ws", tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.StartSession(ctx, secret, ledger.SessionTimes{}); !errors.Is(err, ledger.ErrUnauthorized) {
		t.Fatalf("sign-in with a token another process revoked: got %v, want ErrUnauthorized", err)
	}
}

// TestExpireSessions checks the sweep deletes ended sessions and keeps live ones.
func TestExpireSessions(t *testing.T) {
	ctx := context.Background()
	times := ledger.SessionTimes{Idle: 10 * time.Minute, MaxAge: time.Hour}
	svc, c := sessionService(t)
	secret, _, err := svc.CreateToken(ctx, "ws", kernel.RoleAdmin, "browser")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.StartSession(ctx, secret, times); err != nil {
		t.Fatal(err)
	}
	c.add(8 * time.Minute)
	live, _, _ := svc.StartSession(ctx, secret, times)
	c.add(3 * time.Minute)
	n, err := svc.ExpireSessions(ctx, times)
	if err != nil || n != 1 {
		t.Fatalf("expire: got %d %v, want 1", n, err)
	}
	if _, err := svc.ResumeSession(ctx, live, times); err != nil {
		t.Fatalf("a live session was swept: %v", err)
	}
}
