#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the database-station tests and `pht demo
# --sources mixed` (Debian's `postgresql` package; no Docker, no mock).
#
#   deploy/postgres.sh install        apt-get install postgresql when it is missing
#   deploy/postgres.sh start DIR      initdb into DIR/data, start a server that listens
#                                     on a unix socket in DIR only (no TCP), create the
#                                     database `pht`, the read-only role `pht_station`
#                                     and write DIR/admin.dsn and DIR/station.dsn (0600)
#   deploy/postgres.sh stop DIR       stop that server (DIR stays; remove it yourself)
#
# DIR must be short (a unix socket path holds at most 107 bytes): e.g. mktemp -d
# /tmp/phtpg-XXXXXX. As root the server runs as the `postgres` user (PostgreSQL refuses
# to run as root). Passwords are random (scram-sha-256 on the socket) and never on a
# command line (psql reads the admin password from a 0600 passfile). The station role
# has LOGIN, CONNECT on `pht` and, by default, no table: the loader
# (`pht synth --postgres`) grants it SELECT on the tables it creates. Its transactions
# are read-only by default (default_transaction_read_only = on).
#
# On failure the LAST stderr line is "postgres: <reason>".
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

die() {
    echo "postgres: $*" >&2
    exit 1
}

bindir() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [[ -n "$dir" && -x "$dir/initdb" ]] || return 1
    echo "$dir"
}

install() {
    if bindir >/dev/null; then return 0; fi
    [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed and this is not root: apt-get install postgresql"
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
        || die "apt-get install postgresql failed"
    # Debian starts a default cluster on install; the tests do not use it
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
            pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
        done
    fi
    bindir >/dev/null || die "postgresql installed but initdb not found"
}

as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir="$1"
    [[ -n "$dir" ]] || die "usage: postgres.sh start DIR"
    install
    local bin
    bin="$(bindir)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    (( ${#dir} < 90 )) || die "DIR '$dir' is too long for a unix socket; use mktemp -d /tmp/phtpg-XXXXXX"
    local admin_pw station_pw
    admin_pw="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
    station_pw="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
    umask 077
    printf '%s\n' "$admin_pw" >"$dir/.pwfile"
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "no 'postgres' user to run the server as"
        chown postgres "$dir" "$dir/.pwfile"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/.pwfile" \
        --auth-local=scram-sha-256 --auth-host=reject -E UTF8 --no-locale \
        >"$dir/initdb.log" 2>&1 || die "initdb failed (see $dir/initdb.log)"
    rm -f "$dir/.pwfile"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c port=5432 -c fsync=off" \
        start >/dev/null || die "the server did not start (see $dir/server.log)"
    # the password reaches psql through a passfile (0600), never its command line:
    # any local user can read a process's arguments (ps, /proc/PID/cmdline)
    printf '*:5432:*:postgres:%s\n' "$admin_pw" >"$dir/.pgpass"
    local admin="host=$dir port=5432 user=postgres"
    psql_admin() {
        PGPASSFILE="$dir/.pgpass" PGCONNECT_TIMEOUT=10 "$bin/psql" -X -q -v ON_ERROR_STOP=1 "$@"
    }
    psql_admin "$admin dbname=postgres" -c "CREATE DATABASE pht" \
        || die "cannot create the database pht"
    psql_admin "$admin dbname=pht" <<SQL || die "cannot create the role pht_station"
CREATE ROLE pht_station LOGIN PASSWORD '$station_pw' NOSUPERUSER NOCREATEDB NOCREATEROLE;
ALTER ROLE pht_station SET default_transaction_read_only = on;
REVOKE ALL ON DATABASE pht FROM PUBLIC;
GRANT CONNECT ON DATABASE pht TO pht_station;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
    rm -f "$dir/.pgpass"
    printf 'host=%s port=5432 dbname=pht user=postgres password=%s\n' "$dir" "$admin_pw" >"$dir/admin.dsn"
    printf 'host=%s port=5432 dbname=pht user=pht_station password=%s\n' "$dir" "$station_pw" >"$dir/station.dsn"
    chmod 600 "$dir/admin.dsn" "$dir/station.dsn"
    echo "$dir"
}

stop() {
    local dir="$1"
    # `pht demo --sources mixed` records its server folder in a file (db/cluster)
    if [[ -f "$dir" ]]; then dir="$(head -n 1 "$dir")"; fi
    if [[ ! -d "$dir/data" ]]; then
        echo "postgres.sh: no server folder at $dir (nothing stopped)" >&2
        return 0
    fi
    local bin
    bin="$(bindir)" || die "PostgreSQL is not installed"
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
    install) install ;;
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    *) die "usage: postgres.sh install | start DIR | stop DIR" ;;
esac
