#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target of the module for FUZZTIME each (default
# 60s) and prints one summary line per target. New inputs that crash a target
# are written to its testdata/fuzz directory, where `make test` replays them.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-60s}
status=0
while IFS=: read -r file _ decl; do
	target=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]+).*/\1/' <<<"$decl")
	pkg=$(dirname "$file")
	log=$(mktemp)
	if go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" >"$log" 2>&1; then
		result=ok
	else
		result=FAILED
		status=1
	fi
	execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
	printf '%-24s %-28s %-7s %s execs\n' "$target" "$pkg" "$result" "${execs:-?}"
	[[ $result == ok ]] || tail -20 "$log"
	rm -f "$log"
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' . | sort)
exit $status
