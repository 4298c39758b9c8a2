#!/usr/bin/env bash
# Starts xo-server in demo mode: two simulated XCP-ng pools (3 hosts, 50 VMs each) served in-process on
# loopback HTTPS and registered as servers. Prints the URL; sign in as admin@admin.net / admin.
# Extra arguments go to xo-server (e.g. --listen 127.0.0.1:8080, --data-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir="${XO_DEMO_DATA_DIR:-$(mktemp -d -t xo-demo.XXXXXX)}"
echo "demo data directory: $data_dir" >&2
echo "credentials: admin@admin.net / admin" >&2
exec cargo run --release -p xo-server -- --demo --data-dir "$data_dir" "$@"
