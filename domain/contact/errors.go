package contact

import (
	"github.com/contactledger/ledger/domain/kernel"
)

// The errors of the contact lifecycle and its policy. Compare with errors.Is;
// the errors every port shares are kernel's.
var (
	ErrPurged          = &kernel.Error{Code: kernel.CodeGone, Reason: "purged", Message: "contact was permanently deleted"}
	ErrNotEditable     = &kernel.Error{Code: kernel.CodeConflict, Reason: "not-editable", Message: "contact is not editable"}
	ErrTransition      = &kernel.Error{Code: kernel.CodeConflict, Reason: "invalid-transition", Message: "the lifecycle forbids this transition"}
	ErrProtectedSource = &kernel.Error{Code: kernel.CodeConflict, Reason: "protected-source", Message: "contacts from a protected source cannot be deleted"}
	ErrArchiveFirst    = &kernel.Error{Code: kernel.CodeConflict, Reason: "archive-required", Message: "the workspace policy requires archiving before trash"}
	ErrPurgeDisabled   = &kernel.Error{Code: kernel.CodeForbidden, Reason: "purge-disabled", Message: "the workspace policy does not allow permanent deletion"}
	ErrSpam            = &kernel.Error{Code: kernel.CodeConflict, Reason: "spam-identity", Message: "this email or phone is marked as spam in the workspace"}
)
