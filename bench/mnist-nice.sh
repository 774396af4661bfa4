#!/usr/bin/env bash
# bench/mnist-nice.sh: what `--compute-nice` trades, measured. The mnist
# server (target/release/modelarts-init-mnist) at each nice of BENCH_NICES
# (default "19 0"), in BENCH_ROUNDS (3) interleaved rounds, under wrk
# (2 threads, c=16, 10 s after a 3 s warm-up, bench/mnist-multipart.lua
# posting bench/mnist.sh's photo), first alone, then beside BENCH_HOGS (2)
# CPU-bound processes at nice 0 (`yes >/dev/null`: a log shipper or a
# second job in the same container). Prints req/s, p50 and p99 per run and
# the medians per nice. The default 19 is for the p99 of the first case;
# 0 for the throughput of the second (README.md, `--compute-nice`).
#
# Knobs: BENCH_NICES, BENCH_ROUNDS, BENCH_HOGS, BENCH_DURATION (10s),
# BENCH_IMAGE and BENCH_EXPECT (default: bench/mnist.sh's photo, a 7).
# Builds the server if absent (never rebuilds it). About 1 min per nice and
# round. Raw wrk outputs go to bench/out/mnist-nice-<UTC time>/. The exit
# status says whether it ran, not which nice won.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
ROOT=$PWD
NICES=${BENCH_NICES:-19 0}
ROUNDS=${BENCH_ROUNDS:-3}
HOGS=${BENCH_HOGS:-2}
DURATION=${BENCH_DURATION:-10s}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/modelarts-init-mnist
OUT=$ROOT/bench/out/mnist-nice-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

need_tools wrk curl
build_if_absent release "$BIN" -- --bin modelarts-init-mnist
export BENCH_IMAGE=${BENCH_IMAGE:-$ROOT/bench/out/mnist-photo/photo.jpg}
export BENCH_EXPECT=${BENCH_EXPECT:-7}
[[ -f $BENCH_IMAGE ]] || die "no $BENCH_IMAGE: run bench/mnist.sh once (it makes the photo) or set BENCH_IMAGE"
stop_started_on_exit

# one NICE HOGS ROUND: a server, HOGS busy loops, warm-up, the measured run
one() {
    local nice=$1 hogs=$2 tag="nice$1-hogs$2-r$3" port k
    port=$(next_port 18480)
    MODELARTS_INIT_COMPUTE_NICE=$nice "$BIN" --listen "127.0.0.1:$port" \
        --drain-delay 0s --stop-timeout 2s >"$OUT/server-$tag.log" 2>&1 &
    stop_later $! 5
    wait_http "http://127.0.0.1:$port/health" '"health": *"true"' 60 ||
        die "the server did not become healthy: $OUT/server-$tag.log"
    for ((k = 0; k < hogs; k++)); do
        yes >/dev/null &
        stop_later $!
    done
    wrk -t2 -c16 -d3s --timeout 10s -s "$ROOT/bench/mnist-multipart.lua" \
        "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
    wrk -t2 -c16 -d"$DURATION" --timeout 10s --latency -s "$ROOT/bench/mnist-multipart.lua" \
        "http://127.0.0.1:$port/" >"$OUT/wrk-$tag.txt" 2>&1 || true
    stop_started
    read -r rps p50 p99 non se _ _ wrong <<<"$(wrk_summary "$OUT/wrk-$tag.txt")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$nice" "$hogs" "$3" "$rps" "$p50" "$p99" \
        "$non" "$se" "$wrong" >>"$OUT/results.tsv"
    say "$(printf 'nice %2s  hogs %s  round %s: %8.1f req/s  p50 %8.2f ms  p99 %8.2f ms  non-2xx %s  socket errors %s  wrong %s' \
        "$nice" "$hogs" "$3" "$rps" "$p50" "$p99" "$non" "$se" "$wrong")"
}

say "mnist-nice: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), nices $NICES, $ROUNDS rounds, $HOGS hogs, wrk c=16 $DURATION"
for hogs in 0 "$HOGS"; do
    for ((r = 1; r <= ROUNDS; r++)); do
        for nice in $NICES; do one "$nice" "$hogs" "$r"; done
    done
done
# med NICE HOGS COLUMN: the median of results.tsv's COLUMN over the rounds
med() {
    awk -F'\t' -v n="$1" -v h="$2" -v c="$3" '$1 == n && $2 == h { print $c }' "$OUT/results.tsv" | median
}
say "medians (req/s, p99 ms):"
for hogs in 0 "$HOGS"; do
    for nice in $NICES; do
        say "  nice $nice, hogs $hogs: $(med "$nice" "$hogs" 4) req/s, p99 $(med "$nice" "$hogs" 6) ms"
    done
done
say "raw results: ${OUT#"$ROOT"/}/"
