package ledger

import (
	"errors"

	"github.com/contactledger/ledger/domain/kernel"
)

// retryConflicts runs attempt until it succeeds, fails otherwise than by a
// concurrency conflict, or has lost maxAttempts races. Each attempt must
// read afresh what it decides on: a conflict means another writer appended
// first, so the decision is taken again on the new state.
func retryConflicts(attempt func() error) error {
	for n := 1; ; n++ {
		err := attempt()
		if n < maxAttempts && errors.Is(err, kernel.ErrConcurrency) {
			continue
		}
		return err
	}
}
