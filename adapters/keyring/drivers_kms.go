//go:build kms

package keyring

// The cloud key services, in release builds (go build -tags kms).
import (
	"context"

	"gocloud.dev/secrets"
	_ "gocloud.dev/secrets/awskms"        // awskms://
	_ "gocloud.dev/secrets/azurekeyvault" // azurekeyvault://
	_ "gocloud.dev/secrets/gcpkms"        // gcpkms://
	_ "gocloud.dev/secrets/hashivault"    // hashivault://
)

const cloudDrivers = true

// openServiceURL opens a key service through gocloud.dev/secrets, chosen by
// the URL's scheme.
func openServiceURL(ctx context.Context, u string) (keeper, error) {
	return secrets.OpenKeeper(ctx, u)
}
