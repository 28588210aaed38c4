package httpapi

import (
	"net/http"
	"strings"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/labstack/echo/v4"
)

type tokenRequest struct {
	Role  string `json:"role"`
	Label string `json:"label"`
}

// secretAnswer marks an answer that holds a secret: it is never stored for
// idempotent replay.
const secretAnswer = "secret-answer"

func (s *Server) createToken(c echo.Context) error {
	var r tokenRequest
	if err := decode(c, &r, false); err != nil {
		return err
	}
	role, err := kernel.ParseRole(r.Role)
	if err != nil {
		return err
	}
	if err := s.svc.Recheck(c.Request().Context(), principal(c)); err != nil {
		return err
	}
	secret, t, err := s.svc.CreateToken(c.Request().Context(), principal(c).Workspace, role, strings.TrimSpace(r.Label))
	if err != nil {
		return err
	}
	c.Set(secretAnswer, true)
	out := wire.TokenOf(t)
	out.Token = secret
	c.Response().Header().Set("Location", "/v1/tokens/"+t.ID)
	return ok(c, http.StatusCreated, out)
}

func (s *Server) listTokens(c echo.Context) error {
	list, err := s.svc.Tokens(c.Request().Context(), principal(c).Workspace)
	if err != nil {
		return err
	}
	items := make([]wire.TokenJSON, 0, len(list))
	for _, t := range list {
		items = append(items, wire.TokenOf(t))
	}
	return ok(c, http.StatusOK, map[string]any{"items": items})
}

func (s *Server) revokeToken(c echo.Context) error {
	id := c.Param("id")
	if !strings.HasPrefix(id, "tok_") || len(id) != 30 {
		return badRequest("invalid-id", "not a valid token id (tok_ and a 26-character ULID)")
	}
	if err := s.svc.Recheck(c.Request().Context(), principal(c)); err != nil {
		return err
	}
	t, err := s.svc.RevokeWorkspaceToken(c.Request().Context(), principal(c).Workspace, id)
	if err != nil {
		return err
	}
	return ok(c, http.StatusOK, wire.TokenOf(t))
}
