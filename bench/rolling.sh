#!/usr/bin/env bash
# bench/rolling.sh: a rolling upgrade behind a real load balancer, the claim
# "modelarts-init loses no request; tini + gunicorn and the hand-written
# run.sh lose some" shown by measurement, in ONE run, mode after mode:
#
#   init   modelarts-init --drain-delay 5s --stop-timeout 5s -- gunicorn ...
#   tini   tini -s -- gunicorn ...                    (gunicorn on the slot port)
#   runsh  tini -s -- bash bench/seed-run.sh gunicorn ...  (the run.sh of the
#          ModelArts page: trap TERM, sleep 5 s, kill -15, wait)
#   mnist  modelarts-init mnist --drain-delay 5s --stop-timeout 5s
# and two more on request (BENCH_MODES="r8 quiet"), for what the adaptive
# drain saves with R8's real delay:
#   r8     modelarts-init --drain-delay 60s --stop-timeout 5s -- gunicorn ...
#   quiet  the same with --drain-quiet-period 3s --drain-min 5s
#
# gunicorn is `-k gevent -w 2 --keep-alive 200` serving examples/gunicorn-app
# with a GET /health route (bench/rolling_app.py: what a user without
# modelarts-init adds for the balancer), so every mode faces the same
# balancer with the same app. The balancer is HAProxy (Debian's), as a
# platform's: active `GET /health` checks every 1 s, fall 3, rise 2, check
# timeout 5 s, round robin over three replica slots r1 r2 r3, HAProxy's
# defaults otherwise (retries 3 on the same server, no redispatch,
# keep-alive on both sides). The shortened drain (5 s) still covers the
# balancer's 3 s to notice a failing /health; the real defaults (60 s, 25 s)
# only make it slower.
#
# Each mode: r1 and r2 run and are UP, r3 is DOWN (empty); wrk (2 threads,
# BENCH_CONNS=16 connections, GET /; mnist: POST / with a photo, as
# bench/mnist.sh) runs BENCH_DURATION=20 s through the balancer; at t=1 s the
# replacement r3 starts; once it is UP (and not before t=6 s) r1 gets SIGTERM,
# at t=12 s r2 gets SIGTERM. 0.5 s before each SIGTERM, BENCH_SLOW=4 slow
# requests (GET /slow?s=1.5, pinned to that replica by an `x-replica`
# header) are started: they are in flight when the SIGTERM comes.
#
# Printed per mode: failed requests (wrk's non-2xx and socket errors) out of
# wrk's total, the balancer's own count of 5xx answers by status, and the
# slow requests that got 200. A per-second log (the balancer's request log:
# requests/s per replica, errors/s) goes to <out>/<mode>/persec.tsv, and
# bench/rolling_plot.py draws docs/rolling-upgrade.png from it: one panel
# per mode, the SIGTERMs (dashed) and the child's stop signal (dotted) as
# lines. The exit status says whether the benchmark ran, not who lost what.
#
# Needs root only to install what is missing (apt-get: haproxy, wrk, curl,
# tini). Builds target/release/modelarts-init{,-mnist} ($CARGO_TARGET_DIR if
# set) if absent, never rebuilds them. The Python side (gunicorn, gevent,
# Flask, matplotlib) lives in the bench venv $BENCH_VENV (default
# <repo>/../venv-bench), made from examples/gunicorn-app/requirements.txt
# and bench/requirements.txt if missing. Raw outputs go to
# bench/out/rolling-<UTC time>/ (gitignored). Everything started is stopped
# on exit.
#
# Knobs: BENCH_MODES ("init tini runsh mnist"), BENCH_DURATION (20),
# BENCH_CONNS (16), BENCH_DRAIN (5), BENCH_STOP (5), BENCH_SLOW (4),
# BENCH_WORKERS (2), BENCH_PORT_BASE (18380), BENCH_IMAGE (the mnist photo,
# examples/images/seven.jpg), BENCH_PNG (docs/rolling-upgrade.png; empty:
# only in the output folder).
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
ROOT=$PWD

read -r -a MODES <<<"${BENCH_MODES:-init tini runsh mnist}"
DURATION=${BENCH_DURATION:-20}
CONNS=${BENCH_CONNS:-16}
DRAIN=${BENCH_DRAIN:-5}
STOP=${BENCH_STOP:-5}
SLOW=${BENCH_SLOW:-4}
WORKERS=${BENCH_WORKERS:-2}
PORT_BASE=${BENCH_PORT_BASE:-18380}
IMAGE=$(readlink -f "${BENCH_IMAGE:-$ROOT/examples/images/seven.jpg}")
# The README's picture is of the default modes; other runs keep theirs in
# the output folder unless BENCH_PNG says where.
[[ -n ${BENCH_MODES:-} ]] && PNG=${BENCH_PNG-} || PNG=${BENCH_PNG-$ROOT/docs/rolling-upgrade.png}
VENV=${BENCH_VENV:-$(dirname "$ROOT")/venv-bench}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/modelarts-init
MBIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/modelarts-init-mnist
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/rolling-$STAMP
mkdir -p "$OUT"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

need_tools haproxy wrk curl tini
build_if_absent release "$BIN" "$MBIN" -- --bins
if ! "$VENV/bin/python" -c 'import flask, gevent, gunicorn, matplotlib' 2>/dev/null; then
    echo "setting up the bench venv $VENV" >&2
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        -r "$ROOT/examples/gunicorn-app/requirements.txt" -r "$ROOT/bench/requirements.txt" >&2
fi
stop_started_on_exit

now() { date +%s.%N; }
# event KIND SLOT: a line "<epoch> KIND SLOT" in the mode's events.tsv.
event() { echo "$(now) $1 ${2:-}" >>"$MD/events.tsv"; }
# sleep_until T: sleeps until T seconds after the load started.
sleep_until() { sleep "$(calc 'a + b - c > 0 ? a + b - c : 0' "$T0" "$1" "$(now)")"; }

# drain: this mode's drain delay in seconds (r8 and quiet: R8's 60 s).
drain() { case $MODE in r8 | quiet) echo 60 ;; *) echo "$DRAIN" ;; esac; }

# start_replica SLOT: starts this mode's replica on the slot's port.
start_replica() {
    local slot=$1 port=${PORT[$1]} up=${UPSTREAM[$1]}
    local g=("$VENV/bin/gunicorn" --chdir "$ROOT/examples/gunicorn-app" --pythonpath "$ROOT/bench"
        -k gevent -w "$WORKERS" --keep-alive 200 --no-control-socket)
    case $MODE in
    init | r8 | quiet) exec "$BIN" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$up" --drain-delay "$(drain)s" \
        --stop-timeout "${STOP}s" "${QUIET_FLAGS[@]}" -- "${g[@]}" -b "127.0.0.1:$up" rolling_app:app ;;
    tini) exec tini -s -- "${g[@]}" -b "127.0.0.1:$port" rolling_app:app ;;
    runsh) SEED_SLEEP=$DRAIN exec tini -s -- bash "$ROOT/bench/seed-run.sh" "${g[@]}" -b "127.0.0.1:$port" rolling_app:app ;;
    mnist) exec "$BIN" mnist --listen "127.0.0.1:$port" --drain-delay "${DRAIN}s" --stop-timeout "${STOP}s" ;;
    esac >"$MD/$slot.log" 2>&1 & # each arm execs: $! is the replica itself
    PID[$slot]=$!
    stop_later "${PID[$slot]}" 2
    event start "$slot"
    local p=${PID[$slot]} events=$MD/events.tsv
    (while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; echo "$(now) exit $slot" >>"$events") &
}

# lb_states: "r1 UP" ... from HAProxy's stats CSV (field 18 is the status).
lb_states() { curl -s -m 1 "http://127.0.0.1:$STATS/stats;csv" | awk -F, '$1 == "bk" && $2 ~ /^r/ { print $2, $18 }'; }
# wait_lb "r1 UP" ... SECONDS: until every given slot has that status.
wait_lb() {
    local want=("${@:1:$#-1}") s ok
    for _ in $(seq $((${*: -1} * 10))); do
        s=$(lb_states) ok=yes
        for w in "${want[@]}"; do grep -qx "$w" <<<"$s" || ok=no; done
        [[ $ok == yes ]] && return 0
        sleep 0.1
    done
    return 1
}
# lb_watch: logs each change of a slot's status as "lb-UP r1" and the like.
lb_watch() {
    local before="" s
    while :; do
        s=$(lb_states | sed 's/ \([A-Z]*\).*/ \1/')
        if [[ $s != "$before" ]]; then
            diff <(echo "$before") <(echo "$s") | sed -n 's/^> \(r[0-9]\) \(.*\)/lb-\2 \1/p' |
                while read -r k slot; do event "$k" "$slot"; done
            before=$s
        fi
        sleep 0.2
    done
}

# slow_requests SLOT: BENCH_SLOW slow requests pinned to SLOT, in the background.
slow_requests() {
    local i
    for i in $(seq "$SLOW"); do
        (code=$(curl -s -o /dev/null -m 30 -w '%{http_code}' -H "x-replica: $1" \
            "http://127.0.0.1:$LB/slow?s=1.5") || true
            echo "$1 ${code:-000}" >>"$MD/slow.txt") &
        SLOWPIDS+=($!)
    done
}

haproxy_cfg() {
    cat <<EOF
global
    log stdout format raw local0 info
    maxconn 4096
defaults
    mode http
    log global
    log-format "%Ts.%ms %s %ST %Tt %tsc %{+Q}r"
    timeout connect 5s
    timeout client 200s
    timeout server 60s
    timeout http-keep-alive 200s
    timeout check 5s
frontend fe
    bind 127.0.0.1:$LB
    default_backend bk
backend bk
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter 1s fall 3 rise 2
$(for s in r1 r2 r3; do echo "    use-server $s if { req.hdr(x-replica) -m str $s }"; done)
$(for s in r1 r2 r3; do echo "    server $s 127.0.0.1:${PORT[$s]} check"; done)
listen stats
    bind 127.0.0.1:$STATS
    stats enable
    stats uri /stats
EOF
}

# run_mode MODE: one rolling upgrade; its line goes to results.tsv.
run_mode() {
    MODE=$1 MD=$OUT/$1
    mkdir -p "$MD"
    QUIET_FLAGS=()
    [[ $MODE == quiet ]] && QUIET_FLAGS=(--drain-quiet-period 3s --drain-min 5s)
    declare -gA PORT UPSTREAM PID
    local p=$PORT_BASE s
    for s in r1 r2 r3; do
        PORT[$s]=$(next_port "$p") && p=$((PORT[$s] + 1))
        UPSTREAM[$s]=$(next_port "$p") && p=$((UPSTREAM[$s] + 1))
    done
    LB=$(next_port "$p") && STATS=$(next_port $((LB + 1)))
    haproxy_cfg >"$MD/haproxy.cfg"
    SLOWPIDS=()
    : >"$MD/slow.txt"
    start_replica r1
    start_replica r2
    for s in r1 r2; do
        wait_http "http://127.0.0.1:${PORT[$s]}/health" '"health": *"true"' 60 ||
            { cat "$MD/$s.log" >&2; die "$MODE: $s did not become healthy"; }
    done
    haproxy -db -f "$MD/haproxy.cfg" >"$MD/haproxy.log" 2>&1 &
    stop_later $!
    wait_lb "r1 UP" "r2 UP" "r3 DOWN" 30 || die "$MODE: HAProxy never saw r1, r2 UP and r3 DOWN: $(lb_states | tr '\n' ' ')"
    lb_watch &
    stop_later $!

    local wrk=(wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency)
    [[ $MODE == mnist ]] && wrk+=(-s "$ROOT/bench/mnist-multipart.lua")
    T0=$(now)
    event load-start
    BENCH_IMAGE=$IMAGE BENCH_EXPECT=7 "${wrk[@]}" "http://127.0.0.1:$LB/" >"$MD/wrk.txt" 2>&1 &
    local wrk_pid=$!
    sleep_until 1
    start_replica r3
    wait_lb "r3 UP" 15 || say "$MODE: r3 not UP within 15 s: $(lb_states | tr '\n' ' ')"
    local t=6 slot
    for slot in r1 r2; do
        sleep_until "$(calc 'a - 0.5' "$t")"
        [[ $MODE == mnist ]] || slow_requests "$slot"
        sleep_until "$t"
        kill -TERM "${PID[$slot]}"
        event sigterm "$slot"
        t=$((t + 6))
    done
    wait "$wrk_pid" || true
    event load-end
    ((${#SLOWPIDS[@]})) && wait "${SLOWPIDS[@]}"
    # the stopped replicas had their drain + stop timeout to finish
    for slot in r1 r2; do
        for _ in $(seq $((($(drain) + STOP + 5) * 10))); do kill -0 "${PID[$slot]}" 2>/dev/null || break; sleep 0.1; done
    done
    stop_started

    local rps p50 p99 non se req bytes wrong slow_ok slow_n lb5xx
    read -r rps p50 p99 non se req bytes wrong <<<"$(wrk_summary "$MD/wrk.txt")"
    slow_ok=$(awk '$2 == 200' "$MD/slow.txt" | wc -l)
    slow_n=$(wc -l <"$MD/slow.txt")
    lb5xx=$(awk '$1 ~ /^[0-9]+\.[0-9]+$/ && ($3 >= 500 || $3 < 0) { n[$3]++ }
        END { for (k in n) printf "%s%s x%d", (c++ ? ", " : ""), k, n[k]; if (!c) printf "none" }' "$MD/haproxy.log")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$MODE" "$req" "$((non + se))" "$non" "$se" \
        "$slow_ok" "$slow_n" "$lb5xx" "$wrong" >>"$OUT/results.tsv"
    say "$(printf '  %-6s %6s requests, %5s failed (%s non-2xx, %s socket errors); slow requests at SIGTERM: %s of %s got 200; balancer 5xx: %s%s' \
        "$MODE" "$req" "$((non + se))" "$non" "$se" "$slow_ok" "$slow_n" "$lb5xx" \
        "$([[ $MODE == mnist ]] && echo "; wrong digits: $wrong")")"
    # How long the upgrade took: each SIGTERMed replica's SIGTERM to exit.
    say "$(awk '$2 == "sigterm" { t[$3] = $1 } $2 == "exit" && ($3 in t) { printf "%s%s %.1f s", (n++ ? ", " : ""), $3, $1 - t[$3] }
        END { if (!n) printf "none" }' "$MD/events.tsv" | sed "s/^/         SIGTERM to exit: /")"
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -r), $(nproc) CPUs; loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "haproxy: $(haproxy -v | head -1 | awk '{ print $3 }'); wrk: $(wrk -v 2>&1 | head -1 | awk '{ print $2 }'), t=2 c=$CONNS ${DURATION}s; tini: $(tini --version | awk '{ print $3 }')"
    echo "modelarts-init: $BIN ($(sha256sum "$BIN" | cut -c1-12)), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "gunicorn -k gevent -w $WORKERS --keep-alive 200; drain ${DRAIN}s, stop timeout ${STOP}s (init, mnist), sleep ${DRAIN}s (runsh); r8/quiet: drain 60s, quiet: --drain-quiet-period 3s --drain-min 5s"
} | while IFS= read -r l; do say "$l"; done
printf 'mode\trequests\tfailed\tnon2xx\tsocket_errors\tslow_ok\tslow_sent\tbalancer_5xx\twrong\n' >"$OUT/results.tsv"
say "rolling upgrade, 3 slots, r3 started, r1 and r2 SIGTERMed in turn:"
S0=$(sys_busy) W0=$(date +%s)
for m in "${MODES[@]}"; do run_mode "$m"; done
other=$(calc 'a / b / c * 100' "$(($(sys_busy) - S0))" "$(getconf CLK_TCK)" "$(($(date +%s) - W0))")
say "$(printf 'machine busy: %.0f%% of one core on average over the run (this bench and everything else: other sessions, builds)' "$other")"
cargo_running && say "note: a cargo/rustc build was running at the end of the run"

"$VENV/bin/python" "$ROOT/bench/rolling_plot.py" "$OUT" "$OUT/rolling-upgrade.png" | while IFS= read -r l; do say "$l"; done
if [[ -n $PNG ]]; then
    mkdir -p "$(dirname "$PNG")"
    cp "$OUT/rolling-upgrade.png" "$PNG"
    say "picture: ${PNG#"$ROOT"/}"
fi
say "raw results: ${OUT#"$ROOT"/}/"
