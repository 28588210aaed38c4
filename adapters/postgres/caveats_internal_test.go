package postgres

import (
	"strings"
	"testing"
)

// TestErasureCaveats checks which server settings compact --full warns
// about: each one that keeps copies of erased rows, and none on a server
// set up as the README's operating notes say.
func TestErasureCaveats(t *testing.T) {
	good := map[string]string{"wal_recycle": "off", "wal_keep_size": "0", "archive_mode": "off"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, tc := range []struct {
		name     string
		settings map[string]string
		slots    int
		want     string
	}{
		{"as the README says", good, 0, ""},
		{"recycling", with("wal_recycle", "on"), 0, "wal_recycle is on"},
		{"keeping WAL", with("wal_keep_size", "512MB"), 0, "wal_keep_size is 512MB"},
		{"archiving", with("archive_mode", "on"), 0, "archive_mode is on"},
		{"slots", good, 2, "2 replication slots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := erasureCaveats(tc.settings, tc.slots)
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("got %q, want no caveat", got)
				}
				return
			}
			if len(got) != 1 || !strings.HasPrefix(got[0], tc.want) {
				t.Fatalf("got %q, want one caveat starting %q", got, tc.want)
			}
		})
	}
}
