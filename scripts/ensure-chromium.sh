#!/usr/bin/env bash
# ensure-chromium.sh makes sure a Chromium for the console's browser tests
# is on the machine: as root it installs Debian's chromium package with
# apt-get when none is found. Otherwise it only says so; the tests then
# skip, or fail under CI=true.
set -euo pipefail
for b in chromium chromium-browser google-chrome; do
	if command -v "$b" >/dev/null 2>&1; then
		exit 0
	fi
done
if [[ -n ${LEDGER_TEST_CHROMIUM:-} && -x ${LEDGER_TEST_CHROMIUM} ]]; then
	exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
	echo "ensure-chromium.sh: installing Debian's chromium package for the console's browser tests" >&2
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
	exit 0
fi
echo "ensure-chromium.sh: no Chromium found and cannot install it; the browser tests will skip (or fail under CI=true)" >&2
