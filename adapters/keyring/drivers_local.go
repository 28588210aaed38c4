//go:build !kms

package keyring

// Without the kms build tag only the local key service is compiled in.
const cloudDrivers = false
