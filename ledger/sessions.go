package ledger

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
)

// Session is a browser's sign-in to the console with an API token. Only
// the SHA-256 hash of its secret (the cookie's value) is stored, so the
// table alone lets no one resume a session.
type Session struct {
	Hash      []byte
	TokenID   string
	Workspace string
	CreatedAt time.Time
	// SeenAt is when the session was last used (kept to the minute), for the idle timeout.
	SeenAt time.Time
	// ExpiresAt is the absolute end of the session, whatever its use.
	ExpiresAt time.Time
}

// SessionStore keeps console sessions.
type SessionStore interface {
	// CreateSession stores a new session.
	CreateSession(ctx context.Context, s Session) error
	// Session returns the session with this hash. Errors: kernel.ErrNotFound.
	Session(ctx context.Context, hash []byte) (Session, error)
	// TouchSession records that the session was used at.
	TouchSession(ctx context.Context, hash []byte, at time.Time) error
	// DeleteSession deletes a session; deleting an unknown one is no error.
	DeleteSession(ctx context.Context, hash []byte) error
	// ExpireSessions deletes the sessions past their absolute end at now or
	// unused since idleSince, and returns how many.
	ExpireSessions(ctx context.Context, now, idleSince time.Time) (int, error)
}

// SessionTimes bound a console session.
type SessionTimes struct {
	// Idle ends a session unused for this long (30 minutes when zero).
	Idle time.Duration
	// MaxAge ends a session this long after sign-in, whatever its use (12 hours when zero).
	MaxAge time.Duration
}

func (t SessionTimes) orDefaults() SessionTimes {
	if t.Idle <= 0 {
		t.Idle = 30 * time.Minute
	}
	if t.MaxAge <= 0 {
		t.MaxAge = 12 * time.Hour
	}
	return t
}

// sessionTouchEvery is how stale SeenAt may get before a use writes it
// again: the idle timeout is kept to this, and a page load is not a write.
const sessionTouchEvery = time.Minute

const sessionPrefix = "lcs_"

var errNoSessions = errors.New("this store keeps no console sessions")

// StartSession signs a browser in with an API token: it checks the token
// as Authenticate does and returns the new session's secret, which goes
// into the cookie and is never stored. Errors: ErrUnauthorized.
func (s *Access) StartSession(ctx context.Context, bearer string, times SessionTimes) (string, Principal, error) {
	if s.sessions == nil {
		return "", Principal{}, errNoSessions
	}
	p, err := s.Authenticate(ctx, strings.TrimSpace(bearer))
	if err != nil {
		return "", Principal{}, err
	}
	// A session is a new credential made from the token, like a token made
	// by a token: check past the token cache that it was not just revoked
	// by another process.
	if err := s.Recheck(ctx, p); err != nil {
		return "", Principal{}, err
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", Principal{}, fmt.Errorf("session secret: %w", err)
	}
	value := sessionPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	now, times := s.now(), times.orDefaults()
	err = s.sessions.CreateSession(ctx, Session{Hash: sessionHash(value), TokenID: p.TokenID, Workspace: p.Workspace,
		CreatedAt: now, SeenAt: now, ExpiresAt: now.Add(times.MaxAge)})
	if err != nil {
		return "", Principal{}, err
	}
	return value, p, nil
}

// ResumeSession returns the principal of a session's token: the session
// must exist, be within its idle and absolute limits, and its token must
// not be revoked (a revocation ends every session of the token, within the
// token cache's 2 s across processes). Errors: ErrUnauthorized.
func (s *Access) ResumeSession(ctx context.Context, value string, times SessionTimes) (Principal, error) {
	if s.sessions == nil || !validSession(value) {
		return Principal{}, ErrUnauthorized
	}
	hash := sessionHash(value)
	sess, err := s.sessions.Session(ctx, hash)
	if errors.Is(err, kernel.ErrNotFound) {
		return Principal{}, ErrUnauthorized
	}
	if err != nil {
		return Principal{}, err
	}
	now, times := s.now(), times.orDefaults()
	if !now.Before(sess.ExpiresAt) || !now.Before(sess.SeenAt.Add(times.Idle)) {
		if err := s.sessions.DeleteSession(ctx, hash); err != nil {
			return Principal{}, err
		}
		return Principal{}, ErrUnauthorized
	}
	t, err := s.tokens.get(ctx, sess.TokenID, s.dir.Token)
	if errors.Is(err, kernel.ErrNotFound) || (err == nil && (!t.RevokedAt.IsZero() || t.Workspace != sess.Workspace)) {
		if err := s.sessions.DeleteSession(ctx, hash); err != nil {
			return Principal{}, err
		}
		return Principal{}, ErrUnauthorized
	}
	if err != nil {
		return Principal{}, err
	}
	if now.Sub(sess.SeenAt) >= sessionTouchEvery {
		if err := s.sessions.TouchSession(ctx, hash, now); err != nil {
			return Principal{}, err
		}
	}
	return Principal{TokenID: t.ID, Workspace: t.Workspace, Role: t.Role}, nil
}

// EndSession signs a session out: it is deleted, so its cookie no longer
// resumes it anywhere.
func (s *Access) EndSession(ctx context.Context, value string) error {
	if s.sessions == nil || !validSession(value) {
		return nil
	}
	return s.sessions.DeleteSession(ctx, sessionHash(value))
}

// ExpireSessions deletes the sessions that can no longer be resumed.
func (s *Access) ExpireSessions(ctx context.Context, times SessionTimes) (int, error) {
	if s.sessions == nil {
		return 0, nil
	}
	now, times := s.now(), times.orDefaults()
	return s.sessions.ExpireSessions(ctx, now, now.Add(-times.Idle))
}

// SessionCSRF is the anti-forgery token of a session: an HMAC of a fixed
// label under the session's secret. A page holds it in its forms; another
// site can neither read the cookie nor the page, so it cannot make one.
func SessionCSRF(value string) string {
	m := hmac.New(sha256.New, []byte(value))
	m.Write([]byte("contact-ledger/console/csrf/v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckSessionCSRF reports whether token is the session's anti-forgery token, in constant time.
func CheckSessionCSRF(value, token string) bool {
	return value != "" && hmac.Equal([]byte(SessionCSRF(value)), []byte(token))
}

func validSession(value string) bool {
	rest, ok := strings.CutPrefix(value, sessionPrefix)
	if !ok || len(rest) != 43 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil && len(b) == 32
}

func sessionHash(value string) []byte {
	sum := sha256.Sum256([]byte(value))
	return sum[:]
}
