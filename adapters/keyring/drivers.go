package keyring

// The key services a --kek-url can name. The local one (base64key://) is
// always there; the cloud key services register their URL schemes with
// gocloud.dev/secrets in drivers_kms.go, built only with the kms build tag
// (release builds: `make build`, the Docker image), because their SDKs are
// about a gigabyte of modules that `make run` and `make test` don't need.
import (
	"fmt"
	"slices"
	"strings"

	_ "gocloud.dev/secrets/localsecrets" // base64key://
)

// cloudSchemes are the URL schemes of the key services in drivers_kms.go.
var cloudSchemes = []string{"awskms", "azurekeyvault", "gcpkms", "hashivault"}

// CloudKeyServices reports whether this binary was built with the cloud
// key services (the kms build tag).
func CloudKeyServices() bool { return cloudDrivers }

// withoutDriverHint explains a key service URL that names a cloud service
// this binary was built without.
func withoutDriverHint(url string, err error) error {
	scheme, _, ok := strings.Cut(url, "://")
	if cloudDrivers || !ok || !slices.Contains(cloudSchemes, strings.ToLower(scheme)) {
		return err
	}
	return fmt.Errorf("%w (this binary was built without the cloud key services: build it with `make build`, which adds -tags kms, or use the Docker image)", err)
}
