package keyring

// The key services a --kek-url can name. Each registers its URL scheme with
// gocloud.dev/secrets.
import (
	_ "gocloud.dev/secrets/awskms"        // awskms://
	_ "gocloud.dev/secrets/azurekeyvault" // azurekeyvault://
	_ "gocloud.dev/secrets/gcpkms"        // gcpkms://
	_ "gocloud.dev/secrets/hashivault"    // hashivault://
	_ "gocloud.dev/secrets/localsecrets"  // base64key://
)
