#!/usr/bin/env bash
# Prepare a fresh Debian / Raspberry Pi OS machine: mosquitto (for the demo and the tests),
# with EXTRAS=test also openssl and chromium (TLS and browser tests),
# a virtual environment in .venv and edgeagent installed into it (a real `pip install .`).
# Usage: bash scripts/setup.sh [EXTRAS]     e.g. bash scripts/setup.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi

apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "setup: please install $* with your package manager" >&2
        return 1
    fi
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$@" >/dev/null
}

if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    echo "setup: installing mosquitto (MQTT broker used by the demo and the tests)"
    apt_install mosquitto
fi

if [ "$extras" = test ] && ! command -v openssl >/dev/null; then
    echo "setup: installing openssl (the TLS tests make their own certificates)"
    apt_install openssl
fi

if [ "$extras" = test ] && ! command -v chromium >/dev/null; then
    echo "setup: installing chromium (headless browser for tests/test_browser.py)"
    apt_install chromium
fi

if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        rm -rf .venv
        echo "setup: installing python3-venv"
        apt_install python3-venv
        python3 -m venv .venv
    fi
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
target="."
if [ -n "$extras" ]; then target=".[$extras]"; fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall \
    --no-deps "$target" >/dev/null
.venv/bin/python -m pip install --quiet --disable-pip-version-check "$target" >/dev/null
echo "setup: edgeagent $(.venv/bin/edgeagent --version | cut -d' ' -f2) installed in .venv"
