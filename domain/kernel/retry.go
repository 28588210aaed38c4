package kernel

import (
	"errors"
	"slices"
)

// Retry runs attempt until it succeeds, fails with an error that is none
// of on (matched with errors.Is), or has run max times, and returns the
// last error. It is the one optimistic-retry loop of the code base: each
// attempt must read afresh what it decides on, since a conflict means
// another writer went first and the decision is taken again on the new
// state.
func Retry(max int, attempt func() error, on ...error) error {
	for n := 1; ; n++ {
		err := attempt()
		if err == nil || n >= max || !slices.ContainsFunc(on, func(e error) bool { return errors.Is(err, e) }) {
			return err
		}
	}
}
