#!/usr/bin/env bash
# with-postgres.sh runs a command with a throwaway PostgreSQL server.
#
# Usage: scripts/with-postgres.sh CMD [ARGS...]
#
# If LEDGER_TEST_DATABASE_URL is already set, CMD is exec'd unchanged.
# Otherwise a fresh cluster is created in a temporary directory, started on a
# unix socket in that directory and on 127.0.0.1 with a free port, and CMD is
# run with these variables exported:
#
#   LEDGER_TEST_DATABASE_URL  postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable
#   LEDGER_TEST_PGDATA        the cluster's data directory
#   LEDGER_TEST_PGBIN         the directory holding initdb, pg_ctl and postgres
#
# The server is stopped and the temporary directory removed when the script
# exits, whatever the reason. The script exits with CMD's exit status.
#
# PostgreSQL refuses to run as root, so when run as root (as in CI) the
# cluster is owned by, and the server runs as, the "postgres" user (created
# if missing).
set -euo pipefail

prog=${0##*/}

die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 1
}

if [[ $# -eq 0 ]]; then
	printf 'usage: %s CMD [ARGS...]\n' "$prog" >&2
	exit 2
fi

if [[ -n ${LEDGER_TEST_DATABASE_URL:-} ]]; then
	exec "$@"
fi

is_root=false
[[ $(id -u) -eq 0 ]] && is_root=true

# has_server_bins DIR reports whether DIR holds the server binaries we need.
has_server_bins() {
	local b
	for b in initdb pg_ctl postgres; do
		[[ -x $1/$b ]] || return 1
	done
}

# find_pgbin prints the directory holding the PostgreSQL server binaries.
find_pgbin() {
	local d
	if has_server_bins /usr/lib/postgresql/15/bin; then
		echo /usr/lib/postgresql/15/bin
		return 0
	fi
	# Newest version first: Debian/Ubuntu, RHEL/Fedora (PGDG), Homebrew.
	while IFS= read -r d; do
		if has_server_bins "$d"; then
			echo "$d"
			return 0
		fi
	done < <(
		{
			compgen -G '/usr/lib/postgresql/*/bin' || true
			compgen -G '/usr/pgsql-*/bin' || true
			compgen -G '/opt/homebrew/opt/postgresql@*/bin' || true
			compgen -G '/usr/local/opt/postgresql@*/bin' || true
		} | awk '{ v = $0; sub(/^[^0-9]*/, "", v); print v "\t" $0 }' |
			sort -t. -k1,1nr -k2,2nr | cut -f2-
	)
	# PATH: initdb and pg_ctl are often only symlinks, postgres may not be on
	# PATH at all, so use the directory initdb really lives in.
	if d=$(command -v initdb 2>/dev/null); then
		d=$(dirname "$(readlink -f "$d" 2>/dev/null || echo "$d")")
		if has_server_bins "$d"; then
			echo "$d"
			return 0
		fi
	fi
	if d=$(command -v pg_config 2>/dev/null) && d=$(pg_config --bindir 2>/dev/null); then
		if has_server_bins "$d"; then
			echo "$d"
			return 0
		fi
	fi
	return 1
}

if ! pgbin=$(find_pgbin); then
	if $is_root && command -v apt-get >/dev/null 2>&1; then
		printf '%s: PostgreSQL server not found; installing it with apt-get\n' "$prog" >&2
		export DEBIAN_FRONTEND=noninteractive
		if ! apt-get install -y -qq postgresql >/dev/null 2>&1; then
			apt-get update -qq >/dev/null 2>&1 || true
			apt-get install -y -qq postgresql >/dev/null ||
				die "apt-get install postgresql failed"
		fi
	fi
	pgbin=$(find_pgbin) || {
		cat >&2 <<EOF
$prog: PostgreSQL server binaries (initdb, pg_ctl, postgres) not found.
Install PostgreSQL (15 preferred), then run this again:
  Debian/Ubuntu: sudo apt-get install postgresql
  macOS:         brew install postgresql@15
Or point the tests at an existing server by setting LEDGER_TEST_DATABASE_URL
to the URL of a superuser connection.
EOF
		exit 1
	}
fi

# as_pg runs a command as the user owning the cluster: postgres when we are
# root, ourselves otherwise. It runs from the temporary directory so that an
# unreadable working directory does not upset initdb or pg_ctl.
as_pg() {
	if $is_root; then
		if command -v runuser >/dev/null 2>&1; then
			(cd "$tmp" && runuser -u postgres -- "$@")
		else
			(cd "$tmp" && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
		fi
	else
		(cd "$tmp" && "$@")
	fi
}

if $is_root; then
	if ! id -u postgres >/dev/null 2>&1; then
		useradd --system --user-group --no-create-home \
			--home-dir /nonexistent --shell /usr/sbin/nologin postgres ||
			die "could not create the postgres user"
	fi
	# /tmp, not $TMPDIR: the postgres user must be able to reach it.
	tmp=$(mktemp -d /tmp/ledger-pg.XXXXXX)
else
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/ledger-pg.XXXXXX")
	# Unix socket paths are limited to about 100 bytes.
	if ((${#tmp} > 80)); then
		rmdir "$tmp"
		tmp=$(mktemp -d /tmp/ledger-pg.XXXXXX)
	fi
fi
pgdata=$tmp/data
pglog=$tmp/postgres.log

# shellcheck disable=SC2317 # invoked by the trap below
cleanup() {
	local status=$?
	trap - EXIT INT TERM HUP
	if [[ -f $pgdata/postmaster.pid ]]; then
		# Immediate: the cluster is thrown away, so skip the shutdown checkpoint.
		if ! as_pg "$pgbin/pg_ctl" -D "$pgdata" -m immediate -w -t 30 stop >/dev/null 2>&1; then
			# Last resort: pg_ctl could not stop it; kill the postmaster.
			local pid
			pid=$(head -n1 "$pgdata/postmaster.pid" 2>/dev/null || true)
			if [[ $pid =~ ^[0-9]+$ ]]; then
				kill -KILL "$pid" 2>/dev/null || true
			fi
		fi
	fi
	cd / && rm -rf -- "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

$is_root && chown postgres: "$tmp"

start=$(date +%s.%N 2>/dev/null || date +%s)

if ! as_pg "$pgbin/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 --locale=C \
	--no-sync >"$tmp/initdb.log" 2>&1; then
	cat "$tmp/initdb.log" >&2
	die "initdb failed"
fi

cat >>"$pgdata/postgresql.conf" <<EOF

# Settings for a throwaway test server (scripts/with-postgres.sh).
listen_addresses = '127.0.0.1'
unix_socket_directories = '$tmp'
max_connections = 300
shared_buffers = 32MB
fsync = on
log_min_messages = warning
log_line_prefix = '%m [%p] '
# What the README's operating notes ask of a server that keeps erased data
# out of its WAL: old segments are deleted, not renamed for reuse with their
# old bytes inside, and none are kept beyond what recovery needs.
wal_recycle = off
wal_keep_size = 0
EOF

# free_port prints a TCP port on 127.0.0.1 that nothing is listening on.
free_port() {
	local port i
	if port=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null) && [[ $port =~ ^[0-9]+$ ]]; then
		echo "$port"
		return 0
	fi
	for ((i = 0; i < 100; i++)); do
		port=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

started=false
for attempt in 1 2 3 4 5; do
	port=$(free_port) || die "could not find a free TCP port"
	rm -f "$pglog"
	if as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$pglog" -o "-p $port" -w -t 60 start >/dev/null 2>&1; then
		started=true
		break
	fi
	# Somebody took the port between our check and the server's bind: retry.
	grep -qi 'could not bind\|already in use' "$pglog" 2>/dev/null || break
done
if ! $started; then
	cat "$pglog" >&2 2>/dev/null || true
	die "could not start PostgreSQL (attempt $attempt, port $port)"
fi

if [[ -x $pgbin/pg_isready ]]; then
	for ((i = 0; i < 100; i++)); do
		"$pgbin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres && break
		sleep 0.1
	done
fi
end=$(date +%s.%N 2>/dev/null || date +%s)

version=$("$pgbin/postgres" --version 2>/dev/null | sed 's/^postgres (PostgreSQL) //')
elapsed=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }')
printf '%s: PostgreSQL %s on 127.0.0.1:%s (socket dir %s), started in %ss\n' \
	"$prog" "$version" "$port" "$tmp" "$elapsed" >&2

export LEDGER_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
export LEDGER_TEST_PGDATA=$pgdata
export LEDGER_TEST_PGBIN=$pgbin

# CMD runs in the foreground so that it owns the terminal and gets Ctrl-C
# itself; the traps above run once it has exited.
set +e
"$@"
status=$?
set -e
exit "$status"
