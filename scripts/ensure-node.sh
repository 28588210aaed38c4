#!/usr/bin/env bash
# ensure-node.sh makes sure Node.js and npm are there for the checks of the
# API description with a generated TypeScript client (TestGeneratedClient
# in cmd/ledger; the tools themselves are pinned in contract/package-lock.json
# and installed by the test with npm ci).
#
# As root, a missing Node.js is installed with apt-get (Debian's nodejs and
# npm), as scripts/with-postgres.sh does for PostgreSQL. Otherwise it only
# says what is missing: the test then skips, and fails under CI=true.
set -euo pipefail

if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
	exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
	echo "ensure-node.sh: installing Node.js and npm with apt-get" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq nodejs npm >/dev/null
	exit 0
fi
echo "ensure-node.sh: Node.js and npm are missing, so TestGeneratedClient will skip (and fail under CI=true); install nodejs and npm" >&2
