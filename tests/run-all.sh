#!/usr/bin/env bash
# Install what the tests need on a fresh Debian 12 machine (as root), then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=()
    for tool in dockerd:docker.io containerd:containerd podman:podman skopeo:skopeo docker-registry:docker-registry openssl:openssl; do
        command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
python3 -m pip install -q -r requirements-test.txt
export TAREXPORT_REQUIRE_ENGINES=1
exec python3 -m pytest -p no:cacheprovider "$@"
