//go:build !kms

package keyring

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Without the kms build tag only local keys are compiled in.
const cloudDrivers = false

func openServiceURL(_ context.Context, u string) (keeper, error) {
	scheme, _, _ := strings.Cut(u, "://")
	scheme = strings.ToLower(scheme)
	if slices.Contains(cloudSchemes, scheme) {
		return nil, fmt.Errorf("%s: this binary was built without the cloud key services: build it with `make build` (go build -tags kms) or use the Docker image", scheme)
	}
	return nil, fmt.Errorf("no key service for the scheme %q: use base64key://, or in a release build awskms://, gcpkms://, azurekeyvault:// or hashivault://", scheme)
}
