package wire

import (
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
)

// TokenJSON is a token as admins see it: never its secret or hash.
type TokenJSON struct {
	ID        string      `json:"id"`
	Workspace string      `json:"workspace"`
	Role      kernel.Role `json:"role"`
	Label     string      `json:"label,omitempty"`
	CreatedAt time.Time   `json:"created_at"`
	RevokedAt *time.Time  `json:"revoked_at,omitempty"`
	// Token is the secret, shown once, in the answer that creates it.
	Token string `json:"token,omitempty"`
}

// TokenOf is a token as the API (and `ledger tokens list --json`) shows it.
func TokenOf(t ledger.Token) TokenJSON {
	out := TokenJSON{ID: t.ID, Workspace: t.Workspace, Role: t.Role, Label: t.Label, CreatedAt: t.CreatedAt}
	if !t.RevokedAt.IsZero() {
		r := t.RevokedAt
		out.RevokedAt = &r
	}
	return out
}
