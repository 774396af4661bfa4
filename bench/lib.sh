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
