#!/usr/bin/env bash
# Build the pht station algorithm image for vantage6 (deploy/vantage6/pht-algorithm)
# offline:
#   1. the vantage6 wheelhouse (deploy/vantage6/build-algorithm.sh makes it; reused)
#   2. a wheel of pht from this working tree (pip wheel --no-deps, on the host)
#   3. docker build --network none FROM $PHT_V6_BASE_IMAGE (default: the newest
#      pht/train-runtime:* image, else pht/base:bookworm-py311)
# The tag is pht/v6-station:<hash of the build context + base image id>, so a
# node's allowed_algorithms entry pins the content without a registry digest.
# Prints the tag on stdout.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
DIR="${PHT_V6_DIR:-$REPO/.build/vantage6}"
export DOCKER_BUILDKIT=0 # legacy builder: the client here has no buildx plugin
log() { echo "pht-algorithm/build: $*" >&2; }

BASE="${PHT_V6_BASE_IMAGE:-}"
if [[ -z "$BASE" ]]; then
    BASE="$(docker images --format '{{.CreatedAt}}\t{{.Repository}}:{{.Tag}}' pht/train-runtime |
        sort -r | head -n1 | cut -f2)"
    BASE="${BASE:-pht/base:bookworm-py311}"
fi
docker image inspect "$BASE" >/dev/null 2>&1 || {
    log "base image $BASE not found: build it with .venv/bin/pht images build"
    exit 1
}
WH="$DIR/wheelhouse"
if ! ls "$WH"/vantage6_algorithm_tools-4.15.2-*.whl >/dev/null 2>&1; then
    bash "$REPO/deploy/vantage6/build-algorithm.sh" >/dev/null
fi

# pht needs cryptography's hpke module (cryptography 47+; the host venv's version is
# used), but vantage6-common 4.15.2 pins cryptography==46.0.7: pht's version is
# installed over it (the algorithm tools import it for RSA only, unused when the
# collaboration is not encrypted; pip check then reports the pin as broken)
CRYPTO="$("$REPO/.venv/bin/python" -c 'import cryptography; print(cryptography.__version__)')"
# the train plugin registry imports matplotlib (pht's report helpers)
MPL="$("$REPO/.venv/bin/python" -c 'import matplotlib; print(matplotlib.__version__)')"
PWH="$DIR/pht-wheelhouse"
mkdir -p "$PWH"
if ! ls "$PWH"/cryptography-"$CRYPTO"-*.whl "$PWH"/matplotlib-"$MPL"-*.whl >/dev/null 2>&1; then
    log "downloading cryptography $CRYPTO and matplotlib $MPL into $PWH"
    PLAT=(--platform manylinux2014_x86_64 --platform any)
    for m in $(seq 17 36); do PLAT+=(--platform "manylinux_2_${m}_x86_64"); done
    "$REPO/.venv/bin/python" -m pip download -q --only-binary=:all: --implementation cp \
        --python-version 3.11 --abi cp311 --abi abi3 --abi none "${PLAT[@]}" \
        "cryptography==$CRYPTO" "matplotlib==$MPL" -d "$PWH" >"$DIR/pht-wheelhouse.log" 2>&1 ||
        { log "pip download failed: see $DIR/pht-wheelhouse.log"; exit 1; }
fi

CTX="$DIR/pht-algorithm-context"
rm -rf "$CTX"
mkdir -p "$CTX/wheels"
log "building the pht wheel from $REPO"
"$REPO/.venv/bin/python" -m pip wheel -q --no-deps -w "$CTX/wheels" "$REPO" >"$CTX/../pht-wheel.log" 2>&1 || { log "pip wheel failed: see $DIR/pht-wheel.log"; exit 1; }
ls "$CTX"/wheels/pht-*.whl >/dev/null 2>&1 || { log "no pht wheel was built"; exit 1; }
cp -r "$HERE/Dockerfile" "$HERE/pht_v6" "$CTX/"
cp -r "$REPO/train_images" "$CTX/train_images"
find "$CTX" -name __pycache__ -prune -exec rm -rf {} +
cp -al "$WH" "$CTX/wheelhouse"
cp -l "$PWH"/*.whl "$CTX/wheels/"
# the wheel's own bytes carry timestamps: hash its contents' listing and files instead
WHEEL_HASH="$(cd "$CTX/wheels" && python3 -c '
import hashlib, sys, zipfile, glob
h = hashlib.sha256()
for name in sorted(glob.glob("pht-*.whl")):
    with zipfile.ZipFile(name) as z:
        for info in sorted(z.infolist(), key=lambda i: i.filename):
            h.update(info.filename.encode()); h.update(z.read(info))
print(h.hexdigest())')"
HASH="$( (echo "$BASE $(docker image inspect -f '{{.Id}}' "$BASE") $WHEEL_HASH"
    cd "$CTX" && find . -type f -not -path './wheels/pht-*' | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-12)"
TAG="pht/v6-station:$HASH"
if docker image inspect "$TAG" >/dev/null 2>&1; then
    log "$TAG exists"
else
    log "building $TAG FROM $BASE (network none)"
    docker build --network none -q --force-rm --build-arg "BASE_IMAGE=$BASE" -t "$TAG" "$CTX" >&2
fi
echo "$TAG"
