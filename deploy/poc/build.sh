#!/usr/bin/env bash
# Build the proof-of-concept train image pht/train-poc:0.1 with no network in the
# build: wheels for CPython 3.11 / manylinux x86_64 are downloaded on the host into
# ./wheelhouse (gitignored), then `docker build --network none`.
# Prints the wheelhouse, build times and the image size. FORCE=1 rebuilds.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE="${PHT_POC_IMAGE:-pht/train-poc:0.1}"
BASE="${PHT_BASE_IMAGE:-pht/base:bookworm-py311}"
PY="${PYTHON:-python3}"
export DOCKER_BUILDKIT=0 # legacy builder: the client here has no buildx plugin
log() { echo "poc/build: $*" >&2; }

FORCE="${BASE_FORCE:-0}" "$HERE/../build-base-image.sh" # FORCE=1 here rebuilds only the train image

if [[ "${FORCE:-0}" == 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already exists, nothing to do"
    exit 0
fi

OLD_ID="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"

# Wheels for the container's interpreter (Debian bookworm: CPython 3.11, glibc
# 2.36), not the host's: every manylinux tag up to glibc 2.36 is acceptable.
t0=$SECONDS
plats=(--platform manylinux2014_x86_64)
for v in $(seq 17 36); do plats+=(--platform "manylinux_2_${v}_x86_64"); done
"$PY" -m pip download --quiet --disable-pip-version-check \
    --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
    "${plats[@]}" --platform any \
    -r "$HERE/requirements.txt" -d "$HERE/wheelhouse"
log "wheelhouse ready in $((SECONDS - t0)) s: $(ls "$HERE"/wheelhouse/*.whl | wc -l) wheels, $(du -sh "$HERE/wheelhouse" | cut -f1)"

t0=$SECONDS
docker build --network none --pull=false -q \
    --build-arg BASE_IMAGE="$BASE" -t "$IMAGE" "$HERE" >/dev/null
log "built $IMAGE in $((SECONDS - t0)) s"
# the legacy builder keeps the builder stage as a dangling image: drop only ours
docker image prune -f --filter label=org.pht.stage=poc-builder >/dev/null
log "$(docker image inspect -f '{{.Id}} size={{.Size}} bytes' "$IMAGE")"
# a forced rebuild leaves the previous image untagged: remove it (fails harmlessly if in use)
if [[ -n "$OLD_ID" && "$OLD_ID" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]]; then docker rmi "$OLD_ID" >/dev/null 2>&1 || true; fi
