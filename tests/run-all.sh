#!/usr/bin/env bash
# Install what the tests need on a fresh Debian 12 machine (as root), then run the whole suite:
# every tier but timing on two workers at once, then the timing tier alone (README, Development).
# With arguments, they go to one pytest run as they are (e.g. `bash tests/run-all.sh -m unit`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # only what is missing, in one call, without recommends (they tripled the step's time)
    missing=()
    for tool in dockerd:docker.io containerd:containerd podman:podman skopeo:skopeo docker-registry:docker-registry \
        openssl:openssl debootstrap:debootstrap umoci:umoci buildah:buildah xz:xz-utils \
        slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge; do
        command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi
python3 -m pip install -q --disable-pip-version-check -r requirements-test.txt
export TAREXPORT_REQUIRE_ENGINES=1

if [ $# -gt 0 ]; then
    exec python3 -m pytest -p no:cacheprovider --durations=40 "$@"
fi

# The real-world corpus (tests/test_real_world.py) starts from a debootstrapped Debian:
# debootstrap starts now, in the background, so its download overlaps the first tests;
# the corpus waits for it (or runs debootstrap itself when run alone).
prepared=""
if [ -z "${TAREXPORT_DEBIAN_ROOT:-}" ] && [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
    prepared="$(mktemp -d /tmp/txdebian.XXXXXX)"
    export TAREXPORT_DEBIAN_ROOT="$prepared/root"
    python3 -m tests.realworld "$TAREXPORT_DEBIAN_ROOT" >"$prepared/log" 2>&1 &
fi
results="$(mktemp -d /tmp/txresults.XXXXXX)"
status=0
# Two workers on two cores: most tests wait on a process or a daemon half the time.
python3 -m pytest -p no:cacheprovider -m "not timing" -n 2 --dist loadgroup --durations=25 \
    --junitxml="$results/parallel.xml" || status=$?
# The speed checks measure the machine: nothing else may run beside them.
python3 -m pytest -p no:cacheprovider -m timing --durations=5 --junitxml="$results/timing.xml" || status=$?
if [ -n "$prepared" ]; then
    wait || true  # a run that ended early waits for debootstrap (about half a minute)
    rm -rf --one-file-system "$prepared"
fi
# One closing line for both runs (and the slowest tests of both).
python3 -m tests.junitsummary "$results/parallel.xml" "$results/timing.xml" || status=$?
rm -rf "$results"
exit "$status"
