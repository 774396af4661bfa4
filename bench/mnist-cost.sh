#!/usr/bin/env bash
# bench/mnist-cost.sh: what one upload costs the mnist server, counted in
# instructions, and what that count allows on this machine. It answers the
# question bench/mnist.sh cannot on a shared machine whose speed drifts:
# is a change of req/s our code or the machine?
#
# 1. Instructions per upload, by part: `modelarts-init-mnist` (the
#    `symbols` profile: release with its symbol table) runs under
#    valgrind's callgrind; one keep-alive client (Python's http.client)
#    POSTs the bench photo BENCH_WARM times, the counters are zeroed, then
#    BENCH_UPLOADS more. callgrind counts every thread's instructions
#    exactly, whatever else the machine runs. Parts: decode
#    (`imaging::decode::decode`), preprocess (`preprocess::preprocess`),
#    the model (`Model::predict`), and the rest of the server (hyper,
#    multer, the queue, logging): the total minus the three. The rest is
#    printed as a ratio of the compute (decode + preprocess + model), the
#    baseline measured in the same run.
#    callgrind counts user space only (not the kernel's socket and futex
#    work) and runs the threads one at a time: the rest is our code's and
#    its crates' share of the instructions, not of the CPU time.
# 2. The machine's speed on that code: `--bench-stages IMAGE S end_to_end`
#    (the release build, one thread) alone, then two at once pinned to
#    cores 0 and 1, as the server's two compute threads run under load;
#    BENCH_ROUNDS (3) rounds of both, interleaved; the medians of the best
#    µs per upload (each core's shown too) and the ratio both/alone. With
#    the instruction count this gives instructions per µs per core with
#    both cores busy. The machine's speed drifts: compare rounds.
# 3. What 10x python-plain needs: with python-plain's req/s at c=16 from
#    the newest bench/out/mnist-*/results.tsv (BENCH_PLAIN_RPS overrides;
#    the figure's age is printed: it and step 2 are not from one moment),
#    the most CPU one upload may take on all cores (cores x 1 s / (10 x
#    that rate), for the server, wrk and the kernel together) and, at the
#    speed of step 2, the most instructions: compared with step 1's parts.
#
# Knobs: BENCH_UPLOADS (300), BENCH_WARM (50), BENCH_SECONDS (3, per
# --bench-stages run), BENCH_IMAGE (default: bench/mnist.sh's photo, made
# by it), BENCH_PLAIN_RPS, BENCH_ROUNDS. About 1.5 min after the builds.
# Unlike the other scripts it always runs `cargo build` for both binaries
# (a no-op when they are current), as its figures name the commit; the
# first `symbols` build compiles every crate: about 10 min on 2 cores. Needs valgrind, curl and
# python3 (installed as root if missing). Raw outputs go to
# bench/out/mnist-cost-<UTC time>/. The exit status says whether it ran.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
ROOT=$PWD
UPLOADS=${BENCH_UPLOADS:-300}
WARM=${BENCH_WARM:-50}
SECONDS_PER_RUN=${BENCH_SECONDS:-3}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SYM=$TARGET_DIR/symbols/modelarts-init-mnist
REL=$TARGET_DIR/release/modelarts-init-mnist
OUT=$ROOT/bench/out/mnist-cost-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

need_tools valgrind callgrind_annotate:valgrind callgrind_control:valgrind curl python3 taskset:util-linux
((NCPU = $(nproc), NCPU >= 2)) || die "step 2 needs 2 cores; this machine has $NCPU"
echo "building (cargo build: a no-op when current) ..." >&2
cargo build --release --bin modelarts-init-mnist >&2
cargo build --profile symbols --bin modelarts-init-mnist >&2
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
[[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || COMMIT="$COMMIT + uncommitted changes"

IMAGE=${BENCH_IMAGE:-$ROOT/bench/out/mnist-photo/photo.jpg}
[[ -f $IMAGE ]] || die "no $IMAGE: run bench/mnist.sh once (it makes the photo) or set BENCH_IMAGE"
cp "$IMAGE" "$OUT/"

# ------------------------------------------------ 1. instructions per upload
PORT=$(next_port 18380)
stop_started_on_exit
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
    "$SYM" --listen "127.0.0.1:$PORT" --drain-delay 0s --stop-timeout 2s >"$OUT/server.log" 2>&1 &
VG=$!
stop_later "$VG" 30
wait_http "http://127.0.0.1:$PORT/health" '"health": *"true"' 300 ||
    { cat "$OUT/server.log" >&2; die "the server under valgrind did not become healthy"; }
uploads() { # count: POSTs the image COUNT times on one connection; dies on a wrong answer
    python3 - "$PORT" "$1" "$IMAGE" <<'PYEOF'
import http.client, sys
port, count, image = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "rb").read()
b = "bench-mnist-cost-boundary"
body = (f'--{b}\r\nContent-Disposition: form-data; name="images"; filename="photo.jpg"\r\n'
        'Content-Type: image/jpeg\r\n\r\n').encode() + image + f"\r\n--{b}--\r\n".encode()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
answers = set()
for _ in range(count):
    conn.request("POST", "/", body, {"Content-Type": f"multipart/form-data; boundary={b}"})
    r = conn.getresponse()
    answers.add((r.status, r.read()))
if len(answers) != 1 or next(iter(answers))[0] != 200:
    sys.exit(f"unexpected answers: {answers}")
print(next(iter(answers))[1].decode())
PYEOF
}
uploads "$WARM" >"$OUT/answer.txt"
callgrind_control -z "$VG" >>"$OUT/callgrind_control.log" 2>&1 ||
    die "callgrind_control -z failed: $OUT/callgrind_control.log"
uploads "$UPLOADS" >>"$OUT/answer.txt"
callgrind_control -d "$VG" >>"$OUT/callgrind_control.log" 2>&1 ||
    die "callgrind_control -d failed: $OUT/callgrind_control.log"
stop_started
DUMP=$(ls "$OUT"/callgrind.out.* | head -1)
callgrind_annotate --inclusive=yes --threshold=100 "$DUMP" >"$OUT/annotate.txt" 2>/dev/null
# instructions of the first inclusive line whose function matches PATTERN
incl() { awk -v pat="$1" '$0 ~ pat { gsub(",", "", $1); print $1; exit }' "$OUT/annotate.txt"; }
TOTAL=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' "$OUT/annotate.txt")
DEC=$(incl ':modelarts_init::imaging::decode::decode \\[')
PRE=$(incl ':modelarts_init::imaging::preprocess::steps::preprocess \\[')
MOD=$(incl 'Predict>::predict \\[')
[[ -n $TOTAL && -n $DEC && -n $PRE && -n $MOD ]] || die "cannot find the parts in $OUT/annotate.txt"
per() { calc 'a / b / 1000' "$1" "$UPLOADS"; } # thousands of instructions per upload
COMPUTE=$((DEC + PRE + MOD))
REST=$((TOTAL - COMPUTE))

# ------------------------------------------------ 2. the machine's speed
ROUNDS=${BENCH_ROUNDS:-3}
stage() { awk '$1 == "end_to_end" { print $2 }' "$1"; } # best µs per call
: >"$OUT/rounds.txt"
for r in $(seq "$ROUNDS"); do
    "$REL" --bench-stages "$IMAGE" "$SECONDS_PER_RUN" end_to_end >"$OUT/alone-$r.txt"
    taskset -c 0 "$REL" --bench-stages "$IMAGE" "$SECONDS_PER_RUN" end_to_end >"$OUT/both-$r-0.txt" &
    B0=$!
    taskset -c 1 "$REL" --bench-stages "$IMAGE" "$SECONDS_PER_RUN" end_to_end >"$OUT/both-$r-1.txt"
    wait "$B0"
    echo "$(stage "$OUT/alone-$r.txt") $(stage "$OUT/both-$r-0.txt") $(stage "$OUT/both-$r-1.txt")" >>"$OUT/rounds.txt"
done
ALONE=$(awk '{ print $1 }' "$OUT/rounds.txt" | median)
BOTH=$(awk '{ print ($2 + $3) / 2 }' "$OUT/rounds.txt" | median)
PER_UPLOAD=$(calc 'a / b' "$COMPUTE" "$UPLOADS")   # compute instructions per upload
SPEED_BOTH=$(calc 'a / b' "$PER_UPLOAD" "$BOTH")   # per µs, per core, both busy
SPEED_ALONE=$(calc 'a / b' "$PER_UPLOAD" "$ALONE")

# ------------------------------------------------ 3. what 10x needs
PLAIN=${BENCH_PLAIN_RPS:-}
if [[ -z $PLAIN ]]; then
    latest=$(ls -td "$ROOT"/bench/out/mnist-2*/ 2>/dev/null | while read -r d; do
        [[ -f $d/results.tsv ]] && { echo "$d"; break; }; done || true)
    if [[ -n $latest ]]; then
        PLAIN=$(awk -F'\t' '$1 == "python-plain" && $2 == 16 { print $3; exit }' "$latest/results.tsv")
        PLAIN_FROM="$(basename "$latest"), $((($(date +%s) - $(stat -c %Y "$latest/results.tsv")) / 60)) min ago"
    fi
else
    PLAIN_FROM="BENCH_PLAIN_RPS"
fi
say "mnist-cost: $(basename "$IMAGE"), $UPLOADS uploads after $WARM (one keep-alive connection); $(date -u +%FT%TZ), commit $COMMIT"
say ""
say "1. instructions per upload in the server (callgrind: user space, all threads, thousands):"
say "$(printf '   decode %.0fk, preprocess %.0fk, model %.0fk: compute %.0fk; rest of the server (HTTP, multipart, queue, logs) %.0fk = %.3f x the compute; total %.0fk' \
    "$(per "$DEC")" "$(per "$PRE")" "$(per "$MOD")" "$(per "$COMPUTE")" "$(per "$REST")" "$(calc 'a / b' "$REST" "$COMPUTE")" "$(per "$TOTAL")")"
say ""
say "2. end_to_end on one thread, best µs per upload, $ROUNDS rounds (alone, core 0 and core 1 at once): $(awk '{ printf "%s%s / %s %s", (NR > 1 ? "; " : ""), $1, $2, $3 }' "$OUT/rounds.txt")"
say "   medians: alone $ALONE, two at once $BOTH: both/alone = $(calc 'sprintf("%.2f", a / b)' "$BOTH" "$ALONE")"
say "$(printf '   = %.0f instructions per µs per core alone, %.0f with both cores busy' "$SPEED_ALONE" "$SPEED_BOTH")"
if [[ -n $PLAIN ]]; then
    BUDGET_US=$(calc "$NCPU * 1e6 / (10 * a)" "$PLAIN")
    BUDGET_K=$(calc 'a * b / 1000' "$BUDGET_US" "$SPEED_BOTH")
    say ""
    say "3. 10x python-plain ($PLAIN req/s at c=16, from $PLAIN_FROM) = $(calc '10 * a' "$PLAIN") uploads/s: at most $(printf '%.0f' "$BUDGET_US") µs of CPU per upload on $NCPU cores, for the server, wrk and the kernel together"
    say "$(printf '   = at most %.0fk instructions per upload at the both-busy speed; decode + model alone take %.0fk, all parts %.0fk (%.2f x the budget)' \
        "$BUDGET_K" "$(per $((DEC + MOD)))" "$(per "$TOTAL")" "$(calc 'a / b / 1000 / c' "$TOTAL" "$UPLOADS" "$BUDGET_K")")"
else
    say "3. skipped: no python-plain req/s (run bench/mnist.sh, or set BENCH_PLAIN_RPS)"
fi
say ""
say "raw results: ${OUT#"$ROOT"/}/"
