package ledger

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/oklog/ulid/v2"
)

// ErrUnauthorized is returned for a missing, malformed, unknown or revoked token.
var ErrUnauthorized = &kernel.Error{Code: kernel.CodeUnauthorized, Reason: "unauthorized", Message: "a valid bearer token is required"}

var workspacePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidateWorkspaceName checks a workspace name: 1-63 characters of a-z, 0-9 and '-'.
func ValidateWorkspaceName(name string) error {
	if !workspacePattern.MatchString(name) {
		return kernel.Invalid(kernel.FieldError{Field: "workspace", Message: "is 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"})
	}
	return nil
}

// CreateWorkspace creates a workspace with the default policy and its blind-index key.
func (s *Access) CreateWorkspace(ctx context.Context, name string) (Workspace, error) {
	if err := ValidateWorkspaceName(name); err != nil {
		return Workspace{}, err
	}
	w := Workspace{Name: name, CreatedAt: s.now(), Policy: contact.DefaultPolicy()}
	if err := s.dir.CreateWorkspace(ctx, w); err != nil {
		return Workspace{}, err
	}
	if _, err := s.vault.BlindIndex(ctx, name); err != nil {
		return Workspace{}, err
	}
	return w, nil
}

// Principal is an authenticated caller: a token, its workspace and role.
type Principal struct {
	TokenID   string
	Workspace string
	Role      kernel.Role
}

// Actor returns the principal as the actor of events.
func (p Principal) Actor() kernel.Actor { return kernel.Actor{Principal: p.TokenID, Role: p.Role} }

const tokenPrefix = "lgr_"

// CreateToken creates a token for a workspace and returns its secret form,
// which is shown once: only its hash is stored.
func (s *Access) CreateToken(ctx context.Context, workspace string, role kernel.Role, label string) (string, Token, error) {
	if _, err := s.dir.Workspace(ctx, workspace); err != nil {
		return "", Token{}, err
	}
	if role == kernel.RoleSystem {
		return "", Token{}, kernel.Invalid(kernel.FieldError{Field: "role", Message: "must be member, admin, auditor or operator"})
	}
	if _, err := kernel.ParseRole(string(role)); err != nil {
		return "", Token{}, err
	}
	if len(label) > 100 {
		return "", Token{}, kernel.Invalid(kernel.FieldError{Field: "label", Message: "at most 100 characters"})
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", Token{}, fmt.Errorf("token secret: %w", err)
	}
	id := ulid.Make().String()
	sum := sha256.Sum256(secret[:])
	t := Token{ID: "tok_" + id, Workspace: workspace, Role: role, Hash: sum[:], Label: label, CreatedAt: s.now()}
	if err := s.dir.CreateToken(ctx, t); err != nil {
		return "", Token{}, err
	}
	return tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret[:]), t, nil
}

// Authenticate checks a bearer token: well formed, known, not revoked, and
// its secret's hash equal (in constant time) to the stored one.
func (s *Access) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	id, secret, ok := parseSecret(bearer)
	if !ok {
		return Principal{}, ErrUnauthorized
	}
	t, err := s.tokens.get(ctx, id, s.dir.Token)
	if errors.Is(err, kernel.ErrNotFound) {
		return Principal{}, ErrUnauthorized
	}
	if err != nil {
		return Principal{}, err
	}
	sum := sha256.Sum256(secret)
	if subtle.ConstantTimeCompare(sum[:], t.Hash) != 1 || !t.RevokedAt.IsZero() {
		return Principal{}, ErrUnauthorized
	}
	return Principal{TokenID: t.ID, Workspace: t.Workspace, Role: t.Role}, nil
}

// parseSecret splits a token's secret form, lgr_<ULID>_<secret>, into the
// token's id (tok_<ULID>) and its secret bytes.
func parseSecret(bearer string) (string, []byte, bool) {
	rest, ok := strings.CutPrefix(bearer, tokenPrefix)
	if !ok || len(rest) != 26+1+43 || rest[26] != '_' {
		return "", nil, false
	}
	id, enc := rest[:26], rest[27:]
	if _, err := ulid.ParseStrict(id); err != nil {
		return "", nil, false
	}
	secret, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(secret) != 32 {
		return "", nil, false
	}
	return "tok_" + id, secret, true
}

// FindToken finds a token by its id (tok_<ULID>, or the bare ULID) or by
// its secret (lgr_..., as a leaked one would be found), whether or not it
// is revoked. A secret must be the token's own: one whose id exists but
// whose secret does not match is refused, so a typo revokes nothing.
func (s *Access) FindToken(ctx context.Context, idOrSecret string) (Token, error) {
	notFound := kernel.Errorf(kernel.ErrNotFound, "no such token: give its id (tok_...) or its secret (lgr_...)")
	if strings.HasPrefix(idOrSecret, tokenPrefix) {
		id, secret, ok := parseSecret(idOrSecret)
		if !ok {
			return Token{}, notFound
		}
		t, err := s.dir.Token(ctx, id)
		if err != nil {
			return Token{}, notFound
		}
		sum := sha256.Sum256(secret)
		if subtle.ConstantTimeCompare(sum[:], t.Hash) != 1 {
			return Token{}, notFound
		}
		return t, nil
	}
	id := strings.TrimPrefix(idOrSecret, "tok_")
	if _, err := ulid.ParseStrict(id); err != nil {
		return Token{}, notFound
	}
	t, err := s.dir.Token(ctx, "tok_"+id)
	if err != nil {
		return Token{}, notFound
	}
	return t, nil
}

// Recheck checks again, past the token cache, that the principal's token
// is still valid: changes to tokens and policies call it, so a token
// revoked through another process cannot create tokens or change a policy
// during the cache's window (directoryTTL).
func (s *Access) Recheck(ctx context.Context, p Principal) error {
	t, err := s.dir.Token(ctx, p.TokenID)
	if errors.Is(err, kernel.ErrNotFound) {
		return ErrUnauthorized
	}
	if err != nil {
		return err
	}
	if !t.RevokedAt.IsZero() || t.Workspace != p.Workspace || t.Role != p.Role {
		s.tokens.forget(p.TokenID)
		return ErrUnauthorized
	}
	return nil
}

// RevokeToken revokes a token; requests with it fail from then on.
func (s *Access) RevokeToken(ctx context.Context, id string) error {
	defer s.tokens.forget(id)
	return s.dir.RevokeToken(ctx, id, time.Now().UTC())
}

// RevokeWorkspaceToken revokes a token of the given workspace; a token of
// another workspace is not found, exactly like an unknown one.
func (s *Access) RevokeWorkspaceToken(ctx context.Context, workspace, id string) (Token, error) {
	t, err := s.dir.Token(ctx, id)
	if err != nil || t.Workspace != workspace {
		return Token{}, kernel.Errorf(kernel.ErrNotFound, "token not found")
	}
	defer s.tokens.forget(id)
	if err := s.dir.RevokeToken(ctx, id, s.now()); err != nil {
		return Token{}, err
	}
	return s.dir.Token(ctx, id)
}

// Tokens lists a workspace's tokens (never their secrets).
func (s *Access) Tokens(ctx context.Context, workspace string) ([]Token, error) {
	return s.dir.Tokens(ctx, workspace)
}

// orphanAge is how old a key without a stream must be to count as the
// leftover of a create that died between storing the key and appending:
// a younger one may belong to a create still running.
const orphanAge = time.Hour

// RotateKeys re-wraps every live key under the active key-encryption key
// (see Vault.Rotate) and destroys the keys of contacts that never came to
// be: a create that died after storing its key but before appending its
// first event leaves a key nothing will ever read. progress, when set, is
// told how many keys were handled so far.
func (s *Access) RotateKeys(ctx context.Context, store KeyRewrapper, progress func(done int)) (rewrapped, removed int, err error) {
	return s.vault.Rotate(ctx, store, s.orphanKeys, progress)
}

// orphanKeys returns the owners among rows that are contacts' keys without
// a stream, older than orphanAge.
func (s *Access) orphanKeys(ctx context.Context, rows []KeyRow) (map[string]bool, error) {
	byWS := map[string][]string{}
	for _, r := range rows {
		if _, err := contact.ParseID(r.Owner); err != nil || s.now().Sub(r.CreatedAt) < orphanAge {
			continue // not a contact's key, or too young to judge
		}
		byWS[r.Workspace] = append(byWS[r.Workspace], r.Owner)
	}
	out := map[string]bool{}
	for ws, owners := range byWS {
		streams := make([]string, len(owners))
		for i, o := range owners {
			id, _ := contact.ParseID(o)
			streams[i] = id.Stream()
		}
		found, err := kernel.ReadStreams(ctx, s.events, ws, streams)
		if err != nil {
			return nil, err
		}
		for i, o := range owners {
			if _, ok := found[streams[i]]; !ok {
				out[o] = true
			}
		}
	}
	return out, nil
}
