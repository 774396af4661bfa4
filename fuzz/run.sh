#!/usr/bin/env bash
# fuzz/run.sh [SECONDS] [TARGET...]: a bounded run of the cargo fuzz targets
# (all of them by default), SECONDS in all (default 180, shared equally),
# each from its seeds (fuzz/seeds/<target>, read-only) into a fresh corpus
# in a temp dir. Exits non-zero on the first crash, leak, timeout (20 s per
# input) or failed build; the input that did it is in fuzz/artifacts/.
# .ci/run calls it; fuzz/README.md says how to run longer.
#
# Needs cargo-fuzz (installed from crates.io with `cargo install` if
# missing) and a nightly toolchain (`rustup toolchain list`); without one,
# the stable toolchain is used with RUSTC_BOOTSTRAP=1 and no sanitizer
# (or with FUZZ_TOOLCHAIN=stable).
# Builds go to $FUZZ_TARGET_DIR (default /var/cache/modelarts-init/fuzz-target),
# outside the clone, so that the next run on this machine is warm.
set -euo pipefail
cd "$(dirname "$0")"

TOTAL=${1:-180}
shift || true
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(model_config cli image multipart http_front)
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-/var/cache/modelarts-init/fuzz-target}
mkdir -p "$CARGO_TARGET_DIR"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io" >&2
    cargo install --locked cargo-fuzz
fi
# FUZZ_TOOLCHAIN=stable forces the fallback (to try what a machine
# without nightly does); the default picks nightly when rustup has it.
if [[ ${FUZZ_TOOLCHAIN:-auto} != stable ]] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly) flags=()
else
    echo "fuzz: no nightly toolchain; stable with RUSTC_BOOTSTRAP=1, no sanitizer" >&2
    export RUSTC_BOOTSTRAP=1
    toolchain=() flags=(--sanitizer none)
fi

started=$SECONDS
cargo "${toolchain[@]}" fuzz build "${flags[@]}"
built=$((SECONDS - started))
each=$((TOTAL / ${#TARGETS[@]}))
total_runs=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${TARGETS[@]}"; do
    mkdir -p "$work/$t"
    echo "fuzz: $t for ${each}s" >&2
    if ! cargo "${toolchain[@]}" fuzz run "${flags[@]}" "$t" "$work/$t" "seeds/$t" -- \
        -max_total_time="$each" -timeout=20 -print_final_stats=1 >"$work/$t.log" 2>&1; then
        tail -60 "$work/$t.log" >&2
        echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
    echo "fuzz: $t ok, ${runs:-?} inputs, corpus $(ls "$work/$t" | wc -l) entries" >&2
    total_runs=$((total_runs + ${runs:-0}))
done
echo "fuzz: all ${#TARGETS[@]} targets ok, $total_runs inputs, no finding; build ${built}s, total $((SECONDS - started))s" >&2
