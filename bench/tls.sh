#!/usr/bin/env bash
# bench/tls.sh: what terminating TLS on port 8080 costs, next to nginx
# terminating TLS with the same certificate in front of the same upstream.
#
# Measures, in one run, a 1 KiB static response (GET /1k) under wrk over
# HTTPS, for two targets in front of the same plain-HTTP upstream (nginx
# serving the file on 127.0.0.1:A):
#   modelarts-init  modelarts-init --tls-cert/--tls-key --listen 127.0.0.1:B
#                   --upstream 127.0.0.1:A -- sleep 1000 (it execs
#                   modelarts-init-tls, the TLS build)
#   nginx-tls       nginx on 127.0.0.1:C with ssl, proxy_pass to the same
#                   upstream with upstream keep-alive, X-Forwarded-* set
# in two loads:
#   keep-alive   wrk -t2 -c64 --latency: requests/s and p99 over 64 TLS
#                connections kept open (the cost of TLS records)
#   handshakes   the same with "Connection: close": every request on a new
#                connection, so requests/s = full TLS handshakes per second
#                (wrk does not resume sessions)
# Both get as many workers as there are CPUs (--proxy-threads for
# modelarts-init); the certificate is one EC P-256 key made by openssl for
# the run; TLS 1.3 with AES-GCM is what wrk's OpenSSL and both servers
# agree on. BENCH_DURATION (10s) per run, after a BENCH_WARMUP (2s) one.
#
# How to read it: req/s, p50 and p99 per target and load, and the ratios
# modelarts-init / nginx (above 1 is better for modelarts-init, for p99 it
# is worse); other% is the rest of the machine (a busy machine moves
# req/s). TARGETS: keep-alive throughput >= nginx's and p99 <= nginx's
# (target), every answer 2xx (must). The exit status says whether the
# benchmark ran, not whether targets were met.
#
# Needs root only to install what is missing (apt-get: nginx, wrk, curl,
# openssl). Builds target/release/modelarts-init{,-tls} if absent, never
# rebuilds them (BENCH_BIN=... for another build; its -tls sibling must be
# next to it). Raw outputs go to bench/out/tls-<UTC time>/ (gitignored).
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
ROOT=$PWD
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
PORT_BASE=${BENCH_PORT_BASE:-18480}
BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/modelarts-init}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/tls-$STAMP
mkdir -p "$OUT"

# shellcheck source=bench/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

need_tools nginx:'nginx-light|nginx' wrk curl openssl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
build_if_absent release "$BIN" "${BIN}-tls" -- --bin modelarts-init --bin modelarts-init-tls
stop_started_on_exit

WORKERS=$(nproc)
PORT_A=$(next_port "$PORT_BASE")
PORT_B=$(next_port $((PORT_A + 1)))
PORT_C=$(next_port $((PORT_B + 1)))
mkdir -p "$OUT/www"
head -c 1024 /dev/zero | tr '\0' 'x' >"$OUT/www/1k"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$OUT/key.pem" -out "$OUT/cert.pem" -subj /CN=localhost -days 1 2>/dev/null

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit: $(GIT_OPTIONAL_LOCKS=0 git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "modelarts-init: $BIN ($(stat -c %s "$BIN") bytes; -tls: $(stat -c %s "${BIN}-tls") bytes)"
    echo "nginx: $("$NGINX" -v 2>&1)"
    echo "wrk: $(wrk --version 2>&1 | head -n1)"
    echo "cpus: $WORKERS, loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"
say "modelarts-init TLS termination vs nginx, same certificate and upstream"
sed 's/^/  /' "$OUT/env.txt" | tee -a "$OUT/summary.txt"

start_nginx() { # name config-body
    local d=$OUT/$1
    mkdir -p "$d/tmp"
    { nginx_head "$d" "$WORKERS"; echo "$2"; echo "}"; } >"$d/nginx.conf"
    "$NGINX" -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" >"$d/stdout.log" 2>&1 &
    stop_later $! 5
}
start_nginx upstream "  server { listen 127.0.0.1:$PORT_A; root $OUT/www; location / { } }"
wait_http "http://127.0.0.1:$PORT_A/1k" xxxx 10 || die "upstream nginx did not start"
start_nginx nginx-tls "  upstream up { server 127.0.0.1:$PORT_A; keepalive 64; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:$PORT_C ssl;
    ssl_certificate $OUT/cert.pem; ssl_certificate_key $OUT/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;
    location / {
      proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }"
"$BIN" --listen "127.0.0.1:$PORT_B" --upstream "127.0.0.1:$PORT_A" --upstream-health tcp \
    --tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem" --proxy-threads "$WORKERS" \
    --drain-delay 0s --stop-timeout 2s -- sleep 1000 >"$OUT/modelarts-init.log" 2>&1 &
stop_later $! 5
for url in "https://127.0.0.1:$PORT_C/1k" "https://127.0.0.1:$PORT_B/1k"; do
    for _ in $(seq 300); do
        curl -sk -m 1 "$url" | grep -q xxxx && break
        sleep 0.1
    done
    curl -sk -m 2 "$url" | grep -q xxxx || die "$url does not answer"
done

run() { # target port load
    local name=$1 port=$2 load=$3 extra=() busy0 busy1 f
    [[ $load == handshakes ]] && extra=(-H "Connection: close")
    f=$OUT/wrk-$name-$load.txt
    wrk -t2 -c64 -d"$WARMUP" "${extra[@]}" "https://127.0.0.1:$port/1k" >/dev/null 2>&1 || true
    busy0=$(sys_busy)
    wrk -t2 -c64 -d"$DURATION" --latency "${extra[@]}" "https://127.0.0.1:$port/1k" >"$f" 2>&1
    busy1=$(sys_busy)
    read -r rps p50 p99 non se _ <<<"$(wrk_summary "$f")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$load" "$rps" "$p50" "$p99" "$non" "$se" >>"$OUT/results.tsv"
    printf '%-15s %-11s %9s %9s %9s %8s/%s\n' "$name" "$load" "$rps" "$p50" "$p99" "$non" "$se" | tee -a "$OUT/summary.txt"
}
say ""
say "target          load           req/s    p50_ms    p99_ms non2xx/sock"
: >"$OUT/results.tsv"
for load in keep-alive handshakes; do
    run modelarts-init "$PORT_B" "$load"
    run nginx-tls "$PORT_C" "$load"
done
field() { awk -F'\t' -v n="$1" -v l="$2" -v c="$3" '$1 == n && $2 == l { print $c }' "$OUT/results.tsv"; }
say ""
for load in keep-alive handshakes; do
    r=$(calc 'a / b' "$(field modelarts-init $load 3)" "$(field nginx-tls $load 3)")
    q=$(calc 'a / b' "$(field modelarts-init $load 5)" "$(field nginx-tls $load 5)")
    say "$load: req/s modelarts-init / nginx = $(printf '%.3f' "$r"), p99 modelarts-init / nginx = $(printf '%.3f' "$q")"
done
bad=$(awk -F'\t' '$6 != 0 || $7 != 0' "$OUT/results.tsv" | wc -l)
say ""
say "TARGETS:"
say "  $(grade 'a >= 1' "$(calc 'a / b' "$(field modelarts-init keep-alive 3)" "$(field nginx-tls keep-alive 3)")") target  keep-alive req/s >= nginx's"
say "  $(grade 'a <= b' "$(field modelarts-init keep-alive 5)" "$(field nginx-tls keep-alive 5)") target  keep-alive p99 <= nginx's"
say "  $(grade 'a == 0' "$bad") must    every answer 2xx, no socket errors"
say "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
say "raw results: bench/out/tls-$STAMP/"
