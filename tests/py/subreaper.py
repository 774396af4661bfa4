"""Runs a command as a child subreaper and reports what it leaves behind.

Usage: python3 subreaper.py COMMAND [ARGS...]

As a child subreaper, this process inherits whatever the command leaves when
it exits: orphans and, if the command exits without reaping its own
children, their zombies. Once the command has exited, prints

    EXIT <the command's exit status>
    LEFT <n> <pid:state ...>

where LEFT counts this process's children other than the command: 0 means
that the command reaped everything below it before it exited. Then it kills
and reaps those, and exits 0.
"""

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def children(me):
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me:
            found.append(f"{name}:{fields[0]}")
    return found


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl: {os.strerror(ctypes.get_errno())}")
    child = subprocess.Popen(sys.argv[1:])
    code = child.wait()
    left = children(os.getpid())
    print(f"EXIT {code}", flush=True)
    print(f"LEFT {len(left)} {' '.join(left)}", flush=True)
    for entry in left:
        try:
            os.kill(int(entry.split(":")[0]), signal.SIGKILL)
        except OSError:
            pass
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break


if __name__ == "__main__":
    main()
