#!/usr/bin/env bash
# Install what the tests need on a fresh Debian 12 machine (as root), then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=()
    for tool in dockerd:docker.io containerd:containerd podman:podman skopeo:skopeo docker-registry:docker-registry \
        openssl:openssl debootstrap:debootstrap umoci:umoci buildah:buildah \
        slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge; do
        command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
python3 -m pip install -q -r requirements-test.txt
export TAREXPORT_REQUIRE_ENGINES=1

# The real-world corpus (tests/test_real_world.py) starts from a debootstrapped Debian:
# on a whole run, debootstrap starts now, in the background, so its download overlaps the
# first tests; the corpus waits for it (or runs debootstrap itself when run alone).
prepared=""
if [ $# -eq 0 ] && [ -z "${TAREXPORT_DEBIAN_ROOT:-}" ] && [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
    prepared="$(mktemp -d /tmp/txdebian.XXXXXX)"
    export TAREXPORT_DEBIAN_ROOT="$prepared/root"
    python3 -m tests.realworld "$TAREXPORT_DEBIAN_ROOT" >"$prepared/log" 2>&1 &
fi
status=0
python3 -m pytest -p no:cacheprovider --durations=40 "$@" || status=$?
if [ -n "$prepared" ]; then
    wait || true  # a run that ended early waits for debootstrap (about half a minute)
    rm -rf --one-file-system "$prepared"
fi
exit "$status"
