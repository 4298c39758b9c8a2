#!/usr/bin/env bash
# Provision what the peer-compatibility suites (tests/tests/peers.rs) need.
#
# Idempotent: each step checks whether its result is already there and up to
# date, so running it again costs a few hundred milliseconds.
#
#   .venv/                    python3 venv with the official XenAPI SDK (PyPI `xenapi`)
#   tests/peers/node_modules/ Xen Orchestra's XAPI client (npm `xen-api`), XO client (npm `xo-lib`),
#                             noVNC (npm `@novnc/novnc`) and `playwright-core` (drives Debian's chromium),
#                             from package-lock.json
#   apt packages              see APT_WANTED below (node, npm, chromium, slapd, ldap-utils)
#
# Pinned versions live here (Python) and in tests/peers/package.json + package-lock.json (npm).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

XENAPI_VERSION="26.21.1"
VENV="$ROOT/.venv"
PEERS_NODE="$ROOT/tests/peers"

log() { printf '==> setup-peers: %s\n' "$*"; }

need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        printf 'setup-peers: required command %q not found (%s)\n' "$1" "$2" >&2
        exit 1
    fi
}

# ---------------------------------------------------------------------------
# apt packages (Debian). Later suites need e.g. chromium (noVNC console test)
# and slapd (auth-ldap). Add them to APT_WANTED as "command:package" pairs: a
# package is installed only when its command is missing, `apt-get update` runs
# at most once per invocation, and nothing happens when all commands exist.
# ---------------------------------------------------------------------------
APT_WANTED=(
    "node:nodejs"      # npm xen-api peer (needs Node >= 18)
    "npm:npm"
    "chromium:chromium" # headless browser for the noVNC console test (xo-server tests/api/console.rs)
    "slapd:slapd"      # OpenLDAP server for plugins/auth-ldap tests (slapd, slapadd, slaptest)
    "ldapsearch:ldap-utils"
)

apt_updated=0
apt_install() {
    local missing=()
    local pair cmd pkg
    for pair in "$@"; do
        cmd="${pair%%:*}"
        pkg="${pair#*:}"
        if ! command -v "$cmd" >/dev/null 2>&1; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    need apt-get "install ${missing[*]} by hand"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        "${sudo[@]}" apt-get update -qq
        apt_updated=1
    fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
}

if [ "${#APT_WANTED[@]}" -gt 0 ]; then
    apt_install "${APT_WANTED[@]}"
fi

# ---------------------------------------------------------------------------
# Python: official XenAPI SDK in .venv
# ---------------------------------------------------------------------------
need python3 "install Python 3 (with the venv module)"

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi

if "$VENV/bin/python" - "$XENAPI_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(0 if version("xenapi") == sys.argv[1] else 1)
EOF
then
    log "xenapi $XENAPI_VERSION already in .venv"
else
    log "pip install xenapi==$XENAPI_VERSION"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "xenapi==$XENAPI_VERSION"
fi
"$VENV/bin/python" -c 'import XenAPI' # fail loudly if the install is broken

# ---------------------------------------------------------------------------
# Node: npm `xen-api` in tests/peers/node_modules, exactly as locked
# ---------------------------------------------------------------------------
need node "install Node.js >= 18"
need npm "install npm"

stamp="$PEERS_NODE/node_modules/.package-lock.json"
if [ -f "$stamp" ] && [ ! "$PEERS_NODE/package-lock.json" -nt "$stamp" ] \
    && [ -f "$PEERS_NODE/node_modules/xen-api/package.json" ] \
    && [ -f "$PEERS_NODE/node_modules/xo-lib/package.json" ] \
    && [ -f "$PEERS_NODE/node_modules/@novnc/novnc/package.json" ] \
    && [ -f "$PEERS_NODE/node_modules/playwright-core/package.json" ]; then
    log "tests/peers/node_modules up to date"
else
    log "npm ci in tests/peers"
    (cd "$PEERS_NODE" && npm ci --no-audit --no-fund --loglevel=error)
fi
# fail loudly if the install is broken
(cd "$PEERS_NODE" && node --input-type=module -e 'await import("xen-api"); await import("xo-lib"); await import("playwright-core")')

log "done"
