package storetest

import "testing"

// suiteCase is one named case of a contract suite, readable alone: run
// gets the harness and makes the stores it needs from it.
type suiteCase[H any] struct {
	name string
	run  func(t *testing.T, h H)
	// serial keeps the case out of the parallel run, for a check that holds
	// only while no other case is writing (a PostgreSQL stable head waits
	// for every transaction in flight on the server, whatever its database).
	serial bool
}

// runCases runs each case as a subtest, in parallel with the others unless
// it is serial: every case makes its own store (or, on a shared log, keeps
// to streams of its own), so cases cannot see each other's data.
func runCases[H any](t *testing.T, h H, cases []suiteCase[H]) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !c.serial {
				t.Parallel()
			}
			c.run(t, h)
		})
	}
}
