package httpapi

import (
	"net/http"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/labstack/echo/v4"
)

// erasureReceipt answers the signed erasure receipt of a purged or
// anonymized contact, byte for byte as it must be kept to verify.
func (s *Server) erasureReceipt(c echo.Context) error {
	id, err := contactID(c)
	if err != nil {
		return err
	}
	doc, err := s.svc.ErasureReceipt(c.Request().Context(), principal(c).Workspace, id)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Content-Disposition", `attachment; filename="erasure-receipt-`+id.String()+`.json"`)
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, doc)
}

func (s *Server) receiptKey(c echo.Context) error {
	pub, err := s.svc.SigningPublicKey(c.Request().Context())
	if err != nil {
		return err
	}
	doc, err := wire.PublicKeyDoc(pub)
	if err != nil {
		return err
	}
	return ok(c, http.StatusOK, doc)
}
