package httpapi

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"net/http"

	"github.com/contactledger/ledger/ledger"
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

// PublicKeyJSON is the deployment's receipt-signing public key.
type PublicKeyJSON struct {
	Algorithm string `json:"algorithm"`
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"`
	PEM       string `json:"pem"`
}

// PublicKeyDoc describes a public key for publication.
func PublicKeyDoc(pub ed25519.PublicKey) (PublicKeyJSON, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return PublicKeyJSON{}, err
	}
	return PublicKeyJSON{Algorithm: "ed25519", KeyID: ledger.KeyID(pub), PublicKey: b64.EncodeToString(pub),
		PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}, nil
}

func (s *Server) receiptKey(c echo.Context) error {
	pub, err := s.svc.SigningPublicKey(c.Request().Context())
	if err != nil {
		return err
	}
	doc, err := PublicKeyDoc(pub)
	if err != nil {
		return err
	}
	return ok(c, http.StatusOK, doc)
}
