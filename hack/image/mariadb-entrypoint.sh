#!/bin/sh
# stash-mariadb-entrypoint: the entrypoint of the MariaDB test image
# (localhost/stash-test/mariadb:10.11, built by `make image` from hack/image/mariadb.env).
#
# Contract:
#   MARIADB_DATADIR                  datadir (default /var/lib/mysql); must be writable
#   MARIADB_ROOT_PASSWORD            root's password, for root@localhost and root@'%'
#   MARIADB_ROOT_PASSWORD_FILE       ... or a file holding it (a mounted Secret key)
#   MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1  allows neither to be set
#   MARIADB_TMPDIR                   temporary tables (default /run/mysqld)
# It runs as the mysql user (uid/gid 999) or as root (then mariadbd drops to
# mysql itself). With a read-only root filesystem only the datadir and
# /run/mysqld (socket, temporary files) must be writable, e.g. emptyDirs.
# Arguments are appended to mariadbd's, so `--port=3307` overrides the port.
#
# A datadir without the mysql system schema is initialized first: the system
# tables, root's password, root@'%' with every privilege WITH GRANT OPTION,
# no anonymous users and no test database; a server on the socket only
# (--skip-networking) does this, so nothing can connect before the password
# is set. POSIX sh and no here-documents: dash and a read-only /tmp suffice.
# mariadb-install-db runs with --force: without it, it refuses when the
# host name does not resolve, which a container without /etc/hosts meets.
set -eu

datadir=${MARIADB_DATADIR:-/var/lib/mysql}
rundir=/run/mysqld
socket=$rundir/mysqld.sock
tmpdir=${MARIADB_TMPDIR:-$rundir}
export TMPDIR="$tmpdir"

log() { printf 'stash-mariadb-entrypoint: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# As root, mariadbd runs as mysql (it refuses root without --user); any
# other uid runs as itself, so the mounts must be writable by it.
user_arg=
if [ "$(id -u)" = 0 ]; then
	user_arg=--user=mysql
	mkdir -p "$datadir" "$rundir"
	chown mysql:mysql "$datadir" "$rundir"
fi
[ -w "$datadir" ] || die "datadir $datadir is not writable by uid $(id -u)"
[ -w "$rundir" ] || die "$rundir is not writable by uid $(id -u)"

# sql_string quotes $1 as an SQL string literal's content.
sql_string() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g"; }

root_password() {
	if [ -n "${MARIADB_ROOT_PASSWORD_FILE:-}" ]; then
		[ -r "$MARIADB_ROOT_PASSWORD_FILE" ] || die "MARIADB_ROOT_PASSWORD_FILE=$MARIADB_ROOT_PASSWORD_FILE is not readable"
		cat "$MARIADB_ROOT_PASSWORD_FILE" # $(...) drops the trailing newline
	elif [ -n "${MARIADB_ROOT_PASSWORD:-}" ]; then
		printf '%s' "$MARIADB_ROOT_PASSWORD"
	elif [ "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-}" = 1 ]; then
		:
	else
		die "set MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_FILE or MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1"
	fi
}

initialize() {
	pw=$(sql_string "$(root_password)")
	log "initializing $datadir"
	mariadb-install-db --no-defaults --datadir="$datadir" $user_arg \
		--auth-root-authentication-method=normal --skip-test-db \
		--skip-name-resolve --force >&2 ||
		die "mariadb-install-db failed"
	mariadbd --no-defaults --datadir="$datadir" $user_arg --tmpdir="$tmpdir" \
		--skip-networking --skip-name-resolve --socket="$socket" &
	pid=$!
	i=0
	until mariadb-admin --no-defaults --socket="$socket" -uroot --connect-timeout=1 ping >/dev/null 2>&1; do
		kill -0 "$pid" 2>/dev/null || die "mariadbd exited during initialization"
		i=$((i + 1))
		[ "$i" -lt 120 ] || die "mariadbd did not answer on $socket within 60s"
		sleep 0.5
	done
	# root has no password until this runs, and answers on the socket only.
	# mariadb-install-db also made root@127.0.0.1, @::1 and @<hostname>
	# without a password, and anonymous users: only root@localhost stays.
	printf '%s\n' \
		"DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host <> 'localhost');" \
		"DELETE FROM mysql.proxies_priv WHERE User = 'root' AND Host <> 'localhost';" \
		"FLUSH PRIVILEGES;" \
		"ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';" \
		"CREATE USER 'root'@'%' IDENTIFIED BY '$pw';" \
		"GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;" |
		mariadb --no-defaults --socket="$socket" -uroot ||
		{ kill "$pid"; die "setting root's password failed"; }
	kill "$pid" # SIGTERM: a clean shutdown
	wait "$pid" || true
	log "initialized $datadir"
}

[ -d "$datadir/mysql" ] || initialize

exec mariadbd --no-defaults --datadir="$datadir" $user_arg --tmpdir="$tmpdir" \
	--skip-name-resolve --bind-address=0.0.0.0 --port=3306 --socket="$socket" "$@"
