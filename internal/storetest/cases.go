package storetest

import "testing"

// suiteCase is one named case of a contract suite, readable alone: run
// gets the harness and makes the stores it needs from it.
type suiteCase[H any] struct {
	name string
	run  func(t *testing.T, h H)
	// serial keeps the case out of the parallel run, for a check that holds
	// only while no other case is writing: PostgreSQL shows an event in the
	// log (ReadAll, the stable head) only once every older transaction on
	// the server has ended, whatever its database, so a case that reads the
	// log at once after appending would see other cases' writes hold it back.
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
