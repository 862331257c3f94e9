#!/usr/bin/env bash
# Build the train base image pht/base:bookworm-py311 fully offline of Docker Hub
# (idempotent).
#
#   1. debootstrap --variant=minbase bookworm + python3, python3-venv from a Debian
#      mirror, security/updates applied, apt caches dropped
#      -> rootfs tarball cached in $PHT_BUILD_CACHE (default <repo>/.build/docker,
#         gitignored); reused on later runs
#   2. docker import of that tarball as pht/base-rootfs:bookworm
#      (<name>-rootfs:bookworm for PHT_BASE_IMAGE=<name>:<tag>)
#   3. docker build --network none of deploy/base/Dockerfile FROM it: user
#      train (10001:10001), venv /opt/venv (pip from ensurepip, no network), env
#
# Skips everything if the image already exists (FORCE=1 rebuilds the image;
# FORCE=2 also rebuilds the rootfs tarball). Prints the timings of each step.
# Needs root (debootstrap) and a Docker engine (started via docker-engine.sh).
# PHT_BASE_IMAGE (default pht/base:bookworm-py311) and PHT_BUILD_CACHE choose the
# image name and the cache folder.
#
# Mirrors (only needed to build the rootfs tarball, not when it is cached):
#   --mirror URL            or PHT_DEBIAN_MIRROR: the Debian archive; default: the
#                           first one this machine's apt sources use for bookworm
#                           (else for another Debian suite)
#   --security-mirror URL   or PHT_DEBIAN_SECURITY_MIRROR: the Debian security
#                           archive; default: the apt sources' bookworm-security one
#                           (else another Debian *-security suite)
#   --print-mirrors         print the two mirrors that would be used, and exit
# The apt sources are sources.list and sources.list.d/*.list (one-line format) and
# sources.list.d/*.sources (deb822), where apt-config says they are (APT_CONFIG is
# honoured); mirror+file: entries use the first URL of their mirror list.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
IMAGE="${PHT_BASE_IMAGE:-pht/base:bookworm-py311}"
ROOTFS_IMAGE="${IMAGE%%:*}-rootfs:bookworm" # pht/base-rootfs:bookworm by default
SUITE=bookworm
MIRROR="${PHT_DEBIAN_MIRROR:-}"
SECURITY_MIRROR="${PHT_DEBIAN_SECURITY_MIRROR:-}"
# Debian suites (codenames and aliases) whose archive also carries $SUITE
DEBIAN_SUITES='stable|oldstable|oldoldstable|testing|unstable|sid|buster|bullseye|bookworm|trixie|forky|duke'
CACHE="${PHT_BUILD_CACHE:-$REPO/.build/docker}"
TARBALL="$CACHE/rootfs-$SUITE-minbase-py3.tar"
FORCE="${FORCE:-0}"
export DOCKER_BUILDKIT=0 # legacy builder: the client here has no buildx plugin

log() { echo "build-base-image: $*" >&2; }
die() {
    echo "build-base-image: $*" >&2
    exit 1
}
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

PRINT_MIRRORS=0
while (($#)); do
    case "$1" in
        --mirror | --security-mirror)
            [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a URL, such as $1 http://mirror.example.org/debian"
            if [[ "$1" == --mirror ]]; then MIRROR=$2; else SECURITY_MIRROR=$2; fi
            shift 2
            ;;
        --mirror=*) MIRROR=${1#*=}; shift ;;
        --security-mirror=*) SECURITY_MIRROR=${1#*=}; shift ;;
        --print-mirrors) PRINT_MIRRORS=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option '$1'; see $0 --help" ;;
    esac
done

# ------------------------------------------------------------- mirrors
APT_SOURCES=/etc/apt/sources.list
APT_PARTS=/etc/apt/sources.list.d
if command -v apt-config >/dev/null 2>&1 \
    && apt_dirs="$(apt-config shell APT_SOURCES Dir::Etc::sourcelist/f APT_PARTS Dir::Etc::sourceparts/d 2>/dev/null)"; then
    eval "$apt_dirs"
    APT_PARTS="${APT_PARTS%/}"
fi

# "URI SUITE" for every enabled `deb` entry of this machine's apt sources, in apt's order.
apt_entries() {
    local file
    for file in "$APT_SOURCES" "$APT_PARTS"/*.list "$APT_PARTS"/*.sources; do
        [[ -f "$file" && -r "$file" ]] || continue
        case "$file" in
            *.sources)
                awk '
                    function flush(   e, t, u, s, nt, nu, ns, i, j, deb) {
                        split(f["enabled"], e)
                        nt = split(f["types"], t)
                        deb = 0
                        for (i = 1; i <= nt; i++) if (t[i] == "deb") deb = 1
                        if (deb && tolower(e[1]) != "no") {
                            nu = split(f["uris"], u)
                            ns = split(f["suites"], s)
                            for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
                        }
                        split("", f)
                        key = ""
                    }
                    /^#/ { next }
                    /^[ \t]*$/ { flush(); next }
                    /^[ \t]/ { if (key != "") f[key] = f[key] " " $0; next }
                    {
                        n = index($0, ":")
                        if (n == 0) next
                        key = tolower(substr($0, 1, n - 1))
                        f[key] = substr($0, n + 1)
                    }
                    END { flush() }
                ' "$file"
                ;;
            *)
                awk '
                    { sub(/#.*/, "") }
                    $1 == "deb" {
                        i = 2
                        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                        if (i + 1 <= NF) print $i, $(i + 1)
                    }
                ' "$file"
                ;;
        esac
    done
}

# A URL debootstrap can fetch from, for an apt source URI (nothing if there is none).
fetchable() {
    local uri=$1
    case "$uri" in
        mirror+file:* | mirror:file:*) # apt's mirror method: the list's first URL
            uri="${uri#mirror+}"
            uri="${uri#mirror:}"
            uri="${uri#file:}"
            uri="/${uri#"${uri%%[!/]*}"}"
            [[ -r "$uri" ]] && awk '!/^[ \t]*#/ && NF { print $1; exit }' "$uri"
            ;;
        http://* | https://* | ftp://* | file:/*) echo "$uri" ;;
    esac
}

# The first fetchable URI of an entry whose suite matches the regex $1.
find_mirror() {
    local uri suite url
    while read -r uri suite; do
        [[ "$suite" =~ ^($1)$ ]] || continue
        url="$(fetchable "$uri")"
        if [[ -n "$url" ]]; then
            echo "${url%/}"
            return 0
        fi
    done < <(apt_entries)
    return 1
}

resolve_mirrors() {
    local where="apt sources ($APT_SOURCES, $APT_PARTS/*.list, $APT_PARTS/*.sources)"
    if [[ -z "$MIRROR" ]]; then
        MIRROR="$(find_mirror "$SUITE" || find_mirror "$DEBIAN_SUITES")" \
            || die "no Debian mirror in this machine's $where; pass --mirror URL or set PHT_DEBIAN_MIRROR to your Debian mirror (e.g. http://mirror.example.org/debian)"
    fi
    if [[ -z "$SECURITY_MIRROR" ]]; then
        SECURITY_MIRROR="$(find_mirror "$SUITE-security" || find_mirror "($DEBIAN_SUITES)-security")" \
            || die "no Debian security mirror (a $SUITE-security entry) in this machine's $where; pass --security-mirror URL or set PHT_DEBIAN_SECURITY_MIRROR (e.g. http://mirror.example.org/debian-security)"
    fi
}

if ((PRINT_MIRRORS)); then
    resolve_mirrors
    echo "mirror $MIRROR"
    echo "security-mirror $SECURITY_MIRROR"
    exit 0
fi

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
if [[ "$FORCE" == 2 || ! -s "$TARBALL" ]]; then
    resolve_mirrors # a cached tarball is replaced only by a finished one
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
        || die "debootstrap from $MIRROR failed, see $CACHE/debootstrap.log (a mirror without $SUITE? pass --mirror URL)"
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
