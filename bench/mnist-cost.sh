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
# 2. The machine's speed on that code: `--bench-stages IMAGE S end_to_end`
#    (the release build, one thread) alone, then two at once pinned to
#    cores 0 and 1, as the server's two compute threads run under load; µs
#    per upload and the ratio both/alone. With the instruction count this
#    gives instructions per µs per core with both cores busy.
# 3. What 10x python-plain needs: with python-plain's req/s at c=16 from
#    the newest bench/out/mnist-*/results.tsv (BENCH_PLAIN_RPS overrides),
#    the most CPU one upload may take on all cores (cores x 1 s / (10 x
#    that rate), for the server, wrk and the kernel together) and, at the
#    speed of step 2, the most instructions: compared with step 1's parts.
#
# Knobs: BENCH_UPLOADS (300), BENCH_WARM (50), BENCH_SECONDS (3, per
# --bench-stages run), BENCH_IMAGE (default: bench/mnist.sh's photo, made
# by it), BENCH_PLAIN_RPS. About 1 min after the builds (the first
# `symbols` build compiles every crate again: about 10 min on 2 cores). Needs valgrind, curl and
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

need_tools valgrind callgrind_annotate:valgrind callgrind_control:valgrind curl python3
build_if_absent release "$REL" -- --bin modelarts-init-mnist
build_if_absent symbols "$SYM" -- --bin modelarts-init-mnist

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
callgrind_control -z "$VG" >/dev/null 2>&1
uploads "$UPLOADS" >>"$OUT/answer.txt"
callgrind_control -d "$VG" >/dev/null 2>&1
stop_started
DUMP=$(ls "$OUT"/callgrind.out.* | head -1)
callgrind_annotate --inclusive=yes "$DUMP" >"$OUT/annotate.txt" 2>/dev/null
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
stage() { awk '$1 == "end_to_end" { print $2 }' "$1"; } # best µs per call
"$REL" --bench-stages "$IMAGE" "$SECONDS_PER_RUN" end_to_end >"$OUT/alone.txt"
taskset -c 0 "$REL" --bench-stages "$IMAGE" "$SECONDS_PER_RUN" end_to_end >"$OUT/both-0.txt" &
B0=$!
taskset -c 1 "$REL" --bench-stages "$IMAGE" "$SECONDS_PER_RUN" end_to_end >"$OUT/both-1.txt"
wait "$B0"
ALONE=$(stage "$OUT/alone.txt")
BOTH=$(calc '(a + b) / 2' "$(stage "$OUT/both-0.txt")" "$(stage "$OUT/both-1.txt")")
SPEED=$(calc 'a / b' "$COMPUTE" "$((UPLOADS))")        # compute instructions per upload
SPEED_BOTH=$(calc 'a / b' "$SPEED" "$BOTH")            # per µs, per core, both busy
SPEED_ALONE=$(calc 'a / b' "$SPEED" "$ALONE")

# ------------------------------------------------ 3. what 10x needs
PLAIN=${BENCH_PLAIN_RPS:-}
if [[ -z $PLAIN ]]; then
    latest=$(ls -td "$ROOT"/bench/out/mnist-2*/ 2>/dev/null | while read -r d; do
        [[ -f $d/results.tsv ]] && { echo "$d"; break; }; done || true)
    [[ -n $latest ]] && PLAIN=$(awk -F'\t' '$1 == "python-plain" && $2 == 16 { print $3; exit }' "$latest/results.tsv")
fi
NCPU=$(nproc)

say "mnist-cost: $(basename "$IMAGE"), $UPLOADS uploads after $WARM (one keep-alive connection); $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
say ""
say "1. instructions per upload in the server (callgrind, all threads, thousands):"
say "$(printf '   decode %.0fk, preprocess %.0fk, model %.0fk: compute %.0fk; rest of the server (HTTP, multipart, queue, logs) %.0fk = %.3f x the compute; total %.0fk' \
    "$(per "$DEC")" "$(per "$PRE")" "$(per "$MOD")" "$(per "$COMPUTE")" "$(per "$REST")" "$(calc 'a / b' "$REST" "$COMPUTE")" "$(per "$TOTAL")")"
say ""
say "2. end_to_end on one thread (best µs per upload): alone $ALONE, two at once on cores 0 and 1 $BOTH: both/alone = $(calc 'sprintf("%.2f", a / b)' "$BOTH" "$ALONE")"
say "$(printf '   = %.0f instructions per µs per core alone, %.0f with both cores busy' "$SPEED_ALONE" "$SPEED_BOTH")"
if [[ -n $PLAIN ]]; then
    BUDGET_US=$(calc "$NCPU * 1e6 / (10 * a)" "$PLAIN")
    BUDGET_K=$(calc 'a * b / 1000' "$BUDGET_US" "$SPEED_BOTH")
    say ""
    say "3. 10x python-plain ($PLAIN req/s at c=16) = $(calc '10 * a' "$PLAIN") uploads/s: at most $(printf '%.0f' "$BUDGET_US") µs of CPU per upload on $NCPU cores, for the server, wrk and the kernel together"
    say "$(printf '   = at most %.0fk instructions per upload at the both-busy speed; decode + model alone take %.0fk, all parts %.0fk (%.2f x the budget)' \
        "$BUDGET_K" "$(per $((DEC + MOD)))" "$(per "$TOTAL")" "$(calc 'a / b / 1000 / c' "$TOTAL" "$UPLOADS" "$BUDGET_K")")"
else
    say "3. skipped: no python-plain req/s (run bench/mnist.sh, or set BENCH_PLAIN_RPS)"
fi
say ""
say "raw results: ${OUT#"$ROOT"/}/"
