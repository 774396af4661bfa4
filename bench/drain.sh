#!/usr/bin/env bash
# bench/drain.sh: what the adaptive drain (--drain-quiet-period) saves in a
# rolling upgrade, next to R8's fixed delay, in one run.
#
# One instance: modelarts-init -- gunicorn -k gevent -w 2 (the example
# app), in two modes, one after the other:
#   fixed  --drain-delay 60s (R8's default)
#   quiet  --drain-delay 60s --drain-quiet-period 3s --drain-min 5s
# A client loop sends GET / every 50 ms through the instance, and a
# balancer stand-in probes GET /health every 1 s: after 3 failures in a
# row (HAProxy's fall 3, as a platform's balancer does) it takes the
# instance out and the client stops sending to it, as traffic moves to the
# other replicas. SIGTERM comes 2 s into the load.
#
# Printed per mode: when the balancer took the instance out, when the
# child got its stop signal (modelarts-init's log, elapsed_ms after the
# SIGTERM), when the instance exited (the time this replica's step of a
# rolling upgrade takes), and the failed requests (any answer but 200, or
# none) out of those sent. Then the quiet mode's time as a share of the
# fixed one. Expected: fixed about 60 s, quiet about max(5 s, out + 3 s),
# zero failed in both. The exit status says whether the benchmark ran.
#
# Needs curl (installed with apt-get as root when missing). Builds
# target/release/modelarts-init ($CARGO_TARGET_DIR if set; BENCH_BIN=...
# for another build) if absent, never rebuilds it. The Python side
# (gunicorn, gevent, Flask) lives in $BENCH_VENV (default
# <repo>/../venv-bench), made from examples/gunicorn-app/requirements.txt
# if missing. Raw logs go to bench/out/drain-<UTC time>/ (gitignored).
#
# Knobs: BENCH_MODES ("fixed quiet"), BENCH_DELAY (60), BENCH_QUIET (3),
# BENCH_MIN (5), BENCH_PORT_BASE (18480).
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
ROOT=$PWD

read -r -a MODES <<<"${BENCH_MODES:-fixed quiet}"
DELAY=${BENCH_DELAY:-60}
QUIET=${BENCH_QUIET:-3}
MIN=${BENCH_MIN:-5}
PORT_BASE=${BENCH_PORT_BASE:-18480}
VENV=${BENCH_VENV:-$(dirname "$ROOT")/venv-bench}
BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/modelarts-init}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/drain-$STAMP
mkdir -p "$OUT"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

need_tools curl
build_if_absent release "$BIN"
need_venv "$VENV" "flask, gevent, gunicorn" "$ROOT/examples/gunicorn-app/requirements.txt"
stop_started_on_exit

now() { date +%s.%N; }

say "adaptive drain vs R8's fixed delay: one instance, a client that leaves when the balancer takes it out"
say "  date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
say "  binary: $BIN"
say ""
say "$(printf '%-6s %-58s %9s %9s %9s %13s' mode flags out_s child_s exit_s failed/sent)"

declare -A EXIT_S
for mode in "${MODES[@]}"; do
    MD=$OUT/$mode
    mkdir -p "$MD"
    LISTEN=$(next_port "$PORT_BASE")
    UP=$(next_port $((LISTEN + 1)))
    flags=(--drain-delay "${DELAY}s" --stop-timeout 10s)
    [[ $mode == quiet ]] && flags+=(--drain-quiet-period "${QUIET}s" --drain-min "${MIN}s")
    "$BIN" --listen "127.0.0.1:$LISTEN" --upstream "127.0.0.1:$UP" "${flags[@]}" -- \
        "$VENV/bin/gunicorn" --chdir "$ROOT/examples/gunicorn-app" -k gevent -w 2 --keep-alive 200 \
        --no-control-socket -b "127.0.0.1:$UP" app:app >"$MD/modelarts-init.log" 2>&1 &
    PID=$!
    stop_later "$PID" 15
    wait_http "http://127.0.0.1:$LISTEN/health" '"health": *"true"' 60 ||
        { cat "$MD/modelarts-init.log" >&2; die "$mode: not healthy"; }

    # The balancer stand-in: probes /health every 1 s; 3 failures in a row
    # and the instance is out (the file "out" says when).
    (
        fails=0
        while kill -0 "$PID" 2>/dev/null; do
            code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$LISTEN/health" || true)
            if [[ $code == 200 ]]; then fails=0; else fails=$((fails + 1)); fi
            if ((fails >= 3)) && [[ ! -e $MD/out ]]; then now >"$MD/out"; fi
            sleep 1
        done
    ) &
    # The client: GET / every 50 ms while the balancer sends here.
    (
        while kill -0 "$PID" 2>/dev/null && [[ ! -e $MD/out ]]; do
            code=$(curl -s -o /dev/null -m 30 -w '%{http_code}' "http://127.0.0.1:$LISTEN/" || true)
            echo "$code" >>"$MD/client.txt"
            sleep 0.05
        done
    ) &
    CLIENT=$!
    sleep 2
    TERM_AT=$(now)
    kill -TERM "$PID"
    wait "$PID" || true
    EXITED=$(now)
    wait "$CLIENT" || true
    sent=$(wc -l <"$MD/client.txt")
    failed=$(grep -cvx 200 "$MD/client.txt" || true)
    child_ms=$(grep -m1 'stop signal to child' "$MD/modelarts-init.log" | sed -n 's/.*elapsed_ms=\([0-9]*\).*/\1/p')
    out_s=$([[ -e $MD/out ]] && calc 'a - b' "$(cat "$MD/out")" "$TERM_AT" || echo -1)
    exit_s=$(calc 'a - b' "$EXITED" "$TERM_AT")
    EXIT_S[$mode]=$exit_s
    say "$(printf '%-6s %-58s %9.1f %9.1f %9.1f %13s' "$mode" "${flags[*]}" "$out_s" "$(calc 'a / 1000' "${child_ms:--1000}")" \
        "$exit_s" "$failed/$sent")"
    grep -m1 'drain delay ended early' "$MD/modelarts-init.log" | sed 's/^/         log: /' | tee -a "$OUT/summary.txt" || true
    stop_started
done

if [[ -n ${EXIT_S[fixed]:-} && -n ${EXIT_S[quiet]:-} ]]; then
    say ""
    say "$(printf 'quiet / fixed time from SIGTERM to exit: %.3f (%.1f s instead of %.1f s)' \
        "$(calc 'a / b' "${EXIT_S[quiet]}" "${EXIT_S[fixed]}")" "${EXIT_S[quiet]}" "${EXIT_S[fixed]}")"
fi
say "(out_s: the balancer stand-in took the instance out; child_s: the child's stop signal; exit_s: the"
say " instance exited; all in seconds after SIGTERM)"
say "raw results: ${OUT#"$ROOT"/}/"
