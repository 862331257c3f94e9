#!/usr/bin/env bash
# Build the minimal vantage6 algorithm image (deploy/vantage6/algorithm) offline:
#   1. host wheelhouse of vantage6-algorithm-tools 4.15.2 for CPython 3.11 manylinux
#      (pip download from PyPI; qrcode 7.3.1, a vantage6-common pin, is sdist-only
#      and is built into a wheel on the host with pip wheel)
#   2. docker build --network none FROM $PHT_V6_BASE_IMAGE (default: the newest
#      pht/train-runtime:* image, else pht/base:bookworm-py311)
# The tag is pht/v6-probe:<hash of the build context>, so a node's
# allowed_algorithms entry pins the content without a registry digest.
# Prints the tag on stdout. Needs .venv-v6 (deploy/vantage6/start-network.sh
# makes it) and a Docker engine.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIR="${PHT_V6_DIR:-$REPO/.build/vantage6}"
PY="${PHT_V6_VENV:-$REPO/.venv-v6}/bin/python"
export DOCKER_BUILDKIT=0 # legacy builder: the client here has no buildx plugin
log() { echo "build-algorithm: $*" >&2; }

BASE="${PHT_V6_BASE_IMAGE:-}"
if [[ -z "$BASE" ]]; then
    BASE="$(docker images --format '{{.CreatedAt}}\t{{.Repository}}:{{.Tag}}' pht/train-runtime \
        | sort -r | head -n1 | cut -f2)"
    BASE="${BASE:-pht/base:bookworm-py311}"
fi
docker image inspect "$BASE" >/dev/null 2>&1 || {
    log "base image $BASE not found: build it with deploy/build-base-image.sh or pht images build"
    exit 1
}

WH="$DIR/wheelhouse"
mkdir -p "$WH"
if ! ls "$WH"/vantage6_algorithm_tools-4.15.2-*.whl >/dev/null 2>&1; then
    log "downloading the wheelhouse into $WH"
    "$PY" -m pip wheel -q --no-deps 'qrcode==7.3.1' -w "$WH"
    PLAT=(--platform manylinux2014_x86_64 --platform any)
    for m in $(seq 17 36); do PLAT+=(--platform "manylinux_2_${m}_x86_64"); done
    "$PY" -m pip download -q --find-links "$WH" --only-binary=:all: \
        --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
        "${PLAT[@]}" 'vantage6-algorithm-tools==4.15.2' -d "$WH"
fi

CTX="$DIR/algorithm-context"
rm -rf "$CTX"
mkdir -p "$CTX"
cp -r "$HERE/algorithm/Dockerfile" "$HERE/algorithm/v6probe" "$CTX/"
find "$CTX/v6probe" -name __pycache__ -prune -exec rm -rf {} +
cp -al "$WH" "$CTX/wheelhouse"
HASH="$( (echo "$BASE $(docker image inspect -f '{{.Id}}' "$BASE")"; cd "$CTX" && find . -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-12)"
TAG="pht/v6-probe:$HASH"
if docker image inspect "$TAG" >/dev/null 2>&1; then
    log "$TAG exists"
else
    log "building $TAG FROM $BASE (network none)"
    docker build --network none -q --force-rm --build-arg "BASE_IMAGE=$BASE" -t "$TAG" "$CTX" >&2
fi
echo "$TAG"
