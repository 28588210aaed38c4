package ledger

import (
	"github.com/contactledger/ledger/domain/kernel"
)

// retryConflicts runs attempt until it succeeds, fails otherwise than by a
// concurrency conflict, or has lost maxAttempts races (see kernel.Retry).
func retryConflicts(attempt func() error) error {
	return kernel.Retry(maxAttempts, attempt, kernel.ErrConcurrency)
}
