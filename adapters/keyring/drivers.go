package keyring

import (
	"context"
	"strings"
)

// The key services a --kek-url can name. base64key:// (a local key in the
// URL) is always there (local.go); the cloud key services come through
// gocloud.dev/secrets in drivers_kms.go, built only with the kms build tag
// (release builds: `make build`, the Docker image): their SDKs, and
// gocloud.dev itself, are about a gigabyte of modules that `make run` and
// `make test` don't need.

// cloudSchemes are the URL schemes of the key services in drivers_kms.go.
var cloudSchemes = []string{"awskms", "azurekeyvault", "gcpkms", "hashivault"}

// CloudKeyServices reports whether this binary was built with the cloud
// key services (the kms build tag).
func CloudKeyServices() bool { return cloudDrivers }

// openURL opens the keeper a key service URL names.
func openURL(ctx context.Context, u string) (keeper, error) {
	if kp, ok, err := openLocalURL(u); ok {
		return kp, err
	}
	return openServiceURL(ctx, u)
}

// cutScheme returns what follows scheme:// in u, if u has that scheme.
func cutScheme(u, scheme string) (string, bool) {
	s, rest, ok := strings.Cut(u, "://")
	if !ok || !strings.EqualFold(s, scheme) {
		return "", false
	}
	return rest, true
}
