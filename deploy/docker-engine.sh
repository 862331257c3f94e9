#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine (idempotent).
#
#   - `docker info` already works           -> exit 0 at once
#   - docker.io / debootstrap not installed -> apt-get install them (non-interactive)
#   - dockerd not running                   -> start it in the background,
#                                              logs in $DOCKERD_LOG (/tmp/dockerd.log)
#   - wait at most $DOCKER_WAIT_SECONDS (60) for the socket and `docker info`
#
# Needs root (it installs packages and starts dockerd). Safe under CI=true with no
# stdin. On failure it exits non-zero and its LAST stderr line is the one-line
# reason "docker-engine: <reason>" (preceded by the tail of the dockerd log, if any).
set -uo pipefail

LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"
WAIT="${DOCKER_WAIT_SECONDS:-60}"
SOCK=/var/run/docker.sock
export DEBIAN_FRONTEND=noninteractive

die() {
    if [[ -n "${STARTED_PID:-}" && -s "$LOG" ]]; then
        tail -n 10 "$LOG" | sed "s|^|  $LOG: |" >&2
    fi
    echo "docker-engine: $*" >&2
    exit 1
}
say() { [[ -n "${QUIET:-}" ]] || echo "docker-engine: $*" >&2; }

# The docker client must talk to the local socket, whatever the environment says.
unset DOCKER_HOST DOCKER_CONTEXT

engine_ok() { timeout 20 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && engine_ok; then
    say "engine already running"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "not root: cannot install or start dockerd (run as root)"

# ---------------------------------------------------------------- install
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if ((${#need[@]})); then
    say "installing ${need[*]} (apt-get)"
    t0=$SECONDS
    apt_opts=(-y -qq -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    apt-get update -qq </dev/null >/dev/null 2>&1 || die "apt-get update failed"
    apt-get install "${apt_opts[@]}" --no-install-recommends "${need[@]}" </dev/null >/tmp/docker-engine-apt.log 2>&1 \
        || die "apt-get install ${need[*]} failed (see /tmp/docker-engine-apt.log)"
    say "installed in $((SECONDS - t0)) s"
fi
command -v dockerd >/dev/null 2>&1 || die "dockerd not found after install"
command -v docker >/dev/null 2>&1 || die "docker client not found after install"

# ---------------------------------------------------------------- start
if ! pgrep -x dockerd >/dev/null 2>&1; then
    # A stale socket/pid from an earlier, dead dockerd blocks the new one.
    rm -f "$SOCK" /var/run/docker.pid
    say "starting dockerd (log: $LOG)"
    # setsid + nohup: the daemon survives the end of this script and of the calling
    # shell; stdin from /dev/null so it never holds a terminal.
    setsid nohup dockerd >"$LOG" 2>&1 </dev/null &
    STARTED_PID=$! # setsid/nohup exec, so this is dockerd's own pid
else
    say "dockerd process exists, waiting for it to answer"
fi

t0=$SECONDS
until [[ -S "$SOCK" ]] && engine_ok; do
    if ((SECONDS - t0 >= WAIT)); then
        die "engine did not answer within ${WAIT}s (socket $SOCK, log: $LOG; dockerd left running)"
    fi
    if [[ -n "${STARTED_PID:-}" ]]; then
        kill -0 "$STARTED_PID" 2>/dev/null || die "dockerd exited during start-up (log: $LOG)"
    elif ! pgrep -x dockerd >/dev/null 2>&1; then
        die "dockerd exited during start-up (log: $LOG)"
    fi
    sleep 0.5
done
say "engine up in $((SECONDS - t0)) s (storage driver: $(docker info -f '{{.Driver}}' 2>/dev/null))"
exit 0
