#!/usr/bin/env bash
# Restart one node of the network start-network.sh started: stop it (SIGTERM, by the
# pid it recorded) if it runs, then start it again from its config
# <dir>/nodes/<station>/<station>.yaml with the same proxy address (proxy.env) and
# wait until it is connected. Usage: restart-node.sh STATION   (PHT_V6_DIR as for
# start-network.sh)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIR="${PHT_V6_DIR:-$REPO/.build/vantage6}"
VENV="${PHT_V6_VENV:-$REPO/.venv-v6}"
die() {
    echo "restart-node: $*" >&2
    exit 1
}
[[ $# == 1 ]] || die "usage: restart-node.sh STATION"
s="$1"
nd="$DIR/nodes/$s"
[[ -e "$DIR/network.json" ]] || die "no network runs in $DIR: start it with deploy/vantage6/start-network.sh"
[[ -f "$nd/$s.yaml" && -f "$nd/proxy.env" ]] || die "no node '$s' in $DIR/nodes"
pid="$(cat "$nd/pid" 2>/dev/null || true)"
if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
fi
# what the stopped node leaves behind (as stop-network.sh)
docker ps -aq --filter "name=^vantage6-$s-run-" | xargs -r docker rm -f >/dev/null
docker network rm "vantage6-$s-user-net" >/dev/null 2>&1 || true
(
    cd "$nd"
    umask 000 # as start-network.sh: the uid-10001 algorithm writes its output file
    set -a
    # shellcheck disable=SC1091
    . "$nd/proxy.env"
    set +a
    nohup "$VENV/bin/python" "$HERE/v6local.py" node "$nd/$s.yaml" >"$nd/stdout.log" 2>&1 </dev/null &
    echo $! >"$nd/pid"
)
for _ in $(seq 150); do
    grep -q "Init complete" "$nd/stdout.log" 2>/dev/null && break
    kill -0 "$(cat "$nd/pid")" 2>/dev/null || die "node $s exited: see $nd/stdout.log"
    sleep 0.2
done
grep -q "Init complete" "$nd/stdout.log" || die "node $s did not start: see $nd/stdout.log"
echo "restart-node: $s up" >&2
