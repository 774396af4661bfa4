# Helpers shared by the bench/*.sh scripts; source it after setting OUT
# (the run's output folder). Nothing here runs anything by itself.

# Prints a line and appends it to the run's summary.
say() { printf '%s\n' "$*" | tee -a "$OUT/summary.txt"; }
# Stops the script with a message naming it.
die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }
# Float arithmetic: calc '<awk expression over a, b, c>' a b c
# (the parentheses keep a ">" in the expression from being read as a redirect)
calc() { awk -v a="${2:-0}" -v b="${3:-0}" -v c="${4:-0}" "BEGIN { printf \"%s\", ($1) }"; }
# PASS or FAIL for a condition over a and b.
grade() { if [[ $(calc "($1) ? 1 : 0" "${2:-0}" "${3:-0}") == 1 ]]; then echo PASS; else echo FAIL; fi; }
# Seconds of a duration written as "10" or "10s".
# median: the median of the numbers on stdin, one a line (the mean of the
# middle two for an even count; 0 for none).
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
secs() { calc 'a + 0' "${1%s}"; }

# Whether nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The first free port from PORT up.
next_port() {
    local p=$1
    while ! port_free "$p"; do p=$((p + 1)); done
    echo "$p"
}
# Waits up to SECONDS for URL to answer a body matching PATTERN.
wait_http() { # url pattern seconds
    for _ in $(seq $(($3 * 10))); do
        if curl -s -m 1 "$1" 2>/dev/null | grep -q -- "$2"; then return 0; fi
        sleep 0.1
    done
    return 1
}
# CPU ticks (user + system) used so far by the given pids.
ticks() {
    local total=0 p s f
    for p in "$@"; do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }
        read -r -a f <<<"$s"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
# CPU ticks the whole machine has been busy so far.
sys_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# Lines "tid comm ticks" for each thread of PID, by tid.
thread_ticks() {
    local t s f c
    for t in /proc/"$1"/task/*; do
        s=$(cat "$t/stat" 2>/dev/null) || continue
        c=${s#*(}; c=${c%%)*}
        s=${s##*) }
        read -r -a f <<<"$s"
        echo "${t##*/} $c $((f[11] + f[12]))"
    done | sort -n
}

# --- tools and the binary ------------------------------------------------
# need_tools TOOL[:PACKAGE]...: installs with apt-get (as root; otherwise
# dies naming what is missing) the packages of the tools that are missing.
# TOOL is a command looked up in PATH, or a path (with a /) that must be
# executable; PACKAGE is the Debian package that brings it (default: TOOL's
# name), or several separated by | of which the first one the archive has
# is installed (nginx:nginx-light|nginx). apt-get's output goes to
# $OUT/apt.log, shown if it fails.
need_tools() {
    local spec tool pkg alt missing=() pkgs=()
    for spec in "$@"; do
        tool=${spec%%:*}
        if [[ $tool == */* ]]; then
            [[ -x $tool ]] && continue
        else
            command -v "$tool" >/dev/null && continue
        fi
        pkg=${tool##*/}
        [[ $spec == *:* ]] && pkg=${spec#*:}
        missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    [[ $EUID == 0 ]] || die "missing ${missing[*]##*|}; run as root to install them"
    echo "installing ${missing[*]##*|} ..." >&2
    apt-get update -qq >"$OUT/apt.log" 2>&1 || { cat "$OUT/apt.log" >&2; die "apt-get update failed"; }
    for pkg in "${missing[@]}"; do
        # the first alternative the archive has (the last one regardless)
        while [[ $pkg == *'|'* ]]; do
            alt=${pkg%%|*}
            if apt-cache show "$alt" >/dev/null 2>&1; then pkg=$alt; else pkg=${pkg#*|}; fi
        done
        pkgs+=("$pkg")
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >>"$OUT/apt.log" 2>&1 ||
        { cat "$OUT/apt.log" >&2; die "apt-get install ${pkgs[*]} failed"; }
}

# Whether a cargo or rustc is running on the machine (a build that takes
# CPU from what is measured).
cargo_running() { pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null; }

# build_if_absent PROFILE BIN... [-- CARGO_ARGS...]: if any BIN is not an
# executable file, waits (an hour at most) for any running cargo to finish,
# then runs `cargo build --profile PROFILE CARGO_ARGS...` (--release for
# release) in the current directory; dies if a BIN is still missing then
# (e.g. CARGO_TARGET_DIR points elsewhere). Never rebuilds.
build_if_absent() {
    local profile=$1 b missing=no bins=()
    shift
    while (($#)) && [[ $1 != -- ]]; do bins+=("$1"); shift; done
    (($#)) && shift
    for b in "${bins[@]}"; do [[ -x $b ]] || missing=yes; done
    [[ $missing == yes ]] || return 0
    for _ in $(seq 720); do
        pgrep -x cargo >/dev/null || break
        echo "waiting for a running cargo to finish before building" >&2
        sleep 5
    done
    echo "building ${bins[*]} ..." >&2
    if [[ $profile == release ]]; then
        cargo build --release "$@" >&2
    else
        cargo build --profile "$profile" "$@" >&2
    fi
    for b in "${bins[@]}"; do [[ -x $b ]] || die "$b still missing after cargo build"; done
}

# --- wrk -----------------------------------------------------------------
# wrk_summary FILE: the figures of a wrk output (run with --latency), on one
# line: rps p50_ms p99_ms non2xx socket_errors requests bytes wrong.
# p50/p99 are -1 and requests 0 when the output has none (wrk failed);
# socket_errors adds connect, read, write and timeout; bytes is the total
# read (-1 in an unknown unit); wrong is the number on a line
# "wrong answers: N" that a wrk Lua script prints, -1 without one.
wrk_summary() {
    awk '
    function ms(v,  n, u) { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") return n / 1000; if (u == "ms") return n; if (u == "s") return n * 1000
        if (u == "m") return n * 60000; if (u == "h") return n * 3600000; return -1 }
    function by(v,  n, u) { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "B") return n; if (u == "KB") return n * 1024; if (u == "MB") return n * 1048576
        if (u == "GB") return n * 1073741824; if (u == "TB") return n * 1099511627776; return -1 }
    BEGIN { rps = 0; p50 = -1; p99 = -1; non = 0; se = 0; req = 0; b = 0; wrong = -1 }
    /^ *50% / { p50 = ms($2) }
    /^ *99% / { p99 = ms($2) }
    / requests in / { req = $1; b = by($5) }
    /Socket errors:/ { gsub(",", ""); se = $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { non = $5 }
    /^Requests\/sec:/ { rps = $2 }
    /^wrong answers:/ { wrong = $3 }
    END { printf "%s %s %s %s %s %s %s %s\n", rps, p50, p99, non, se, req, b, wrong }' "$1"
}

# --- what the script started: stopped on exit ----------------------------
# PID and all its descendants, one a line, parents first.
pid_tree() {
    local k
    echo "$1"
    for k in $(pgrep -P "$1" 2>/dev/null || true); do pid_tree "$k"; done
}

STARTED_PIDS=()
# stop_later PID [GRACE]: registers PID (a background job of this shell) to
# be stopped by stop_started: SIGTERM, up to GRACE seconds (whole, default
# 0: none) for it to exit, then SIGKILL to what is left of it and of the
# descendants it had before the SIGTERM.
stop_later() { STARTED_PIDS+=("$1:${2:-0}"); }

# stop_started: stops every registered pid, the last registered first, and
# empties the list (the script may start others and call it again).
stop_started() {
    local i p grace pids
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        p=${STARTED_PIDS[i]%%:*} grace=${STARTED_PIDS[i]#*:}
        pids=$(pid_tree "$p" | tr '\n' ' ')
        if ((grace > 0)); then
            kill -TERM "$p" 2>/dev/null || true
            for _ in $(seq $((grace * 10))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        fi
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    STARTED_PIDS=()
}

# stop_started_on_exit: stop_started when the script exits, also on SIGINT
# and SIGTERM (which make it exit 130).
stop_started_on_exit() {
    trap stop_started EXIT
    trap 'exit 130' INT TERM
}

# --- Python --------------------------------------------------------------
# need_venv DIR IMPORTS REQUIREMENTS...: unless `import IMPORTS` (e.g.
# "flask, gunicorn") works in the venv DIR, makes it (if missing) and pip
# installs the requirements files into it.
need_venv() {
    local venv=$1 imports=$2 r reqs=()
    shift 2
    "$venv/bin/python" -c "import $imports" 2>/dev/null && return 0
    echo "setting up the Python venv $venv" >&2
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
    for r in "$@"; do reqs+=(-r "$r"); done
    "$venv/bin/pip" install -q --disable-pip-version-check "${reqs[@]}" >&2
}

# The common head of an nginx config for a benchmark (after need_tools
# nginx and NGINX=its path): $1 = prefix dir, $2 = worker count; prints the
# lines up to the open "http {" block, to which the caller adds its server
# and the closing brace.
nginx_head() {
    local dir=$1 workers=$2 t
    echo "daemon off;"
    echo "master_process on;"
    echo "worker_processes $workers;"
    echo "pid $dir/nginx.pid;"
    echo "error_log $dir/error.log warn;"
    [[ $EUID == 0 ]] && echo "user root root;"
    echo "events { worker_connections 4096; }"
    echo "http {"
    echo "  access_log off;"
    echo "  sendfile on; tcp_nodelay on;"
    echo "  keepalive_timeout 200s; keepalive_requests 10000000;"
    echo "  default_type application/octet-stream;"
    echo "  client_body_temp_path $dir/tmp/client;"
    echo "  proxy_temp_path $dir/tmp/proxy;"
    for t in fastcgi uwsgi scgi; do
        "$NGINX" -V 2>&1 | grep -q -- "--without-http_${t}_module" || echo "  ${t}_temp_path $dir/tmp/$t;"
    done
}
