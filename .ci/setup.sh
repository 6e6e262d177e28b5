#!/usr/bin/env bash
# Prepare a fresh machine: .venv with the package and its dev tools, redis-server, chromium.
# Idempotent and quiet; a failing step prints its output. Safe to run from any directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

# Run a command silently; on failure show its output and stop.
quietly() {
    local log
    log="$(mktemp)"
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        say "failed: $*"
        exit 1
    fi
    rm -f "$log"
}

is_py311() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

# --- Python virtual environment -------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
    python=""
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null && is_py311 "$candidate"; then
            python="$candidate"
            break
        fi
    done
    if [[ -z "$python" ]]; then
        say "tiercache needs Python >= 3.11, but neither python3.11 nor python3 is one."
        say "Install it (e.g. 'sudo apt-get install -y python3 python3-venv' on Debian 12+) and rerun."
        exit 1
    fi
    say "creating .venv with $("$python" --version 2>&1)"
    if ! "$python" -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        say "'$python -m venv' failed; on Debian/Ubuntu install the venv module:"
        say "  sudo apt-get install -y python3-venv"
        exit 1
    fi
elif ! is_py311 .venv/bin/python; then
    say ".venv uses $(.venv/bin/python --version 2>&1); tiercache needs >= 3.11. Remove .venv and rerun."
    exit 1
fi

stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -e "$stamp" ]]; then
    say "installing tiercache[django,dev] into .venv"
    quietly .venv/bin/pip install -q --upgrade pip
    quietly .venv/bin/pip install -q -e ".[django,dev]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi

# --- System packages ----------------------------------------------------------------
apt_updated=""
apt_install() {
    if [[ -z "$apt_updated" ]]; then
        quietly env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
have() { command -v "$1" >/dev/null; }

if ! have redis-server; then
    if [[ "$(id -u)" -eq 0 ]] && have apt-get; then
        say "installing redis-server (the tests start private servers; 6379 is never used)"
        apt_install redis-server
    else
        say "redis-server is missing. Install it, then rerun:"
        say "  sudo apt-get install -y redis-server"
        exit 1
    fi
fi

if ! have chromium; then
    if [[ "$(id -u)" -eq 0 ]] && have apt-get; then
        say "installing chromium for the browser tests"
        # Not fatal: without it only the browser tests skip (e.g. no 'chromium' package on Ubuntu).
        if ! (apt_install chromium); then
            say "warning: could not install chromium, so the browser tests will be skipped."
        fi
    else
        say "warning: chromium is missing, so the browser tests will be skipped."
        say "  to run them: sudo apt-get install -y chromium"
    fi
fi
