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
