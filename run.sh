#!/bin/sh
# /home/run.sh: the start script of a ModelArts batch-service image (R5:
# the image's default is CMD ["sh", "/home/run.sh"]).
#
# It execs modelarts-init, which then runs the service as its child, so the
# service gets a correct PID 1: zombies reaped, signals forwarded, stderr
# merged into stdout (R4), port 8080 owned with /health (R1, R3) and the
# 60 s drain on SIGTERM (R8).
#
# Configure it with environment variables (or pass the command as arguments):
#   MODELARTS_SERVICE_CMD  the service command line, split on blanks
#                          (default: gunicorn with gevent workers on 127.0.0.1:8081)
#   MODELARTS_SERVICE_DIR  directory to start it in (default: /home/app if it exists)
#   MODELARTS_INIT_BIN     the modelarts-init binary (default: modelarts-init in PATH)
#   MODELARTS_INIT_*       every modelarts-init flag, e.g. MODELARTS_INIT_DRAIN_DELAY=60s,
#                          MODELARTS_INIT_NO_PROXY=true for a service without HTTP
set -eu

bin="${MODELARTS_INIT_BIN:-modelarts-init}"
dir="${MODELARTS_SERVICE_DIR:-/home/app}"
if [ -d "$dir" ]; then
    cd "$dir"
fi

if [ "$#" -eq 0 ]; then
    cmd="${MODELARTS_SERVICE_CMD:-gunicorn -k gevent -w 2 --keep-alive 200 -b 127.0.0.1:8081 app:app}"
    # Split the command line on blanks, without expanding wildcards.
    set -f
    # shellcheck disable=SC2086
    set -- $cmd
    set +f
fi

exec "$bin" -- "$@"
