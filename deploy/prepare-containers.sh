#!/usr/bin/env bash
# Prepare the container tests: a Docker engine (installed from Debian packages when
# missing) and the train images, built offline. `make test` runs this before pytest.
# Under CI (CI=true) a failure is fatal; elsewhere the container tests are then
# skipped with the reason, and the rest of the suite runs.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
fail() {
    echo "prepare-containers: $*" >&2
    if [[ "${CI:-}" == "true" ]]; then exit 1; fi
    echo "prepare-containers: container tests will be skipped" >&2
    exit 0
}
if [[ "$(id -u)" != 0 ]]; then fail "not root: cannot install or start a Docker engine"; fi
bash "$HERE/docker-engine.sh" || fail "no Docker engine"
"$REPO/.venv/bin/pht" images build || fail "the train images could not be built"
