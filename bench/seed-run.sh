#!/bin/bash
# The run.sh that the ModelArts custom-image page gives for R8 (trap TERM,
# sleep 60, kill -15 gunicorn, wait), as users copy it; bench/rolling.sh
# runs it under tini as the "runsh" mode. Changes from the page: the sleep
# is $SEED_SLEEP (default 60, as on the page), the command comes from the
# arguments, and a "child-stop <epoch>" line marks the kill for the plot.
gunicorn_pid=""
handle_sigterm() {
    echo "Received SIGTERM, send SIGTERM to $gunicorn_pid"
    if [ "$gunicorn_pid" != "" ]; then
        sleep "${SEED_SLEEP:-60}"
        echo "child-stop $(date +%s.%N)"
        kill -15 "$gunicorn_pid" # pass SIGTERM on to gunicorn
        wait "$gunicorn_pid"     # wait for gunicorn to end
    fi
}
trap handle_sigterm TERM
"$@" &
gunicorn_pid=$!
wait "$gunicorn_pid"
