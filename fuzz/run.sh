#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60) on a scratch copy
# of its committed seeds (fuzz/corpus/<target>/seed-*), so the committed corpus
# never grows. Prints executions per target; exits non-zero on any crash,
# with the crash artifact's path in the output.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
seconds="${1:-60}"
shift || true
case "$seconds" in
    ''|*[!0-9]*) echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "== installing the nightly toolchain (cargo-fuzz needs -Zsanitizer)"
    rustup toolchain install nightly --profile minimal || exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz || cargo install cargo-fuzz || exit 1
fi

cd "$here" || exit 1
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "== building ${#targets[@]} fuzz targets"
cargo +nightly fuzz build || exit 1

scratch="$(mktemp -d "${TMPDIR:-/tmp}/custody-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
declare -A execs status
failed=0
for t in "${targets[@]}"; do
    corpus="$scratch/corpus-$t"
    log="$scratch/$t.log"
    mkdir -p "$corpus" "$here/artifacts/$t"
    if [ -d "corpus/$t" ]; then
        cp corpus/"$t"/seed-* "$corpus"/ 2>/dev/null || true
    fi
    echo "== fuzzing $t for ${seconds}s"
    # The scratch corpus comes first: libFuzzer writes new inputs there only.
    cargo +nightly fuzz run "$t" "$corpus" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    n="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n1)"
    [ -n "$n" ] || n="$(grep -oE '^#[0-9]+[[:space:]]+DONE' "$log" | grep -oE '[0-9]+' | tail -n1)"
    execs[$t]="${n:-?}"
    if [ "$rc" -eq 0 ]; then
        status[$t]="ok"
    else
        failed=1
        status[$t]="CRASH (exit $rc)"
        echo "-- $t failed; end of its log:"
        tail -n 60 "$log"
        grep -E 'Test unit written to|artifact_prefix|Reproduce with' "$log" || true
    fi
done

echo
printf '%-20s %15s  %s\n' target executions status
for t in "${targets[@]}"; do
    printf '%-20s %15s  %s\n' "$t" "${execs[$t]}" "${status[$t]}"
done
if [ "$failed" -ne 0 ]; then
    echo "fuzzing found a crash: reproduce with 'cd fuzz && cargo +nightly fuzz run TARGET ARTIFACT'"
    exit 1
fi
