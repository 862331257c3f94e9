#!/usr/bin/env bash
# Create the vantage6 4.15 venv (default <repo>/.venv-v6, git-ignored) if it is
# missing: vantage6 pins old versions of pht's dependencies (SQLAlchemy 1.4), so the
# server and nodes get an environment of their own. `make test` and
# start-network.sh run this.
#   PHT_V6_PYTHON  the Python to build it with (default: python3.10 on PATH or under
#                  ~/.pyenv/versions when there is one, else python3; >= 3.10: on
#                  3.11+ v6local.py patches the one incompatibility found)
#   PHT_V6_VENV    the venv (default <repo>/.venv-v6)
#   PHT_V6_DIR     where venv.log goes (default <repo>/.build/vantage6)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIR="${PHT_V6_DIR:-$REPO/.build/vantage6}"
VENV="${PHT_V6_VENV:-$REPO/.venv-v6}"
PY="$VENV/bin/python"
die() {
    echo "prepare-venv: $*" >&2
    exit 1
}
# Debian's docker-registry (a registry on 127.0.0.1 only): with it the local networks
# pin their nodes to the station image's registry digest (pht/vantage6_local.py)
if ! command -v docker-registry >/dev/null && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "prepare-venv: installing docker-registry (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-registry >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-registry >/dev/null 2>&1; } ||
        echo "prepare-venv: docker-registry could not be installed; nodes pin the image by its content-hash tag" >&2
fi
if [[ -x "$PY" ]] && "$PY" -c 'import vantage6.server, vantage6.node, vantage6.client' 2>/dev/null; then
    exit 0
fi
# the first candidate that runs and is >= 3.10 (a pyenv shim for python3.10 can exist
# on PATH without a 3.10 it may run: try each one)
works() { [[ -n "$1" && -x "$1" ]] && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; }
P="${PHT_V6_PYTHON:-}"
if [[ -z "$P" ]]; then
    for c in "$(command -v python3.10 || true)" \
        $(ls -d "$HOME"/.pyenv/versions/3.10.*/bin/python 2>/dev/null | sort -r) \
        "$(command -v python3 || true)" /usr/bin/python3; do
        if works "$c"; then
            P="$c"
            break
        fi
    done
fi
[[ -n "$P" && -x "$P" ]] || die "no Python for the vantage6 venv: set PHT_V6_PYTHON"
"$P" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "vantage6 4.15 needs Python >= 3.10 ($P is older): set PHT_V6_PYTHON"
mkdir -p "$DIR"
LOG="$DIR/venv.log"
echo "prepare-venv: creating $VENV with $P (1-2 min; log: $LOG)" >&2
rm -rf "$VENV"
"$P" -m venv "$VENV" >"$LOG" 2>&1 || die "cannot create the venv $VENV with $P: see $LOG"
"$VENV/bin/pip" install 'vantage6==4.15.2' 'vantage6-server==4.15.2' 'vantage6-node==4.15.2' \
    'vantage6-client==4.15.2' 'vantage6-algorithm-tools==4.15.2' \
    'vantage6-backend-common==4.15.2' websocket-client >>"$LOG" 2>&1 ||
    { rm -rf "$VENV"; die "pip could not install vantage6 4.15.2 into $VENV: see $LOG"; }
"$PY" -c 'import vantage6.server, vantage6.node, vantage6.client' >>"$LOG" 2>&1 ||
    { rm -rf "$VENV"; die "vantage6 does not import in $VENV: see $LOG"; }
echo "prepare-venv: $VENV ready" >&2
