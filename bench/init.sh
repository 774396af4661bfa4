#!/usr/bin/env bash
# bench/init.sh: what pure-init mode costs, next to tini.
#
# Measures, in one run, `modelarts-init --no-proxy` against `tini`:
#   1. Peak RSS: VmHWM of the init process (the whole process, its log
#      thread included; not its child) while it runs `sleep 30`, read
#      about 1 s after the child has started. The child is then killed;
#      nobody waits 30 s. Also printed, not graded:
#      the lifetime peak (ru_maxrss from /usr/bin/time) of `INIT -- true`,
#      which includes start-up and shutdown work that happens after the
#      1 s reading. It cannot read below /usr/bin/time's own forked copy
#      (about 1.2 MiB), so it means something for the bigger figure only.
#   2. Start-up + exit overhead: hyperfine (no shell, warm-up, many runs)
#      of `true`, `tini -- true` and `modelarts-init --no-proxy -- true`.
#      "Overhead" is an init's mean minus the mean of bare `true`, i.e. what
#      the init adds around one fork+exec+wait of a child that does nothing.
#   3. Binary size of the shipped modelarts-init and of tini's binary.
#
# How to read it: each section prints both figures and the ratio
# modelarts-init / tini (a ratio above 1 means modelarts-init costs more).
# The TARGETS block grades the two goals of pure-init mode:
#   peak RSS       target <= 4 MiB          must <= 5 MiB
#   start-up       target <= tini's + 1 ms  must <= 3x tini's overhead
# Times are graded on means; the median-based overhead is printed too,
# because on a shared, noisy machine a few slow runs move the mean. The
# exit status says whether the benchmark ran, not whether targets were met.
#
# Needs root only to install what is missing (apt-get: tini, hyperfine,
# jq, time). Builds the shipped binary (`cargo build --profile dist --bin
# modelarts-init`, the profile Dockerfile.example uses) if absent (after
# waiting for any running cargo), never rebuilds it: it measures whatever
# target/dist/modelarts-init is (BENCH_BIN=... to measure another build,
# e.g. target/release/modelarts-init). Raw results (hyperfine JSON, /proc
# status and smaps of both inits, versions, the printed summary) go to
# bench/out/init-<UTC time>/ (gitignored).
#
# Knobs (environment): BENCH_RUNS (default 1000), BENCH_WARMUP (100).
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

RUNS=${BENCH_RUNS:-1000}
WARMUP=${BENCH_WARMUP:-100}
BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/dist/modelarts-init}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=bench/out/init-$STAMP
mkdir -p "$OUT"

# shellcheck source=bench/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

# --- what we need --------------------------------------------------------
need_tools tini hyperfine jq /usr/bin/time:time
build_if_absent dist "$BIN" -- --bin modelarts-init
TINI=$(readlink -f "$(command -v tini)")

# --- the machine ---------------------------------------------------------
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit: $(GIT_OPTIONAL_LOCKS=0 git rev-parse --short HEAD 2>/dev/null || echo unknown)$(GIT_OPTIONAL_LOCKS=0 git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' (+ uncommitted changes)')"
    echo "binary: $BIN, $(stat -c %s "$BIN") bytes, built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M:%S UTC')"
    echo "tini: $TINI, $("$TINI" --version 2>&1 | head -n1)"
    echo "hyperfine: $(hyperfine --version)"
    echo "kernel: $(uname -sr), cpus: $(nproc), loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"

say "modelarts-init pure-init benchmark vs tini"
sed 's/^/  /' "$OUT/env.txt" | tee -a "$OUT/summary.txt"

# --- 1. peak RSS ---------------------------------------------------------
# Child pids of process $1, space-separated.
children_of() { cat /proc/"$1"/task/*/children 2>/dev/null || true; }

# Inits started below; whatever is left of them is killed on exit.
stop_started_on_exit

# peak_rss LABEL COMMAND...: runs COMMAND (an init wrapping `sleep 30`) in
# the background, waits for its child, then 1 s more, keeps its
# /proc/<pid>/{status,smaps_rollup,smaps}, stops it through its child, and
# sets HWM_KIB and RSS_LINE.
peak_rss() {
    local label=$1 pid kid="" i
    shift
    "$@" >"$OUT/rss-$label.log" 2>&1 </dev/null &
    pid=$!
    stop_later "$pid"
    for ((i = 0; i < 100; i++)); do
        kid=$(children_of "$pid" | awk '{print $1; exit}')
        [[ -n $kid && $(cat /proc/"$kid"/comm 2>/dev/null) == sleep ]] && break
        kid=""
        sleep 0.05
    done
    [[ -n $kid ]] || die "$label: its child \`sleep\` did not start (see $OUT/rss-$label.log)"
    sleep 1
    cp /proc/"$pid"/status "$OUT/rss-$label.status"
    cp /proc/"$pid"/smaps_rollup "$OUT/rss-$label.smaps_rollup"
    cp /proc/"$pid"/smaps "$OUT/rss-$label.smaps"
    # Stop it the way a child exit would: the init then exits by itself.
    kill -TERM "$kid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ $(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null || echo Z) == Z ]] && break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local f=$OUT/rss-$label.status
    HWM_KIB=$(awk '/^VmHWM:/ {print $2}' "$f")
    RSS_LINE=$(awk '/^(RssAnon|RssFile|Threads):/ {out = out sep $1 " " $2 ($1 == "Threads:" ? "" : " kB"); sep = ", "} END {print out}' "$f")
}

peak_rss tini "$TINI" -- sleep 30
TINI_HWM=$HWM_KIB TINI_RSS_LINE=$RSS_LINE
peak_rss modelarts-init "$BIN" --no-proxy -- sleep 30
MI_HWM=$HWM_KIB MI_RSS_LINE=$RSS_LINE

# life_peak LABEL COMMAND...: ru_maxrss in kB of COMMAND's whole run.
life_peak() {
    local label=$1
    shift
    /usr/bin/time -f %M -o "$OUT/life-$label.maxrss" "$@" >/dev/null 2>&1 </dev/null || true
    tail -n1 "$OUT/life-$label.maxrss"
}
TINI_LIFE=$(life_peak tini "$TINI" -- true)
MI_LIFE=$(life_peak modelarts-init "$BIN" --no-proxy -- true)

say ""
say "1. Peak RSS (VmHWM of the init process, child \`sleep 30\` running >= 1 s)"
say "$(printf '   %-16s %8.2f MiB  (%s kB; %s)' tini "$(calc 'a/1024' "$TINI_HWM")" "$TINI_HWM" "$TINI_RSS_LINE")"
say "$(printf '   %-16s %8.2f MiB  (%s kB; %s)' modelarts-init "$(calc 'a/1024' "$MI_HWM")" "$MI_HWM" "$MI_RSS_LINE")"
say "$(printf '   ratio modelarts-init / tini: %.2fx' "$(calc 'a/b' "$MI_HWM" "$TINI_HWM")")"
say "$(printf "   lifetime peak of 'INIT -- true', incl. shutdown (ru_maxrss, not graded): tini %.2f MiB, modelarts-init %.2f MiB" \
    "$(calc 'a/1024' "$TINI_LIFE")" "$(calc 'a/1024' "$MI_LIFE")")"

# --- 2. start-up + exit overhead -----------------------------------------
# $BIN as an absolute path (it is relative to the repo by default, absolute
# with an absolute BENCH_BIN or CARGO_TARGET_DIR).
BIN_ABS=$BIN
[[ $BIN == /* ]] || BIN_ABS=$PWD/$BIN
hyperfine --shell=none --warmup "$WARMUP" --runs "$RUNS" --style basic \
    --export-json "$OUT/hyperfine.json" \
    -n true 'true' \
    -n tini "'$TINI' -- true" \
    -n modelarts-init "'$BIN_ABS' --no-proxy -- true" \
    >"$OUT/hyperfine.txt" 2>&1 || die "hyperfine failed: see $OUT/hyperfine.txt"

# hstat NAME FIELD: a hyperfine figure of command NAME, in ms
hstat() { jq -r --arg n "$1" ".results[] | select(.command == \$n) | .$2 * 1000" "$OUT/hyperfine.json"; }
T_TRUE=$(hstat true mean) T_TINI=$(hstat tini mean) T_MI=$(hstat modelarts-init mean)
O_TINI=$(calc 'b-a' "$T_TRUE" "$T_TINI")
O_MI=$(calc 'b-a' "$T_TRUE" "$T_MI")
M_TRUE=$(hstat true median) M_TINI=$(hstat tini median) M_MI=$(hstat modelarts-init median)
MO_TINI=$(calc 'b-a' "$M_TRUE" "$M_TINI")
MO_MI=$(calc 'b-a' "$M_TRUE" "$M_MI")

say ""
say "2. Start-up + exit time (hyperfine -N, $WARMUP warm-up, $RUNS runs each)"
for n in true tini modelarts-init; do
    say "$(printf '   %-16s mean %7.3f ms  ± %6.3f   median %7.3f   min %7.3f' "$n" \
        "$(hstat "$n" mean)" "$(hstat "$n" stddev)" "$(hstat "$n" median)" "$(hstat "$n" min)")"
done
say "$(printf '   overhead above true (means):   tini %.3f ms, modelarts-init %.3f ms' "$O_TINI" "$O_MI")"
say "$(printf '   ratio modelarts-init / tini overhead: %.2fx (%+.3f ms)' "$(calc 'b/a' "$O_TINI" "$O_MI")" "$(calc 'b-a' "$O_TINI" "$O_MI")")"
say "$(printf '   (medians: tini %.3f ms, modelarts-init %.3f ms, ratio %.2fx)' "$MO_TINI" "$MO_MI" "$(calc 'b/a' "$MO_TINI" "$MO_MI")")"

# --- 3. binary size ------------------------------------------------------
S_TINI=$(stat -c %s "$TINI")
S_MI=$(stat -c %s "$BIN")
say ""
say "3. Binary size"
say "$(printf '   %-16s %9s bytes (%7.1f KiB)  %s' tini "$S_TINI" "$(calc 'a/1024' "$S_TINI")" "$TINI")"
say "$(printf '   %-16s %9s bytes (%7.1f KiB)  %s' modelarts-init "$S_MI" "$(calc 'a/1024' "$S_MI")" "$BIN")"
say "$(printf '   ratio modelarts-init / tini: %.1fx' "$(calc 'a/b' "$S_MI" "$S_TINI")")"

# --- targets -------------------------------------------------------------
say ""
say "TARGETS"
say "$(printf '   %s  peak RSS <= 4 MiB                      (%.2f MiB)' "$(grade 'a <= 4096' "$MI_HWM")" "$(calc 'a/1024' "$MI_HWM")")"
say "$(printf '   %s  must: peak RSS <= 5 MiB' "$(grade 'a <= 5120' "$MI_HWM")")"
say "$(printf '   (info  lifetime peak %.2f MiB: %s vs 4 MiB, %s vs 5 MiB)' "$(calc 'a/1024' "$MI_LIFE")" \
    "$(grade 'a <= 4096' "$MI_LIFE")" "$(grade 'a <= 5120' "$MI_LIFE")")"
say "$(printf "   %s  start-up overhead <= tini's + 1 ms     (%+.3f ms vs tini's)" "$(grade 'b <= a + 1' "$O_TINI" "$O_MI")" "$(calc 'b-a' "$O_TINI" "$O_MI")")"
say "$(printf "   %s  must: start-up overhead <= 3x tini's  (%.2fx)" "$(grade 'b <= 3 * a' "$O_TINI" "$O_MI")" "$(calc 'b/a' "$O_TINI" "$O_MI")")"
say ""
say "raw results: $OUT/"
