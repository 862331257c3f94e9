#!/usr/bin/env bash
# Build the train base image pht/base:bookworm-py311 fully offline of Docker Hub
# (idempotent).
#
#   1. debootstrap --variant=minbase bookworm + python3, python3-venv (Debian
#      mirror only), security/updates applied, apt caches dropped
#      -> rootfs tarball cached in $PHT_BUILD_CACHE (default <repo>/.build/docker,
#         gitignored); reused on later runs
#   2. docker import of that tarball as pht/base-rootfs:bookworm
#   3. docker build --network none of deploy/base/Dockerfile FROM it: user
#      train (10001:10001), venv /opt/venv (pip from ensurepip, no network), env
#
# Skips everything if the image already exists (FORCE=1 rebuilds the image;
# FORCE=2 also rebuilds the rootfs tarball). Prints the timings of each step.
# Needs root (debootstrap) and a Docker engine (started via docker-engine.sh).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
IMAGE="${PHT_BASE_IMAGE:-pht/base:bookworm-py311}"
ROOTFS_IMAGE="pht/base-rootfs:bookworm"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
CACHE="${PHT_BUILD_CACHE:-$REPO/.build/docker}"
TARBALL="$CACHE/rootfs-$SUITE-minbase-py3.tar"
FORCE="${FORCE:-0}"
export DOCKER_BUILDKIT=0 # legacy builder: the client here has no buildx plugin

log() { echo "build-base-image: $*" >&2; }
die() {
    echo "build-base-image: $*" >&2
    exit 1
}
T_START=$SECONDS

"$HERE/docker-engine.sh" || die "no Docker engine"

if [[ "$FORCE" == 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already exists ($(docker image inspect -f '{{.Id}}' "$IMAGE")), nothing to do"
    exit 0
fi

OLD_ID="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"

[[ $(id -u) -eq 0 ]] || die "not root: debootstrap needs root"
command -v debootstrap >/dev/null || die "debootstrap missing (docker-engine.sh installs it)"
mkdir -p "$CACHE/debs"

# ------------------------------------------------------------- 1. rootfs tarball
if [[ "$FORCE" == 2 ]]; then rm -f "$TARBALL"; fi
if [[ ! -s "$TARBALL" ]]; then
    t0=$SECONDS
    ROOTFS="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    cleanup() {
        # never leave /proc mounted inside the cache dir
        if mountpoint -q "$ROOTFS/proc" 2>/dev/null; then umount -l "$ROOTFS/proc"; fi
        rm -rf "$ROOTFS"
    }
    trap cleanup EXIT
    log "debootstrap $SUITE minbase + python3 from $MIRROR (log: $CACHE/debootstrap.log)"
    debootstrap --variant=minbase --include=python3,python3-venv \
        --cache-dir="$CACHE/debs" \
        "$SUITE" "$ROOTFS" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || die "debootstrap failed, see $CACHE/debootstrap.log"
    log "debootstrap done in $((SECONDS - t0)) s"

    # Apply bookworm-updates and bookworm-security (debootstrap knows one suite).
    t1=$SECONDS
    cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
    mount -t proc proc "$ROOTFS/proc"
    chroot "$ROOTFS" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update -qq && apt-get -y -qq -o Dpkg::Use-Pty=0 upgrade' \
        </dev/null >>"$CACHE/debootstrap.log" 2>&1 || die "apt-get upgrade in rootfs failed, see $CACHE/debootstrap.log"
    umount "$ROOTFS/proc"
    # Slim down: caches, apt lists, docs, man pages, non-English locales.
    rm -rf "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
        "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* \
        "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
    find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
    log "upgrade + slim-down done in $((SECONDS - t1)) s"

    tar --numeric-owner -C "$ROOTFS" -cf "$TARBALL.tmp" . || die "tar of rootfs failed"
    mv "$TARBALL.tmp" "$TARBALL"
    cleanup
    trap - EXIT
    log "rootfs tarball $TARBALL ($(du -h "$TARBALL" | cut -f1)) in $((SECONDS - t0)) s"
else
    log "reusing cached rootfs tarball $TARBALL"
fi

# ------------------------------------------------------------- 2. import
t0=$SECONDS
docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/usr/bin/python3"]' \
    --message "debootstrap $SUITE minbase + python3" \
    "$TARBALL" "$ROOTFS_IMAGE" >/dev/null || die "docker import failed"
log "imported $ROOTFS_IMAGE in $((SECONDS - t0)) s"

# ------------------------------------------------------------- 3. build
t0=$SECONDS
docker build --network none --pull=false -q \
    --build-arg ROOTFS_IMAGE="$ROOTFS_IMAGE" \
    -t "$IMAGE" "$HERE/base" >/dev/null || die "docker build of $IMAGE failed"
log "built $IMAGE in $((SECONDS - t0)) s: $(docker image inspect -f '{{.Id}} {{.Size}} bytes' "$IMAGE")"
log "total $((SECONDS - T_START)) s"
# a forced rebuild leaves the previous image untagged: remove it (fails harmlessly if in use)
if [[ -n "$OLD_ID" && "$OLD_ID" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]]; then docker rmi "$OLD_ID" >/dev/null 2>&1 || true; fi
