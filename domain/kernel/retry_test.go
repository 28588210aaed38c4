package kernel_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/contactledger/ledger/domain/kernel"
)

func TestRetry(t *testing.T) {
	other := errors.New("other")
	cases := []struct {
		name      string
		fails     []error // what each attempt returns, in order; nil after the end
		max       int
		wantRuns  int
		wantError error
	}{
		{"succeeds first", nil, 5, 1, nil},
		{"conflicts then succeeds", []error{kernel.ErrConcurrency, fmt.Errorf("wrapped: %w", kernel.ErrConcurrency)}, 5, 3, nil},
		{"gives up after max", []error{kernel.ErrConcurrency, kernel.ErrConcurrency, kernel.ErrConcurrency}, 3, 3, kernel.ErrConcurrency},
		{"another error stops at once", []error{other}, 5, 1, other},
		{"another error after a conflict", []error{kernel.ErrConcurrency, other}, 5, 2, other},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runs := 0
			err := kernel.Retry(c.max, func() error {
				runs++
				if runs <= len(c.fails) {
					return c.fails[runs-1]
				}
				return nil
			}, kernel.ErrConcurrency)
			if runs != c.wantRuns || !errors.Is(err, c.wantError) || (c.wantError == nil && err != nil) {
				t.Fatalf("ran %d times with %v, want %d times with %v", runs, err, c.wantRuns, c.wantError)
			}
		})
	}
}
