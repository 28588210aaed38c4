package wire

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"

	"github.com/contactledger/ledger/ledger"
)

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
