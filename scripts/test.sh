#!/usr/bin/env bash
# THE test command: ./scripts/test.sh
#
# 1. provisions what the suites need (scripts/setup-peers.sh: Python venv with XenAPI, npm
#    xen-api, apt packages when some are listed), idempotently;
# 2. runs every test of the workspace: doc tests, then every target with cargo-nextest when it is
#    installed (else plain `cargo test --workspace`, which includes the doc tests).
#
# Targets: libs, bins, integration tests and examples (built in test mode) — i.e. `--all-targets`
# minus benches. Benches are `harness = false` binaries that print figures: nextest would run each
# one in full just to list its tests (and then reject its output), so they stay out of the test
# run; `cargo clippy --all-targets` in .ci/run still compiles them. Run them with `cargo bench`.
#
# Exits non-zero if anything failed; the last line printed is the test runner's own summary.
# With arguments, runs only the runner with them (no doc tests): `./scripts/test.sh -p xo-tests`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

section() { printf '\n==> %s\n' "$*"; }

section "provisioning peers (scripts/setup-peers.sh)"
./scripts/setup-peers.sh

if [ "${CI:-}" = "true" ]; then
    # one clean build: incremental artefacts only cost time and disk in a fresh clone
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

TARGETS="--lib --bins --tests --examples"
NEXTEST=(cargo nextest run --config-file "$ROOT/scripts/nextest.toml")

status=0
if [ "$#" -gt 0 ]; then
    # A focused run (e.g. `./scripts/test.sh -p xo-tests` or `./scripts/test.sh peers`): the
    # arguments go to the runner as they are; doc tests are left out.
    if cargo nextest --version >/dev/null 2>&1; then
        section "cargo nextest run $TARGETS $*"
        "${NEXTEST[@]}" $TARGETS "$@" || status=$?
    else
        section "cargo test $*"
        cargo test --no-fail-fast "$@" || status=$?
    fi
elif cargo nextest --version >/dev/null 2>&1; then
    section "doc tests (cargo test --workspace --doc)"
    doc_status=0
    cargo test --workspace --doc || doc_status=$?
    section "all targets but benches (cargo nextest run --workspace $TARGETS)"
    "${NEXTEST[@]}" --workspace $TARGETS || status=$?
    if [ "$doc_status" -ne 0 ]; then
        echo "doc tests FAILED (exit $doc_status, see above)" >&2
        [ "$status" -ne 0 ] || status="$doc_status"
    fi
else
    section "cargo-nextest not installed: cargo test --workspace (includes doc tests)"
    cargo test --workspace --no-fail-fast || status=$?
fi
exit "$status"
