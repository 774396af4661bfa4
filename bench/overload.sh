#!/usr/bin/env bash
# bench/overload.sh: what admission control (--max-concurrency) does for an
# overloaded inference server, in one run, side by side.
#
# The server: gunicorn -k sync -w 2 (two requests at a time, like a model
# server with two workers) running tests/py/inflight_app.py, 50 ms per
# request (GET /work?ms=50), behind modelarts-init --metrics-path /metrics
# in two modes:
#   plain     no admission control: every request goes upstream and waits in
#             gunicorn's listen backlog
#   admitted  --max-concurrency 2 --max-queue 8
# The load: BENCH_CONNS=64 keep-alive connections sending back to back for
# BENCH_DURATION=20 s (bench/overload_client.py, Python threads: the server
# answers 40 requests/s, far below what the client can send). A 503 with
# Retry-After: 1 makes its connection wait 1 s before the next request, as a
# client that honours it does (BENCH_RETRY_AFTER=0: retry at once).
#
# Printed per mode: answers by status, the share refused (503), p50/p99
# latency of the answered requests (200, client-measured), and the
# queueing: how long an answered request waited before a worker started it
# (the app measures it from the client's X-Sent-At, one clock for the
# machine), how much of that was in modelarts-init's queue (its metrics:
# queue wait sum / answered), the rest being the upstream's own queueing
# (connections waiting in gunicorn's accept backlog: `ss` Recv-Q sampled
# every 0.2 s, mean and max), and the most requests the app had in flight
# at once (its own count). The exit status says whether the benchmark ran.
#
# Needs root only to install what is missing (apt-get: curl, iproute2).
# Builds target/release/modelarts-init ($CARGO_TARGET_DIR if set;
# BENCH_BIN=... for another build) if absent, never rebuilds it. Python
# (gunicorn) from $BENCH_VENV (default <repo>/../venv-bench), made from
# examples/gunicorn-app/requirements.txt if missing. Raw outputs go to
# bench/out/overload-<UTC time>/ (gitignored).
#
# Knobs: BENCH_DURATION (20), BENCH_CONNS (64), BENCH_MS (50),
# BENCH_MODES ("plain admitted"), BENCH_RETRY_AFTER (1), BENCH_PORT_BASE
# (18580).
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-20}
CONNS=${BENCH_CONNS:-64}
WORK_MS=${BENCH_MS:-50}
read -r -a MODES <<<"${BENCH_MODES:-plain admitted}"
PORT_BASE=${BENCH_PORT_BASE:-18580}
VENV=${BENCH_VENV:-$(dirname "$ROOT")/venv-bench}
BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/modelarts-init}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/overload-$STAMP
mkdir -p "$OUT"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

need_tools curl ss:iproute2
build_if_absent release "$BIN"
need_venv "$VENV" "gunicorn" "$ROOT/examples/gunicorn-app/requirements.txt"
PY=$VENV/bin/python
stop_started_on_exit

# metric NAME: the value of an unlabelled sample NAME on the metrics page.
metric() { curl -s -m 5 "http://127.0.0.1:$LISTEN/metrics" | awk -v n="$1" '$1 == n { print $2; exit }'; }
# jq-free reading of the client's JSON: json FILE EXPR (a Python expression on `d`).
json() { "$PY" -c "import json, sys; d = json.load(open(sys.argv[1])); v = $2; print('-' if v is None else v)" "$1"; }

say "overload: gunicorn -k sync -w 2, ${WORK_MS} ms per request, behind modelarts-init; $CONNS connections for ${DURATION} s"
say "  date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), loadavg $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
say "  client honours Retry-After: $([[ ${BENCH_RETRY_AFTER:-1} == 0 ]] && echo no || echo yes)"

for mode in "${MODES[@]}"; do
    MD=$OUT/$mode
    mkdir -p "$MD"
    LISTEN=$(next_port "$PORT_BASE")
    UP=$(next_port $((LISTEN + 1)))
    flags=(--metrics-path /metrics --drain-delay 0s --stop-timeout 5s)
    [[ $mode == admitted ]] && flags+=(--max-concurrency 2 --max-queue 8)
    INFLIGHT_FILE=$MD/inflight "$BIN" --listen "127.0.0.1:$LISTEN" --upstream "127.0.0.1:$UP" "${flags[@]}" -- \
        "$VENV/bin/gunicorn" --chdir "$ROOT/tests/py" -k sync -w 2 --no-control-socket \
        -b "127.0.0.1:$UP" inflight_app:app >"$MD/modelarts-init.log" 2>&1 &
    PID=$!
    stop_later "$PID" 10
    wait_http "http://127.0.0.1:$LISTEN/health" '"health": *"true"' 60 ||
        { cat "$MD/modelarts-init.log" >&2; die "$mode: not healthy"; }
    # gunicorn's accept backlog (Recv-Q of its listening socket), sampled.
    (
        while kill -0 "$PID" 2>/dev/null; do
            ss -Hltn "sport = :$UP" | awk '{ print $2 }'
            sleep 0.2
        done
    ) >"$MD/backlog.txt" 2>/dev/null &
    SAMPLER=$!
    s0=$(sys_busy) t0=$(date +%s.%N)
    RETRY_AFTER=${BENCH_RETRY_AFTER:-1} "$PY" "$ROOT/bench/overload_client.py" \
        "http://127.0.0.1:$LISTEN/work?ms=$WORK_MS" "$CONNS" "$DURATION" >"$MD/client.json"
    s1=$(sys_busy) t1=$(date +%s.%N)
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    curl -s -m 5 "http://127.0.0.1:$LISTEN/metrics" >"$MD/metrics.txt"
    qsum=$(awk '$1 == "modelarts_init_queue_wait_seconds_sum" { print $2 }' "$MD/metrics.txt")
    # (the app writes no newline: read then says EOF)
    read -r _ most answered _ <"$MD/inflight" || true
    stop_started

    ok=$(json "$MD/client.json" 'd["ok"]')
    refused=$(json "$MD/client.json" 'd["statuses"].get("503", 0)')
    total=$(json "$MD/client.json" 'sum(d["statuses"].values()) + d["errors"]')
    read -r bmean bmax < <(awk '{ s += $1; if ($1 > m) m = $1; n++ } END { printf "%.1f %d\n", n ? s / n : 0, m }' "$MD/backlog.txt")
    # Busy ticks of all CPUs over what they could have given in that time.
    busy=$(calc 'b > 0 ? a / b * 100 : 0' "$((s1 - s0))" "$(calc '(a - b) * c' "$t1" "$t0" "$(($(getconf CLK_TCK) * $(nproc)))")")
    {
        echo "mode=$mode"
        echo "statuses=$(json "$MD/client.json" 'd["statuses"]') errors=$(json "$MD/client.json" 'd["errors"]')"
        echo "refused_share=$(calc 'b > 0 ? a / b : 0' "$refused" "$total")"
        echo "p50=$(json "$MD/client.json" 'd["latency_ms"]["p50"]') p99=$(json "$MD/client.json" 'd["latency_ms"]["p99"]')"
        echo "wait_p50=$(json "$MD/client.json" 'd["waited_ms"]["p50"]') wait_p99=$(json "$MD/client.json" 'd["waited_ms"]["p99"]') wait_mean=$(json "$MD/client.json" 'd["waited_ms"]["mean"]')"
        echo "front_queue_mean_ms=$(calc 'b > 0 ? a * 1000 / b : 0' "${qsum:-0}" "$ok")"
        echo "backlog_mean=$bmean backlog_max=$bmax most_in_app=$most app_answered=$answered machine_busy_pct=$busy"
    } >"$MD/summary.txt"
done

row() { # label key...
    local label=$1 m v line
    shift
    line=$(printf '%-44s' "$label")
    for m in "${MODES[@]}"; do
        v=$(tr ' ' '\n' <"$OUT/$m/summary.txt" | awk -F= -v k="$1" '$1 == k { print substr($0, length(k) + 2) }')
        line+=$(printf ' %18s' "$v")
    done
    say "$line"
}
say ""
say "$(printf '%-44s' '')$(for m in "${MODES[@]}"; do printf ' %18s' "$m"; done)"
row "answered 200 (requests)" app_answered
row "refused 503, share of all answers" refused_share
row "latency of the answered, p50 (ms)" p50
row "latency of the answered, p99 (ms)" p99
row "waited before a worker started it, p50" wait_p50
row "waited before a worker started it, p99" wait_p99
row "  mean (ms)" wait_mean
row "  of which in modelarts-init's queue" front_queue_mean_ms
row "gunicorn backlog, mean (connections)" backlog_mean
row "gunicorn backlog, max (connections)" backlog_max
row "most requests in the app at once" most_in_app
row "machine CPU busy during the load (%)" machine_busy_pct
for m in "${MODES[@]}"; do say "$m: $(grep '^statuses=' "$OUT/$m/summary.txt")"; done
say "(waited: from the client's send to a worker starting the request, measured by the app; the part"
say " not in modelarts-init's queue is the upstream's own queueing, in gunicorn's backlog)"
say "raw results: ${OUT#"$ROOT"/}/"
