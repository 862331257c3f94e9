#!/usr/bin/env bash
# Start a local vantage6 4.15 network on this host, offline of any image registry:
#   - .venv-v6 (vantage6 4.15.2 packages from PyPI; Python 3.10 preferred) if missing
#   - the synthetic registries nkr, dica, umc (pht synth) as the nodes' databases
#   - the algorithm image pht/v6-probe:<hash> (build-algorithm.sh, --network none)
#   - the server as a plain process (Flask app + SQLite, v6local.py server)
#   - one node per station as a plain process (v6local.py node); algorithms run
#     as Docker containers from the local image (require_algorithm_pull: false)
# State, configs and logs go to $PHT_V6_DIR (default <repo>/.build/vantage6);
# <dir>/network.json describes the running network. Stop it with stop-network.sh.
# A node's config file is named <station>.yaml: vantage6 names the node's Docker
# network, volumes and containers after the config file's stem.
#
#   PHT_V6_PORT         server port (default 7601); nodes' proxies use PORT+10..
#   PHT_V6_STATIONS     stations to start nodes for (default "nkr dica umc")
#   PHT_V6_PYTHON       the Python for a new venv (default: python3.10 on PATH or
#                       under ~/.pyenv/versions, else python3)
#   PHT_V6_VENV         the vantage6 venv (default <repo>/.venv-v6, git-ignored)
#   PHT_V6_BASE_IMAGE   image the algorithm is built FROM (see build-algorithm.sh)
#   PHT_V6_REGISTRY     1: also run Debian's docker-registry on 127.0.0.1 (apt-get
#                       install docker-registry), push the image there and pin the
#                       nodes to its registry digest with require_algorithm_pull:
#                       true (tasks then name <registry>/pht/v6-probe@sha256:...).
#                       Default 0: local image, exact tag, require_algorithm_pull: false
#   PHT_V6_REGISTRY_PORT  its port (default 5000)
#   PHT_V6_STATION_FOLDERS  pht mode: a folder holding one pht station folder per
#                       station (<folder>/<station>, pht-algorithm/station_folder.py
#                       makes them). Each node's ONLY database is then {label: pht,
#                       type: folder, uri: <folder>/<station>} (mounted read-write
#                       at /mnt/pht into its algorithm containers; the station reads
#                       its data inside it), its ONLY allowed image is the pht
#                       station image (no probe image is built), and
#                       share_algorithm_logs is false. Without it: probe mode
#                       (synthetic Parquet databases, the probe image).
#   PHT_V6_IMAGE        pht mode: the pht station image (default: built now with
#                       pht-algorithm/build.sh)
#   PHT_V6_EXTRA_IMAGES  more images the nodes allow, space-separated (probe mode:
#                       e.g. the pht station image next to the probe)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIR="${PHT_V6_DIR:-$REPO/.build/vantage6}"
PORT="${PHT_V6_PORT:-7601}"
STATIONS="${PHT_V6_STATIONS:-nkr dica umc}"
VENV="${PHT_V6_VENV:-$REPO/.venv-v6}"
PY="$VENV/bin/python"
export PHT_V6_DIR="$DIR"
log() { echo "start-network: $(date +%T) $*" >&2; }
die() {
    echo "start-network: $*" >&2
    exit 1
}
T0=$(date +%s.%N)

[[ -e "$DIR/network.json" ]] && die "a network seems to run ($DIR/network.json): stop it with deploy/vantage6/stop-network.sh"
docker info >/dev/null 2>&1 || die "no Docker engine: start it with deploy/docker-engine.sh"
# from here on, a failure stops what this script started (server, nodes)
cleanup() { [[ $? == 0 ]] || bash "$HERE/stop-network.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# 1. venv (prepare-venv.sh: only when missing)
bash "$HERE/prepare-venv.sh" || die "no vantage6 venv $VENV (see the line above)"
PHT_MODE=0
[[ -n "${PHT_V6_STATION_FOLDERS:-}" ]] && PHT_MODE=1

# 2. station data: pht's synthetic registries (probe mode; in pht mode every
# station reads its data inside its own station folder)
mkdir -p "$DIR"
if [[ "$PHT_MODE" == 0 && ! -d "$DIR/stations" ]]; then
    log "generating the synthetic registries"
    "$REPO/.venv/bin/pht" synth --out "$DIR/stations" >&2
fi

# 3. algorithm image: the pht station image (pht mode) or the probe
if [[ "$PHT_MODE" == 1 ]]; then
    IMAGE="${PHT_V6_IMAGE:-$(bash "$HERE/pht-algorithm/build.sh")}" || die "the pht station image could not be built"
else
    IMAGE="$(bash "$HERE/build-algorithm.sh")"
fi
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE: build it with $HERE/pht-algorithm/build.sh"
log "algorithm image $IMAGE ($(docker image inspect -f '{{.Id}}' "$IMAGE"))"

ALLOWED="$IMAGE"
REQUIRE_PULL=false
if [[ "${PHT_V6_REGISTRY:-0}" == 1 ]]; then
    command -v docker-registry >/dev/null || die "PHT_V6_REGISTRY=1 needs Debian's docker-registry: apt-get install docker-registry"
    RPORT="${PHT_V6_REGISTRY_PORT:-5000}"
    mkdir -p "$DIR/registry/data"
    sed -e "s#@DIR@#$DIR#g" -e "s#@REGISTRY_PORT@#$RPORT#g" "$HERE/registry.yml.in" >"$DIR/registry/config.yml"
    if ! curl -fs "http://127.0.0.1:$RPORT/v2/" >/dev/null 2>&1; then
        log "starting docker-registry on 127.0.0.1:$RPORT"
        nohup docker-registry serve "$DIR/registry/config.yml" >"$DIR/registry/stdout.log" 2>&1 </dev/null &
        echo $! >"$DIR/registry/pid"
        for _ in $(seq 50); do curl -fs "http://127.0.0.1:$RPORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
    fi
    docker tag "$IMAGE" "127.0.0.1:$RPORT/$IMAGE"
    log "pushing 127.0.0.1:$RPORT/$IMAGE"
    docker push -q "127.0.0.1:$RPORT/$IMAGE" >&2 || die "push to the local registry failed: see $DIR/registry/stdout.log"
    DIGEST="$(docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$IMAGE" |
        grep "^127.0.0.1:$RPORT/${IMAGE%%:*}@" | head -n1)"
    [[ -n "$DIGEST" ]] || die "no registry digest for $IMAGE after the push"
    IMAGE="$DIGEST"
    ALLOWED="$DIGEST"
    REQUIRE_PULL=true
    log "nodes pinned to $DIGEST"
fi

# 4. configs, fixture, fresh database
rnd() { "$PY" -c "import $1; print($2)"; }
mkdir -p "$DIR/server/log" "$DIR/server/data"
rm -f "$DIR/server/server.sqlite"
sed -e "s#@DIR@#$DIR#g" -e "s#@PORT@#$PORT#g" -e "s#@JWT_SECRET@#$(rnd secrets 'secrets.token_hex(32)')#" \
    "$HERE/server.yaml.in" >"$DIR/server.yaml"
PASSWORD="Pht-$(rnd secrets 'secrets.token_hex(12)')-Aa1"
(umask 077 && echo "$PASSWORD" >"$DIR/analyst.password")
# the root user vantage6 creates on first start gets a random password, not "root"
ROOT_PASSWORD="$(rnd secrets 'secrets.token_hex(16)')"
(umask 077 && echo "$ROOT_PASSWORD" >"$DIR/root.password" &&
    "$PY" -c "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt()).decode())" \
        "$ROOT_PASSWORD" >"$DIR/root.password.bcrypt")
FIXTURE_SED=(-e "s#@USER_PASSWORD@#$PASSWORD#")
declare -A KEY
for s in nkr dica umc; do
    KEY[$s]="$(rnd uuid 'uuid.uuid4()')"
    FIXTURE_SED+=(-e "s#@KEY_$s@#${KEY[$s]}#")
done
(umask 077 && sed "${FIXTURE_SED[@]}" "$HERE/fixture.yaml.in" >"$DIR/fixture.yaml")
log "loading the fixture"
"$PY" "$HERE/v6local.py" import "$DIR/server.yaml" "$DIR/fixture.yaml" >"$DIR/server/import.log" 2>&1 ||
    die "fixture import failed: see $DIR/server/import.log"

# 5. server
# a server still answering on the port (another network, or one shutting down)
# would take this network's nodes, whose API keys it does not know
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null || break
    sleep 0.2
done
curl -s -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null &&
    die "port $PORT is in use (another vantage6 server?): stop it with deploy/vantage6/stop-network.sh or set PHT_V6_PORT"
log "starting the server on 127.0.0.1:$PORT"
V6_INIT_SUPER_PASS_HASHED_FILE="$DIR/root.password.bcrypt" \
    nohup "$PY" "$HERE/v6local.py" server "$DIR/server.yaml" --port "$PORT" \
    >"$DIR/server/stdout.log" 2>&1 </dev/null &
echo $! >"$DIR/server/pid"
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/api/health" >/dev/null 2>&1 && break
    kill -0 "$(cat "$DIR/server/pid")" 2>/dev/null || die "the server exited: see $DIR/server/stdout.log"
    sleep 0.2
done
curl -fs "http://127.0.0.1:$PORT/api/version" >/dev/null || die "the server does not answer: see $DIR/server/stdout.log"

# 6. nodes. Linux has no host.docker.internal: a node outside Docker serves its
# proxy for algorithm containers on 0.0.0.0:PROXY_SERVER_PORT and tells the
# containers to reach it at PROXY_SERVER_HOST: the docker0 bridge address, which
# every bridge network's containers can reach (the host's INPUT chain accepts it).
GATEWAY="$(docker network inspect bridge -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}')"
# Docker 20.10 (Debian) leaves Gateway out of the default bridge's IPAM config
[[ -n "$GATEWAY" ]] || GATEWAY="$(ip -4 -o addr show docker0 | awk '{split($4, a, "/"); print a[1]; exit}')"
[[ -n "$GATEWAY" ]] || die "cannot find the docker0 bridge address for the nodes' proxies"
i=0
for s in $STATIONS; do
    i=$((i + 1))
    db="$DIR/stations/$s.parquet"
    [[ "$PHT_MODE" == 1 || -f "$db" ]] || die "no database for station $s: $db"
    SHARE_LOGS=true
    [[ "$PHT_MODE" == 1 ]] && SHARE_LOGS=false
    nd="$DIR/nodes/$s"
    rm -rf "$nd"
    mkdir -p "$nd"
    chmod 700 "$nd" # umask 000 below: keep the node's files away from other host users
    sed -e "s#@NAME@#$s#g" -e "s#@DIR@#$DIR#g" -e "s#@API_KEY@#${KEY[$s]}#" \
        -e "s#@SERVER_PORT@#$PORT#" -e "s#@DATABASE@#$db#" -e "s#@DB_TYPE@#parquet#" \
        -e "s#@ALLOWED_IMAGE@#$ALLOWED#" -e "s#@REQUIRE_PULL@#$REQUIRE_PULL#" \
        -e "s#@SHARE_LOGS@#$SHARE_LOGS#" "$HERE/node.yaml.in" >"$nd/$s.yaml"
    chmod 600 "$nd/$s.yaml"
    if [[ -n "${PHT_V6_STATION_FOLDERS:-}" || -n "${PHT_V6_EXTRA_IMAGES:-}" ]]; then
        "$PY" - "$nd/$s.yaml" "${PHT_V6_STATION_FOLDERS:-}" "$s" ${PHT_V6_EXTRA_IMAGES:-} <<'PYEOF' ||
import sys, pathlib, yaml
path, folders, station, *images = sys.argv[1:]
doc = yaml.safe_load(open(path))
if folders:  # pht mode: the station folder is the node's only database
    folder = pathlib.Path(folders, station).resolve()
    if not (folder / "network.yaml").is_file():
        sys.exit(f"no pht station folder {folder} (pht-algorithm/station_folder.py)")
    doc["databases"] = [{"label": "pht", "uri": str(folder), "type": "folder"}]
doc["policies"]["allowed_algorithms"] += images
open(path, "w").write(yaml.safe_dump(doc, sort_keys=False))
PYEOF
            die "node $s: cannot add the pht station folder or images to $nd/$s.yaml"
    fi
    log "starting node $s (proxy $GATEWAY:$((PORT + 10 + i)))"
    # restart-node.sh starts it again with the same proxy
    printf 'PROXY_SERVER_HOST=%s\nPROXY_SERVER_PORT=%s\n' "$GATEWAY" $((PORT + 10 + i)) >"$nd/proxy.env"
    # umask 000: the node (root) writes each run's input/output/token files; the
    # algorithm container runs as uid 10001 and must write its output file.
    # (separate commands: `a && b && cmd &` would background a subshell, and $!
    # would be that subshell's pid, not the node's)
    (
        cd "$nd"
        umask 000
        PROXY_SERVER_HOST="$GATEWAY" PROXY_SERVER_PORT=$((PORT + 10 + i)) \
            nohup "$PY" "$HERE/v6local.py" node "$nd/$s.yaml" >"$nd/stdout.log" 2>&1 </dev/null &
        echo $! >"$nd/pid"
    )
done
for s in $STATIONS; do
    for _ in $(seq 150); do
        grep -q "Init complete" "$DIR/nodes/$s/stdout.log" 2>/dev/null && break
        kill -0 "$(cat "$DIR/nodes/$s/pid")" 2>/dev/null || die "node $s exited: see $DIR/nodes/$s/stdout.log"
        sleep 0.2
    done
    grep -q "Init complete" "$DIR/nodes/$s/stdout.log" || die "node $s did not start: see $DIR/nodes/$s/stdout.log"
done
STATIONS_JSON="$("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1:]))' $STATIONS)"
cat >"$DIR/network.json" <<JSON
{"server_port": $PORT, "image": "$IMAGE", "stations": $STATIONS_JSON, "dir": "$DIR"}
JSON
log "network up in $(printf '%.1f' "$(echo "$(date +%s.%N) - $T0" | bc)") s: $DIR/network.json"
