#!/usr/bin/env bash
# Stop the network start-network.sh started, each process by the pid it recorded:
# nodes and server with SIGTERM (a node then removes its algorithm containers;
# SIGINT is ignored by processes a script starts in the background). Then removes
# what the nodes leave behind in Docker: their algorithm network vantage6-<station>-user-net (a node outside
# Docker fails to disconnect itself from it: 404 "endpoint ... not found") and
# the per-task volumes vantage6-<station>-user-<job>-tmpvol.
# Keeps $PHT_V6_DIR (configs, logs, database).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIR="${PHT_V6_DIR:-$REPO/.build/vantage6}"
stop() { # pidfile, signal
    local pid
    pid="$(cat "$1" 2>/dev/null)" || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "-$2" "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$1"
}
for pidfile in "$DIR"/nodes/*/pid; do [[ -e "$pidfile" ]] && stop "$pidfile" TERM; done
stop "$DIR/server/pid" TERM
stop "$DIR/registry/pid" TERM # only if start-network.sh started one (PHT_V6_REGISTRY=1)
for nd in "$DIR"/nodes/*/; do
    s="$(basename "$nd")"
    docker ps -aq --filter "name=^vantage6-$s-run-" | xargs -r docker rm -f >/dev/null
    docker volume ls -q --filter "name=^vantage6-$s-user-" | grep -E "^vantage6-$s-user-[0-9]+-tmpvol$" |
        xargs -r docker volume rm >/dev/null
    docker network rm "vantage6-$s-user-net" >/dev/null 2>&1 || true
done
rm -f "$DIR/network.json"
echo "stop-network: stopped ($DIR kept)" >&2
