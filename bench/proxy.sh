#!/usr/bin/env bash
# bench/proxy.sh: what the reverse proxy of modelarts-init costs, next to
# nginx as a reverse proxy, in front of the same fast upstream.
#
# Measures, in one run, a 1 KiB static response (GET /1k) under wrk with
# --latency, c=64 connections and 2 threads (BENCH_DURATION, 10 s, after a
# BENCH_WARMUP, 2 s, warm-up run that is thrown away), for three targets:
#   direct          nginx serving the file itself on 127.0.0.1:A (the upstream)
#   modelarts-init  modelarts-init --listen 127.0.0.1:B --upstream 127.0.0.1:A
#                   -- sleep 1000 (measured once /health says "true")
#   nginx-proxy     nginx on 127.0.0.1:C as a reverse proxy to the same
#                   upstream, with upstream keep-alive (keepalive 64,
#                   HTTP/1.1, Connection ""), and X-Forwarded-For/-Proto set
#                   like modelarts-init sets them, so both do the same work
#   mi-metrics      modelarts-init as above on 127.0.0.1:D, with
#                   --metrics-path /metrics (every request counted): what
#                   the metrics cost, next to modelarts-init without them
#                   (BENCH_METRICS=0 leaves it out)
#   mi-before       with BENCH_BEFORE=PATH only: that other build of
#                   modelarts-init (e.g. of the commit before a change), as
#                   modelarts-init above on 127.0.0.1:E, so that one run
#                   prints the before and after figures of a change
# and the same three again at c=1 (wrk -c1 -t1): the latency a proxy adds
# to one request when nothing queues.
#
# Both nginx instances run as the current user from a config in bench/out
# (-p prefix, daemon off, access_log off, keepalive_requests raised so no
# connection is closed during a run), with worker_processes = the CPUs they
# may use, and modelarts-init with as many serving threads
# (--proxy-threads; BENCH_MI_THREADS overrides). On a 2-core machine wrk, the upstream and the proxy share the
# CPUs, so every target runs in two layouts (BENCH_LAYOUTS):
#   shared  no pinning: everything on all CPUs (the headline figures)
#   pinned  wrk on CPU 0, upstream + proxy on the other CPUs (taskset);
#           there the proxy and the upstream compete for one core and wrk
#           cannot steal from them; nginx and modelarts-init each get 1
#           worker there.
# For each run the CPU time that wrk, the proxy and the upstream used is
# read (bash `time`, /proc/PID/stat of every server process) and printed as
# % of one core and as µs of proxy CPU per request: that is the cost that
# does not depend on how the CPUs were shared. Per-thread CPU of
# modelarts-init (what `top -H` shows) goes to threads-*.txt.
#
# How to read it: the tables give req/s, p50 and p99 (ms) per target; the
# "added" lines subtract the direct figure. A run counts as failed if wrk
# saw any non-2xx answer ("Non-2xx or 3xx responses", which wrk counts for
# status >= 400), any socket error, or if the bytes per answer differ from
# the 1 KiB answer curl got before the run (which catches 3xx too). The
# TARGETS block grades, per layout (shared is the headline):
#   throughput modelarts-init / nginx-proxy at c=64   target >= 1.2, must >= 1.0
#   p99 at c=64: modelarts-init <= nginx-proxy        must
#   p99 at c=1                                        printed, compared
#   every answer 2xx                                  must
#   throughput mi-metrics / modelarts-init at c=64    must >= 0.97
# Because req/s on a shared 2-core machine moves with whatever else runs
# (other% column; a WARNING is printed above 25%), each layout also prints
# a CPU-normalised ratio: the servers' CPU per request (plus wrk's when it
# shares their CPUs) of nginx-proxy over modelarts-init. That is the
# throughput ratio to expect on an idle machine, and it changes much less
# from run to run than req/s does.
# Figures are medians over BENCH_ROUNDS rounds (default 1); in a round the
# targets run one after the other, so with more rounds drift on a noisy
# machine hits all targets alike. The exit status says whether the
# benchmark ran, not whether targets were met.
#
# Needs root only to install what is missing (apt-get: nginx-light or
# nginx, wrk, curl). Measures the build that ships (Dockerfile.example,
# bench/init.sh): target/dist/modelarts-init (BENCH_BIN=... to measure
# another build), built if absent (after
# waiting for any running cargo), never rebuilds it. Raw wrk outputs,
# nginx configs and logs, modelarts-init's log, per-thread CPU and the
# printed summary go to bench/out/proxy-<UTC time>/ (gitignored).
# Everything started is stopped on exit.
#
# Knobs (environment; durations in whole seconds): BENCH_DURATION (10s),
# BENCH_WARMUP (2s), BENCH_ROUNDS (1), BENCH_LAYOUTS ("shared pinned"),
# BENCH_PORT_BASE (18180; the first free ports from there are used).
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
ROUNDS=${BENCH_ROUNDS:-1}
LAYOUTS=${BENCH_LAYOUTS:-shared pinned}
PORT_BASE=${BENCH_PORT_BASE:-18180}
CONNS=64
THREADS=2
BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/dist/modelarts-init}
BEFORE=${BENCH_BEFORE:-}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/proxy-$STAMP
mkdir -p "$OUT"

# shellcheck source=bench/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

# ---------------------------------------------------------------- tools
# The nginx package may start a system nginx on port 80; it is not ours
# and does not touch our ports, so it is left alone.
need_tools nginx:'nginx-light|nginx' wrk curl taskset:util-linux
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx not found after install"

build_if_absent dist "$BIN" -- --bin modelarts-init
[[ -z $BEFORE || -x $BEFORE ]] || die "BENCH_BEFORE=$BEFORE is not an executable"

# ---------------------------------------------------------------- setup
NCPU=$(nproc)
TCK=$(getconf CLK_TCK)

PORT_A=$(next_port "$PORT_BASE")
PORT_B=$(next_port $((PORT_A + 1)))
PORT_C=$(next_port $((PORT_B + 1)))
PORT_D=$(next_port $((PORT_C + 1)))
PORT_E=$(next_port $((PORT_D + 1)))

mkdir -p "$OUT/www"
head -c 1024 /dev/zero | tr '\0' 'x' >"$OUT/www/1k"

PIDS_MI=()
PID_MM=
PID_MB=
PID_UP=
PID_NP=
# Stopped on exit and after each layout (stop_started): modelarts-init
# first (started with --drain-delay 0s), then the nginx proxy, then the
# upstream; SIGTERM, then SIGKILL to what is left after 5 s.
stop_started_on_exit

ncpus_in() { # count CPUs in a taskset list like 1 or 1-3
    local n=0 r a b
    IFS=, read -r -a rs <<<"$1"
    for r in "${rs[@]}"; do
        if [[ $r == *-* ]]; then a=${r%-*}; b=${r#*-}; n=$((n + b - a + 1)); else n=$((n + 1)); fi
    done
    echo "$n"
}

start_servers() { # layout srv_cpus
    local layout=$1 cpus=$2 workers d
    workers=$(ncpus_in "$cpus")
    d=$OUT/$layout/nginx-upstream
    mkdir -p "$d/tmp"
    {
        nginx_head "$d" "$workers"
        echo "  server { listen 127.0.0.1:$PORT_A; root $OUT/www; location / { } }"
        echo "}"
    } >"$d/nginx.conf"
    taskset -c "$cpus" "$NGINX" -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" >"$d/stdout.log" 2>&1 &
    PID_UP=$!
    stop_later "$PID_UP" 5
    wait_http "http://127.0.0.1:$PORT_A/1k" xxxx 10 || { cat "$d/error.log" >&2; die "upstream nginx did not start"; }

    d=$OUT/$layout/nginx-proxy
    mkdir -p "$d/tmp"
    {
        nginx_head "$d" "$workers"
        echo "  upstream up { server 127.0.0.1:$PORT_A; keepalive 64; keepalive_requests 10000000; keepalive_timeout 200s; }"
        echo "  server {"
        echo "    listen 127.0.0.1:$PORT_C;"
        echo "    location / {"
        echo "      proxy_pass http://up;"
        echo "      proxy_http_version 1.1;"
        echo "      proxy_set_header Connection \"\";"
        echo "      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;"
        echo "      proxy_set_header X-Forwarded-Proto \$scheme;"
        echo "    }"
        echo "  }"
        echo "}"
    } >"$d/nginx.conf"
    taskset -c "$cpus" "$NGINX" -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" >"$d/stdout.log" 2>&1 &
    PID_NP=$!
    stop_later "$PID_NP" 5
    wait_http "http://127.0.0.1:$PORT_C/1k" xxxx 10 || { cat "$d/error.log" >&2; die "nginx proxy did not start"; }

    start_mi "$BIN" "$PORT_B" modelarts-init
    PIDS_MI=("$STARTED")
    if [[ -n $BEFORE ]]; then
        start_mi "$BEFORE" "$PORT_E" mi-before
        PID_MB=$STARTED
    fi
    [[ ${BENCH_METRICS:-1} == 0 ]] && return 0
    start_mi "$BIN" "$PORT_D" mi-metrics --metrics-path /metrics
    PID_MM=$STARTED
    wait_http "http://127.0.0.1:$PORT_D/metrics" modelarts_init_state 10 || die "modelarts-init serves no /metrics"
}

# start_mi BIN PORT NAME [FLAGS...]: modelarts-init BIN (with FLAGS) in
# front of the upstream on PORT, with as many serving threads as the
# layout's CPUs, log in NAME.log; its pid in STARTED once it proxies.
start_mi() {
    local bin=$1 port=$2 name=$3
    shift 3
    taskset -c "$cpus" "$bin" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$PORT_A" "$@" \
        --proxy-threads "${BENCH_MI_THREADS:-$workers}" --drain-delay 0s --stop-timeout 2s -- sleep 1000 >"$OUT/$layout/$name.log" 2>&1 &
    STARTED=$!
    stop_later "$STARTED" 5
    wait_http "http://127.0.0.1:$port/health" '"health": *"true"' 30 ||
        { cat "$OUT/$layout/$name.log" >&2; die "$name did not become healthy"; }
    wait_http "http://127.0.0.1:$port/1k" xxxx 10 || die "$name does not proxy /1k"
}

# CPU clock ticks (user + system) of the given pids, whole thread groups.
# Busy ticks of the whole machine (all CPUs), from /proc/stat.
nginx_pids() { echo "$1" $(pgrep -P "$1" 2>/dev/null || true); }

# Expected bytes on the wire per answer (head + body), as curl sees them.
wire_size() {
    curl -s -o /dev/null -w '%{http_code} %{size_header} %{size_download}' "$1"
}

RESULTS=$OUT/results.tsv
printf 'layout\ttarget\tconns\tround\trps\tp50_ms\tp99_ms\tnon2xx\tsockerr\tok\twrk_cpu_pct\tproxy_cpu_pct\tup_cpu_pct\tproxy_us_per_req\tup_us_per_req\twrk_us_per_req\tother_cpu_pct\tbuild_running\n' >"$RESULTS"

# run_one layout target port conns threads round wrk_cpus
run_one() {
    local layout=$1 target=$2 port=$3 c=$4 t=$5 round=$6 wcpus=$7
    local url="http://127.0.0.1:$port/1k" tag=$layout-$target-c$4-r$6
    local code hsize bsize expect
    read -r code hsize bsize <<<"$(wire_size "$url")"
    [[ $code == 200 && $bsize == 1024 ]] || die "$target answered $code with $bsize bytes before the run"
    expect=$((hsize + bsize))

    local proxy_pids=() up_pids
    case $target in
    modelarts-init) proxy_pids=("${PIDS_MI[0]}") ;;
    mi-metrics) proxy_pids=("$PID_MM") ;;
    mi-before) proxy_pids=("$PID_MB") ;;
    nginx-proxy) read -r -a proxy_pids <<<"$(nginx_pids "$PID_NP")" ;;
    esac
    read -r -a up_pids <<<"$(nginx_pids "$PID_UP")"

    local dur_s
    dur_s=$(secs "$DURATION")
    timeout $(( ${WARMUP%s} + 30 )) taskset -c "$wcpus" wrk -t"$t" -c"$c" -d"$WARMUP" "$url" >"$OUT/$layout/warmup-$tag.txt" 2>&1 || true

    local p0 u0 p1 u1 wt
    [[ $target == modelarts-init ]] && thread_ticks "${PIDS_MI[0]}" >"$OUT/$layout/threads-$tag.before"
    local busy=no s0 s1
    if cargo_running; then busy=yes; fi
    p0=$(ticks "${proxy_pids[@]:-}"); u0=$(ticks "${up_pids[@]}"); s0=$(sys_busy)
    local TIMEFORMAT='%R %U %S'
    { time timeout $((${dur_s%.*} + 30)) taskset -c "$wcpus" wrk -t"$t" -c"$c" -d"$DURATION" --latency "$url" \
        >"$OUT/$layout/wrk-$tag.txt" 2>&1; } 2>"$OUT/$layout/time-$tag.txt" || true
    p1=$(ticks "${proxy_pids[@]:-}"); u1=$(ticks "${up_pids[@]}"); s1=$(sys_busy)
    if cargo_running; then busy=yes; fi
    if [[ $target == modelarts-init ]]; then
        thread_ticks "${PIDS_MI[0]}" >"$OUT/$layout/threads-$tag.after"
        # per thread: name, CPU % of one core during the run
        awk -v tck="$TCK" -v d="$dur_s" 'NR == FNR { b[$1] = $3; next }
            { printf "%-8s %-22s %6.1f%%\n", $1, $2, ($3 - b[$1]) / tck / d * 100 }' \
            "$OUT/$layout/threads-$tag.before" "$OUT/$layout/threads-$tag.after" >"$OUT/$layout/threads-$tag.txt"
    fi
    read -r _real wu ws <"$OUT/$layout/time-$tag.txt" || true

    local rps p50 p99 non se req bytes ok=yes why=""
    read -r rps p50 p99 non se req bytes _ <<<"$(wrk_summary "$OUT/$layout/wrk-$tag.txt")"
    if [[ $req == 0 || $p99 == -1 ]]; then ok=no; why+=" wrk-output-unreadable"; fi
    if [[ $non != 0 ]]; then ok=no; why+=" non-2xx=$non"; fi
    if [[ $se != 0 ]]; then ok=no; why+=" socket-errors=$(grep -o 'connect.*' "$OUT/$layout/wrk-$tag.txt")"; fi
    if [[ $req != 0 && $(calc 'b / a > c * 1.03 || b / a < c * 0.97' "$req" "$bytes" "$expect") == 1 ]]; then
        ok=no; why+=" bytes/answer=$(calc 'b / a' "$req" "$bytes")!=$expect"
    fi
    local wpct ppct upct pus uus wus opct
    wpct=$(calc '(a + b) / c * 100' "$wu" "$ws" "$dur_s")
    ppct=$(calc '(a) / b / c * 100' "$((p1 - p0))" "$TCK" "$dur_s")
    upct=$(calc '(a) / b / c * 100' "$((u1 - u0))" "$TCK" "$dur_s")
    pus=$(calc 'b > 0 ? a * 1e6 / b : 0' "$(calc 'a / b' "$((p1 - p0))" "$TCK")" "$req")
    uus=$(calc 'b > 0 ? a * 1e6 / b : 0' "$(calc 'a / b' "$((u1 - u0))" "$TCK")" "$req")
    wus=$(calc 'b > 0 ? (a + c) * 1e6 / b : 0' "$wu" "$req" "$ws")
    # CPU of everything else on the machine (other sessions, builds)
    opct=$(calc 'a / b / c * 100' "$((s1 - s0))" "$TCK" "$dur_s")
    # (tick rounding and wrk's own start-up can make it slightly negative)
    opct=$(calc 'a - b - c > 0 ? a - b - c : 0' "$opct" "$wpct" "$(calc 'a + b' "$ppct" "$upct")")
    [[ $busy == yes ]] && why+=" (cargo/rustc was running)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.1f\t%.0f\t%s\n' \
        "$layout" "$target" "$c" "$round" "$rps" "$p50" "$p99" "$non" "$se" "$ok" \
        "$wpct" "$ppct" "$upct" "$pus" "$uus" "$wus" "$opct" "$busy" >>"$RESULTS"
    printf '  %-7s round %s  %-15s c=%-3s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  %s%s\n' \
        "$layout" "$round" "$target" "$c" "$rps" "$p50" "$p99" "$([[ $ok == yes ]] && echo ok || echo FAILED:)" "$why" |
        tee -a "$OUT/progress.txt" >&2
}

# median of column $col for layout/target/conns (over rounds)
med() { # layout target conns col
    awk -F'\t' -v l="$1" -v t="$2" -v c="$3" -v col="$4" \
        'NR > 1 && $1 == l && $2 == t && $3 == c { print $col }' "$RESULTS" | median
}
all_ok() { # layout target conns -> yes/no
    awk -F'\t' -v l="$1" -v t="$2" -v c="$3" 'NR > 1 && $1 == l && $2 == t && $3 == c && $10 != "yes" { bad = 1 }
        END { print bad ? "no" : "yes" }' "$RESULTS"
}
errs() { # layout target conns -> total non2xx/sockerr
    awk -F'\t' -v l="$1" -v t="$2" -v c="$3" 'NR > 1 && $1 == l && $2 == t && $3 == c { n += $8; s += $9 }
        END { printf "%d/%d", n, s }' "$RESULTS"
}

# ---------------------------------------------------------------- run
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -r), $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
    echo "loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //')"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
    echo "modelarts-init: $BIN ($(stat -c '%y' "$BIN" | cut -d. -f1), $(sha256sum "$BIN" | cut -c1-12))"
    [[ -z $BEFORE ]] || echo "mi-before: $BEFORE ($(stat -c '%y' "$BEFORE" | cut -d. -f1), $(sha256sum "$BEFORE" | cut -c1-12))"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "ports: upstream $PORT_A, modelarts-init $PORT_B, nginx-proxy $PORT_C"
    echo "wrk: c=$CONNS t=$THREADS and c=1 t=1, $DURATION each after $WARMUP warm-up, rounds=$ROUNDS"
} | tee "$OUT/versions.txt" | while IFS= read -r l; do say "$l"; done

TARGETS=(direct modelarts-init nginx-proxy)
[[ ${BENCH_METRICS:-1} == 0 ]] || TARGETS+=(mi-metrics)
[[ -z $BEFORE ]] || TARGETS+=(mi-before)
port_of() { case $1 in direct) echo "$PORT_A" ;; modelarts-init) echo "$PORT_B" ;; nginx-proxy) echo "$PORT_C" ;; mi-metrics) echo "$PORT_D" ;; mi-before) echo "$PORT_E" ;; esac; }

RAN_LAYOUTS=()
for layout in $LAYOUTS; do
    case $layout in
    shared) srv=0-$((NCPU - 1)); wcpu=0-$((NCPU - 1)) ;;
    pinned)
        if ((NCPU < 2)); then say "pinned layout skipped: only $NCPU CPU"; continue; fi
        wcpu=0; srv=1-$((NCPU - 1)) ;;
    *) die "unknown layout $layout (shared, pinned)" ;;
    esac
    mkdir -p "$OUT/$layout"
    echo "== layout $layout: wrk on CPUs $wcpu, servers on CPUs $srv" >&2
    start_servers "$layout" "$srv"
    for round in $(seq "$ROUNDS"); do
        for tg in "${TARGETS[@]}"; do run_one "$layout" "$tg" "$(port_of "$tg")" "$CONNS" "$THREADS" "$round" "$wcpu"; done
        for tg in "${TARGETS[@]}"; do run_one "$layout" "$tg" "$(port_of "$tg")" 1 1 "$round" "$wcpu"; done
    done
    grep -ciE 'warn|error' "$OUT/$layout/modelarts-init.log" >"$OUT/$layout/mi-warnings.count" || true
    stop_started
    RAN_LAYOUTS+=("$layout")
done

# ---------------------------------------------------------------- report
say ""
say "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
for layout in "${RAN_LAYOUTS[@]}"; do
    case $layout in
    shared) desc="no pinning: wrk, upstream and proxy share all $NCPU CPUs" ;;
    pinned) desc="wrk on CPU 0, upstream + proxy on CPUs 1-$((NCPU - 1))" ;;
    esac
    say ""
    say "=== layout: $layout ($desc)"
    say "$(printf '%-15s %4s %10s %9s %9s %11s %6s %6s %6s %6s %7s %7s %7s' \
        target conns req/s p50_ms p99_ms non2xx/sock wrk% prox% up% other% prox_us up_us wrk_us)"
    for c in "$CONNS" 1; do
        for tg in "${TARGETS[@]}"; do
            say "$(printf '%-15s %4s %10.0f %9.3f %9.3f %11s %6.0f %6.0f %6.0f %6.0f %7.1f %7.1f %7.1f%s' \
                "$tg" "$c" "$(med "$layout" "$tg" "$c" 5)" "$(med "$layout" "$tg" "$c" 6)" "$(med "$layout" "$tg" "$c" 7)" \
                "$(errs "$layout" "$tg" "$c")" "$(med "$layout" "$tg" "$c" 11)" "$(med "$layout" "$tg" "$c" 12)" \
                "$(med "$layout" "$tg" "$c" 13)" "$(med "$layout" "$tg" "$c" 17)" \
                "$(med "$layout" "$tg" "$c" 14)" "$(med "$layout" "$tg" "$c" 15)" \
                "$(med "$layout" "$tg" "$c" 16)" "$([[ $(all_ok "$layout" "$tg" "$c") == yes ]] || echo '  FAILED RUN')")"
        done
    done
    say "(% = CPU used during the run in % of one core, $NCPU cores = $((NCPU * 100))%; other% = the rest of the machine;"
    say " *_us = CPU µs per request; medians over $ROUNDS round(s))"
    nb=$(awk -F'\t' -v l="$layout" 'NR > 1 && $1 == l && $18 == "yes"' "$RESULTS" | wc -l)
    ((nb == 0)) || say "note: a cargo/rustc build was running during $nb of the runs above (see other%)"

    mi=$(med "$layout" modelarts-init "$CONNS" 5); np=$(med "$layout" nginx-proxy "$CONNS" 5)
    dr=$(med "$layout" direct "$CONNS" 5)
    ratio=$(calc 'b > 0 ? a / b : 0' "$mi" "$np")
    mi99=$(med "$layout" modelarts-init "$CONNS" 7); np99=$(med "$layout" nginx-proxy "$CONNS" 7)
    mius=$(med "$layout" modelarts-init "$CONNS" 14); npus=$(med "$layout" nginx-proxy "$CONNS" 14)
    say ""
    say "$(printf 'throughput c=%d: modelarts-init / nginx-proxy = %.3f   (modelarts-init / direct = %.3f, nginx-proxy / direct = %.3f)' \
        "$CONNS" "$ratio" "$(calc 'b > 0 ? a / b : 0' "$mi" "$dr")" "$(calc 'b > 0 ? a / b : 0' "$np" "$dr")")"
    say "$(printf 'p99 c=%d:        modelarts-init %.3f ms, nginx-proxy %.3f ms, ratio %.3f' \
        "$CONNS" "$mi99" "$np99" "$(calc 'b > 0 ? a / b : 0' "$mi99" "$np99")")"
    say "$(printf 'proxy CPU/req:   modelarts-init %.1f µs, nginx-proxy %.1f µs, ratio %.3f' \
        "$mius" "$npus" "$(calc 'b > 0 ? a / b : 0' "$mius" "$npus")")"
    # Noise-robust estimate: where the CPUs are the limit, req/s is about
    # 1 / (CPU per request of what shares them): proxy + upstream when
    # pinned, + wrk when shared. Load from other processes cancels out.
    if [[ $layout == pinned ]]; then parts="proxy + upstream"; wcol=0; else parts="proxy + upstream + wrk"; wcol=1; fi
    micost=$(calc 'a + b + c' "$mius" "$(med "$layout" modelarts-init "$CONNS" 15)" "$(calc "a * $wcol" "$(med "$layout" modelarts-init "$CONNS" 16)")")
    npcost=$(calc 'a + b + c' "$npus" "$(med "$layout" nginx-proxy "$CONNS" 15)" "$(calc "a * $wcol" "$(med "$layout" nginx-proxy "$CONNS" 16)")")
    say "$(printf 'CPU-normalised:  %s CPU/req: modelarts-init %.1f µs, nginx-proxy %.1f µs' "$parts" "$micost" "$npcost")"
    say "$(printf '                 -> expected throughput ratio on an idle machine %.3f (estimate, not graded)' \
        "$(calc 'a > 0 ? b / a : 0' "$micost" "$npcost")")"
    oth=$(awk -F'\t' -v l="$layout" 'NR > 1 && $1 == l && $17 > m { m = $17 } END { print m + 0 }' "$RESULTS")
    if [[ $(calc 'a > 25' "$oth") == 1 ]]; then
        say "WARNING: other processes used up to ${oth}% of a core during these runs: req/s and latency are"
        say "         not trustworthy; compare the CPU/req figures, or run again on a quiet machine"
    fi
    for q in 6:p50 7:p99; do
        col=${q%%:*}; name=${q#*:}
        d=$(med "$layout" direct 1 "$col"); m=$(med "$layout" modelarts-init 1 "$col"); n=$(med "$layout" nginx-proxy 1 "$col")
        say "$(printf 'c=1 %s:         direct %.3f ms, modelarts-init %.3f ms (%+.3f), nginx-proxy %.3f ms (%+.3f)' \
            "$name" "$d" "$m" "$(calc 'a - b' "$m" "$d")" "$n" "$(calc 'a - b' "$n" "$d")")"
    done
    if [[ -f $OUT/$layout/threads-$layout-modelarts-init-c$CONNS-r1.txt ]]; then
        say "modelarts-init threads, c=$CONNS round 1 (CPU % of one core; 'top -H'):"
        sort -k3 -rn "$OUT/$layout/threads-$layout-modelarts-init-c$CONNS-r1.txt" | awk '$3 + 0 >= 0.5' |
            while IFS= read -r l; do say "    $l"; done
    fi
    say "modelarts-init log lines with warn/error: $(cat "$OUT/$layout/mi-warnings.count" 2>/dev/null || echo '?')"

    okall=yes
    for c in "$CONNS" 1; do for tg in "${TARGETS[@]}"; do
        [[ $(all_ok "$layout" "$tg" "$c") == yes ]] || okall=no
    done; done
    mi1=$(med "$layout" modelarts-init 1 7); np1=$(med "$layout" nginx-proxy 1 7)
    if [[ ${BENCH_METRICS:-1} != 0 ]]; then
        mm=$(med "$layout" mi-metrics "$CONNS" 5)
        mmratio=$(calc 'b > 0 ? a / b : 0' "$mm" "$mi")
        mmus=$(med "$layout" mi-metrics "$CONNS" 14)
        # Per round: the ratio of the two runs next to each other, whose
        # median moves less with drift than the ratio of two medians.
        rr=$(awk -F'\t' -v l="$layout" -v c="$CONNS" 'NR > 1 && $1 == l && $3 == c && $2 == "modelarts-init" { a[$4] = $5 }
            NR > 1 && $1 == l && $3 == c && $2 == "mi-metrics" { b[$4] = $5 }
            END { for (r in a) if (r in b && a[r] > 0) printf "%.4f\n", b[r] / a[r] }' "$RESULTS" | median)
        say "$(printf 'metrics cost c=%d: mi-metrics / modelarts-init = %.3f (median of per-round ratios %.3f; proxy CPU/req %.1f vs %.1f µs, ratio %.3f)' \
            "$CONNS" "$mmratio" "$rr" "$mmus" "$mius" "$(calc 'b > 0 ? a / b : 0' "$mmus" "$mius")")"
    fi
    if [[ -n $BEFORE ]]; then
        mb=$(med "$layout" mi-before "$CONNS" 5)
        say "$(printf 'before/after c=%d: mi-before / nginx-proxy = %.3f, modelarts-init / nginx-proxy = %.3f; p99 %.3f -> %.3f ms; proxy CPU/req %.1f -> %.1f µs' \
            "$CONNS" "$(calc 'b > 0 ? a / b : 0' "$mb" "$np")" "$ratio" "$(med "$layout" mi-before "$CONNS" 7)" "$mi99" \
            "$(med "$layout" mi-before "$CONNS" 14)" "$mius")"
    fi
    say "TARGETS ($layout):"
    say "  $(grade 'a >= 1.2' "$ratio") target  throughput modelarts-init / nginx-proxy >= 1.2   ($(printf %.3f "$ratio"))"
    say "  $(grade 'a >= 1.0' "$ratio") must    throughput modelarts-init / nginx-proxy >= 1.0   ($(printf %.3f "$ratio"))"
    say "  $(grade 'a <= b' "$mi99" "$np99") must    p99 c=$CONNS modelarts-init <= nginx-proxy   ($(printf '%.3f vs %.3f ms' "$mi99" "$np99"))"
    say "  $(grade 'a <= b' "$mi1" "$np1") compare p99 c=1 modelarts-init <= nginx-proxy    ($(printf '%.3f vs %.3f ms' "$mi1" "$np1"))"
    say "  $([[ $okall == yes ]] && echo PASS || echo FAIL) must    every answer 2xx, no socket errors, in every run"
    if [[ ${BENCH_METRICS:-1} != 0 ]]; then
        say "  $(grade 'a >= 0.97' "$rr") must    throughput with --metrics-path / without >= 0.97 (per-round median: $(printf %.3f "$rr"))"
    fi
done
say ""
say "raw results: ${OUT#"$ROOT"/}/"
