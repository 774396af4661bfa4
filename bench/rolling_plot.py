"""Draws the timeline of a bench/rolling.sh run.

    python bench/rolling_plot.py bench/out/rolling-<time> docs/rolling-upgrade.png

Reads, for each mode's folder of the run: haproxy.log (one line per request:
"<accept epoch> <server> <status> <total ms> <termination state> <request>"),
events.tsv ("<epoch> <kind> <slot>": start, sigterm, exit, lb-UP/lb-DOWN,
load-start, load-end) and the replicas' logs (the moment each child got its
stop signal). Writes <mode>/persec.tsv (second, requests/s per replica,
errors/s) and the picture: one panel per mode, requests/s per replica, errors
per second, the SIGTERMs (dashed) and the child's stop signal (dotted).
Prints one line per mode: where the errors were.
"""

import collections
import datetime
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SLOTS = ("r1", "r2", "r3")
COLOURS = {"r1": "tab:blue", "r2": "tab:orange", "r3": "tab:green"}
TITLES = {
    "init": "modelarts-init (drain 5 s, stop timeout 5 s) + gunicorn",
    "tini": "tini + gunicorn",
    "runsh": "tini + the seed's run.sh (trap TERM, sleep 5 s, kill, wait) + gunicorn",
    "mnist": "modelarts-init mnist (drain 5 s, stop timeout 5 s)",
    "r8": "modelarts-init (R8's drain 60 s) + gunicorn",
    "quiet": "modelarts-init (drain 60 s, --drain-quiet-period 3s --drain-min 5s) + gunicorn",
}
LOG_LINE = re.compile(r"^(\d+\.\d{3}) (\S+) (-?\d+) (-?\d+) (\S+) ")
ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def events(folder):
    out = []
    with open(os.path.join(folder, "events.tsv")) as f:
        for line in f:
            parts = line.split()
            out.append((float(parts[0]), parts[1], parts[2] if len(parts) > 2 else ""))
    return out


def child_stop(folder, mode, slot, sigterm_at):
    """When the replica's server was told to stop (None if never)."""
    path = os.path.join(folder, f"{slot}.log")
    if mode == "tini":
        return sigterm_at  # tini passes SIGTERM on at once
    with open(path, errors="replace") as f:
        for line in f:
            if mode == "runsh" and line.startswith("child-stop "):
                return float(line.split()[1])
            if mode in ("init", "mnist", "r8", "quiet") and 'to="stopping"' in line:
                m = ISO.match(line)
                if m:
                    t = datetime.datetime.fromisoformat(m.group(1) + "+00:00")
                    return t.timestamp()
    return None


def per_second(folder, t0, seconds):
    counts = collections.defaultdict(lambda: collections.Counter())
    errors = collections.Counter()
    bad = collections.Counter()
    with open(os.path.join(folder, "haproxy.log"), errors="replace") as f:
        for line in f:
            m = LOG_LINE.match(line)
            if not m or "/slow" in line:
                continue
            t, server, status = float(m.group(1)), m.group(2), int(m.group(3))
            sec = int(t - t0)
            if not 0 <= sec < seconds:
                continue
            if status >= 500 or status < 0:
                errors[sec] += 1
                bad[(server, status, m.group(5))] += 1
            else:
                counts[sec][server] += 1
    with open(os.path.join(folder, "persec.tsv"), "w") as f:
        f.write("second\t" + "\t".join(SLOTS) + "\terrors\n")
        for s in range(seconds):
            f.write(f"{s}\t" + "\t".join(str(counts[s][x]) for x in SLOTS) + f"\t{errors[s]}\n")
    return counts, errors, bad


def wrk_failed(run, mode):
    """ "F of N requests failed; " from the run's results.tsv, if there."""
    try:
        with open(os.path.join(run, "results.tsv")) as f:
            for row in f:
                cols = row.rstrip("\n").split("\t")
                if cols[0] == mode:
                    return f"{cols[2]} of {cols[1]} requests failed (wrk), "
    except OSError:
        pass
    return ""


def main(run, png):
    modes = [m for m in TITLES if os.path.isdir(os.path.join(run, m))]
    fig, axes = plt.subplots(len(modes), 1, figsize=(11, 3.1 * len(modes)), sharex=True, squeeze=False)
    for ax, mode in zip(axes[:, 0], modes):
        folder = os.path.join(run, mode)
        ev = events(folder)
        t0 = next(t for t, k, _ in ev if k == "load-start")
        end = next((t for t, k, _ in ev if k == "load-end"), t0 + 20)
        seconds = int(end - t0) + 1
        counts, errors, bad = per_second(folder, t0, seconds)
        xs = [s + 0.5 for s in range(seconds)]
        # Stacked: round robin gives the replicas equal shares, so lines
        # would hide each other; the top edge is the balancer's total.
        edges = list(range(seconds + 1))  # second s covers [s, s + 1)
        ax.stackplot(
            edges,
            [[counts[min(s, seconds - 1)][slot] for s in edges] for slot in SLOTS],
            labels=[f"{slot} req/s" for slot in SLOTS],
            colors=[COLOURS[slot] for slot in SLOTS],
            alpha=0.55,
            step="post",
        )
        # Errors are few next to thousands of requests: their own axis.
        err_ax = ax.twinx()
        err_ax.bar(xs, [errors[s] for s in range(seconds)], width=0.8, color="tab:red", label="errors/s (5xx)")
        err_ax.set_ylim(0, max(10, max(errors.values(), default=0) * 1.3))
        err_ax.set_ylabel("errors per second", color="tab:red")
        err_ax.tick_params(axis="y", colors="tab:red")
        for t, kind, slot in ev:
            if kind == "sigterm":
                ax.axvline(t - t0, color=COLOURS[slot], linestyle="--", linewidth=1.2)
                ax.text(t - t0 + 0.1, 0.97, f"SIGTERM {slot}", transform=ax.get_xaxis_transform(), fontsize=7,
                        va="top", bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1))
                stop = child_stop(folder, mode, slot, t)
                if stop is not None:
                    ax.axvline(stop - t0, color=COLOURS[slot], linestyle=":", linewidth=1.6)
            elif kind == "start" and t > t0:
                ax.axvline(t - t0, color=COLOURS[slot], linestyle="-", linewidth=0.8, alpha=0.5)
        total_err = sum(errors.values())
        failed = wrk_failed(run, mode)
        ax.set_title(f"{TITLES.get(mode, mode)}: {failed}{total_err} 5xx from the balancer", fontsize=9, loc="left")
        ax.set_ylabel("requests per second")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        where = ", ".join(f"{n} x {st} from {srv} ({term})" for (srv, st, term), n in bad.most_common(4))
        print(f"  {mode:6} balancer log: {total_err} errors" + (f": {where}" if where else ""))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles.append(plt.Rectangle((0, 0), 1, 1, color="tab:red"))
    labels.append("errors/s (right axis)")
    fig.legend(handles, labels, fontsize=8, loc="upper center", ncol=4)
    axes[-1, 0].set_xlabel(
        "seconds since the load started (solid: replacement started; dashed: SIGTERM; dotted: the server's stop signal)"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.975))
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
