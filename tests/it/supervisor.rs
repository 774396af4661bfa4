//! Integration tests for the supervisor core (`--no-proxy` pure-init mode):
//! reaping as PID 1 and as child subreaper, signal forwarding, the SIGTERM
//! timeline, exit statuses, flag/env parsing, output plumbing, `--user`, the
//! child's signal state, and JSON logging.
//!
//! Every test runs the real binary on real `sh` children. Child scripts get
//! the test's temp dir as `$1` and talk back through files in it.

use std::fmt::Debug;
use std::fs;
use std::ops::RangeBounds;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};

use crate::util::*;

const SEC: Duration = Duration::from_secs(1);

/// The binary in pure-init mode (the HTTP proxy is not under test here).
fn init() -> Init {
    Init::new().arg("--no-proxy")
}

/// Same, as PID 1 of a new PID namespace (the spawned process is `unshare`).
fn init_pid1() -> Init {
    unshare_init().arg("--no-proxy")
}

fn assert_no_panic(r: &Running) {
    assert!(
        !r.stderr.text().contains("panicked"),
        "modelarts-init panicked\n{}",
        r.dump()
    );
}

/// Parse `date +%s.%N` output.
fn read_epoch(path: &Path) -> f64 {
    let s =
        wait_for_file(path, secs(5)).unwrap_or_else(|| panic!("{} not written", path.display()));
    s.trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad timestamp {:?} in {}: {}", s, path.display(), e))
}

/// `init()` with `--drain-delay drain --stop-timeout stop`.
fn init_timed(drain: &str, stop: &str) -> Init {
    init().args(["--drain-delay", drain, "--stop-timeout", stop])
}

/// Asserts that the child writes `path` within `timeout`; `what` (and the output) if not.
fn expect_file(r: &Running, path: &Path, timeout: Duration, what: &str) {
    assert!(
        wait_for_file(path, timeout).is_some(),
        "{}\n{}",
        what,
        r.dump()
    );
}

/// Asserts that the child wrote `$1/ready` within 10 s (dumps the output if not).
fn wait_ready(r: &Running, dir: &TempDir) {
    expect_file(r, &dir.join("ready"), secs(10), "child not ready");
}

/// Creates `$1/done`, which lets a script run with `wait` exit, and asserts it exits 42.
fn release_waiting_script(r: &mut Running, dir: &TempDir) {
    fs::write(dir.join("done"), "").unwrap();
    assert_eq!(r.expect_code(secs(10)), 42, "{}", r.dump());
}

/// Spawns `init` running `script` (with `dir` as `$1`) and waits for its `ready` file.
fn spawn_ready(init: Init, script: &str, dir: &TempDir) -> Running {
    let r = init.sh(script, &[dir.str()]).spawn();
    wait_ready(&r, dir);
    r
}

/// Creates `$1/go`, on which the child exits, and waits (10 s) for our exit:
/// (exit code, time from `go` to the exit).
fn release_child(r: &mut Running, dir: &TempDir) -> (i32, Duration) {
    let t_go = Instant::now();
    fs::write(dir.join("go"), "").unwrap();
    let code = r.expect_code(secs(10));
    (code, t_go.elapsed())
}

/// Sends `sig` and waits up to `timeout` for the exit code: (epoch when sent, code).
fn signal_and_exit(r: &mut Running, sig: Signal, timeout: Duration) -> (f64, i32) {
    let sent = epoch_now();
    r.signal(sig);
    (sent, r.expect_code(timeout))
}

/// Sends `sig` and gives modelarts-init (up to 1 s) to act on it before the next step.
fn signal_and_settle(r: &Running, sig: Signal) {
    let before = r.stdout.len();
    r.signal(sig);
    settle_after_signal(r, before, SEC);
}

/// Asserts the child recorded (epoch in `$1/term_at` or `$1/int_at`) getting
/// `sig` within `window` seconds of `since` (`after` names that moment).
fn assert_child_got(
    r: &Running,
    dir: &TempDir,
    sig: Signal,
    since: f64,
    window: impl RangeBounds<f64> + Debug,
    after: &str,
) {
    let file = match sig {
        Signal::SIGTERM => "term_at",
        Signal::SIGINT => "int_at",
        other => panic!("the child scripts record only SIGTERM and SIGINT, not {other:?}"),
    };
    let delay = read_epoch(&dir.join(file)) - since;
    assert!(
        window.contains(&delay),
        "child got {:?} {:.3} s after {}, expected {:?} s\n{}",
        sig,
        delay,
        after,
        window,
        r.dump()
    );
}

/// Asserts the [`recording_child`] exited (`code`) from its `sig` trap (7 for
/// SIGTERM, 5 for SIGINT) having got `sig` within `window` s of `since`, and
/// that its traps saw nothing else.
fn assert_trap_exit(
    r: &Running,
    dir: &TempDir,
    code: i32,
    sig: Signal,
    since: f64,
    window: impl RangeBounds<f64> + Debug,
    after: &str,
) {
    let (want_code, want_log) = match sig {
        Signal::SIGTERM => (7, "TERM\n"),
        Signal::SIGINT => (5, "INT\n"),
        other => panic!("the recording child traps only SIGTERM and SIGINT, not {other:?}"),
    };
    assert_eq!(
        code,
        want_code,
        "child should have exited from its {:?} trap (after {})\n{}",
        sig,
        after,
        r.dump()
    );
    assert_child_got(r, dir, sig, since, window, after);
    assert_eq!(fs::read_to_string(dir.join("log")).unwrap(), want_log);
}

/// The exit code of a finished run (None if still running or killed by a signal).
fn exit_code(r: &mut Running) -> Option<i32> {
    r.try_status().and_then(|s| s.code())
}

/// Whether `unshare` can make a PID namespace here; prints a skip notice for `test` if not.
fn unshare_or_skip(test: &str, why: &str) -> bool {
    if !unshare_available() {
        skip(test, why);
        return false;
    }
    true
}

// A child loop that keeps the shell responsive to traps (dash runs a trap
// after the current foreground command, i.e. within 50 ms).
const IDLE_LOOP: &str = "while :; do sleep 0.05; done";

// ===========================================================================
// Reaping: PID 1 (unshare) and subreaper
// ===========================================================================

/// Child script: starts 5 orphans (each double-forked, so re-parented to the
/// reaper), each of which sleeps 0.3 s, records "its_pid its_ppid" in
/// `$1/orphans`, and exits. The script waits for all five lines, then for all
/// five pids to vanish from /proc (reaped), prints `ORPHAN pid ppid` lines and
/// `LEFT n` (orphans still present), and, when `$2` = pid1, `ZOMBIES n` for
/// the whole PID namespace. With `$2` = wait it then waits for `$1/done`.
/// Exits 42.
const ORPHAN_SCRIPT: &str = r#"
d=$1
i=0
while [ $i -lt 5 ]; do
  ( sh -c 'sleep 0.3; read p c s pp rest < /proc/$$/stat; echo "$$ $pp" >> "$1/orphans"' orphan "$d" & )
  i=$((i+1))
done
n=0
while [ $n -lt 500 ]; do
  c=0
  if [ -e "$d/orphans" ]; then while read pid pp; do c=$((c+1)); done < "$d/orphans"; fi
  [ $c -ge 5 ] && break
  sleep 0.02; n=$((n+1))
done
n=0
while [ $n -lt 500 ]; do
  left=0
  while read pid pp; do if [ -e /proc/$pid ]; then left=$((left+1)); fi; done < "$d/orphans"
  [ $left -eq 0 ] && break
  sleep 0.02; n=$((n+1))
done
while read pid pp; do echo "ORPHAN $pid $pp"; done < "$d/orphans"
echo "LEFT $left"
if [ "$2" = pid1 ]; then
  z=0
  for f in /proc/[0-9]*/stat; do
    { read p c s rest < "$f"; } 2>/dev/null || continue
    if [ "$s" = Z ]; then z=$((z+1)); echo "ZOMBIE $p $c"; fi
  done
  echo "ZOMBIES $z"
fi
if [ "$2" = wait ]; then
  echo ready > "$d/ready"
  while [ ! -e "$d/done" ]; do sleep 0.02; done
fi
exit 42
"#;

/// Child script: orphans 1,000 short-lived processes (`( true & )`: the
/// subshell exits at once, so its background child, running or already a
/// zombie, is re-parented to the reaper), then writes `$1/storm`. With
/// `$2` = pid1 it polls the namespace (up to 10 s) until no zombie is left and
/// prints `ZOMBIES n`; with `$2` = wait it waits for `$1/done`. Exits 42.
const STORM_SCRIPT: &str = r#"
d=$1
i=0
while [ $i -lt 1000 ]; do ( true & ); i=$((i+1)); done
echo done > "$d/storm"
if [ "$2" = pid1 ]; then
  n=0
  while [ $n -lt 500 ]; do
    z=0
    for f in /proc/[0-9]*/stat; do
      { read p c s rest < "$f"; } 2>/dev/null || continue
      if [ "$s" = Z ]; then z=$((z+1)); fi
    done
    [ $z -eq 0 ] && break
    sleep 0.02; n=$((n+1))
  done
  echo "ZOMBIES $z"
fi
if [ "$2" = wait ]; then
  while [ ! -e "$d/done" ]; do sleep 0.02; done
fi
exit 42
"#;

fn output_value(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// Asserts the [`ORPHAN_SCRIPT`] report in `out`: 5 orphans, each re-parented
/// to `reaper` (`what` names it), and none left unreaped; returns (pid, ppid)s.
fn assert_orphans_reaped_by(r: &Running, out: &str, reaper: i32, what: &str) -> Vec<(i32, i32)> {
    let orphans = orphan_lines(out);
    assert_eq!(orphans.len(), 5, "expected 5 orphans\n{}", r.dump());
    for (pid, ppid) in &orphans {
        assert_eq!(
            *ppid,
            reaper,
            "orphan {} was re-parented to {} instead of {}\n{}",
            pid,
            ppid,
            what,
            r.dump()
        );
    }
    assert_eq!(
        output_value(out, "LEFT ").as_deref(),
        Some("0"),
        "orphans were not reaped\n{}",
        r.dump()
    );
    orphans
}

fn orphan_lines(out: &str) -> Vec<(i32, i32)> {
    out.lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("ORPHAN ")?.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

/// Runs a reaping `script` (`$2` = pid1) under modelarts-init as PID 1 of a new
/// PID namespace, in a `tag` temp dir, and asserts the script's exit code 42
/// propagated within `timeout`; None (after a skip notice) where `unshare`
/// is refused.
fn run_reaping_script_as_pid1(
    test: &str,
    tag: &str,
    script: &str,
    timeout: Duration,
) -> Option<(Running, TempDir)> {
    let why = "`unshare --pid --fork --mount-proc` refused here; the subreaper variant still runs";
    if !unshare_or_skip(test, why) {
        return None;
    }
    let dir = TempDir::new(tag);
    let mut r = init_pid1().sh(script, &[dir.str(), "pid1"]).spawn();
    let code = r.expect_code(timeout);
    r.stdout.wait_eof(secs(5));
    assert_eq!(
        code,
        42,
        "exit code must propagate through unshare\n{}",
        r.dump()
    );
    Some((r, dir))
}

/// Asserts the script's `ZOMBIES n` line reports no zombie left in the PID
/// namespace (`when` says after what).
fn assert_no_namespace_zombies(r: &Running, when: &str) {
    assert_eq!(
        output_value(&r.stdout.text(), "ZOMBIES ").as_deref(),
        Some("0"),
        "zombies left in the PID namespace{}\n{}",
        when,
        r.dump()
    );
}

#[test]
fn pid1_reaps_orphaned_grandchildren_and_exit_code_propagates() {
    let test = "pid1_reaps_orphaned_grandchildren_and_exit_code_propagates";
    let Some((r, _dir)) = run_reaping_script_as_pid1(test, "pid1-orphans", ORPHAN_SCRIPT, secs(30))
    else {
        return;
    };
    assert_orphans_reaped_by(&r, &r.stdout.text(), 1, "PID 1 (modelarts-init)");
    assert_no_namespace_zombies(&r, "");
    assert_no_panic(&r);
}

#[test]
fn pid1_reaps_storm_of_1000_orphans() {
    let test = "pid1_reaps_storm_of_1000_orphans";
    let Some((r, _dir)) = run_reaping_script_as_pid1(test, "pid1-storm", STORM_SCRIPT, secs(60))
    else {
        return;
    };
    assert_no_namespace_zombies(&r, " after the storm");
    assert_no_panic(&r);
}

#[test]
fn pid1_handles_sigterm_from_outside_the_namespace() {
    if !unshare_or_skip(
        "pid1_handles_sigterm_from_outside_the_namespace",
        "`unshare --pid --fork --mount-proc` refused here",
    ) {
        return;
    }
    let dir = TempDir::new("pid1-term");
    let script = format!(
        r#"trap 'echo TERM >> "$1/log"; exit 9' TERM; echo ready > "$1/ready"; {IDLE_LOOP}"#
    );
    let mut r = init_pid1()
        .args(["--drain-delay", "100ms", "--stop-timeout", "5s"])
        .sh(&script, &[dir.str()])
        .spawn();
    let init_pid = wait_for_child(r.pid(), secs(5))
        .unwrap_or_else(|| panic!("unshare has no child\n{}", r.dump()));
    wait_ready(&r, &dir);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init_pid), Signal::SIGTERM).unwrap();
    let code = r.expect_code(secs(10));
    assert_eq!(
        code,
        9,
        "child's status must propagate (via PID 1 and unshare)\n{}",
        r.dump()
    );
    assert_eq!(
        fs::read_to_string(dir.join("log")).unwrap_or_default(),
        "TERM\n",
        "{}",
        r.dump()
    );
    assert_no_panic(&r);
}

#[test]
fn subreaper_reparents_and_reaps_orphaned_grandchildren() {
    let dir = TempDir::new("sub-orphans");
    let mut r = init().sh(ORPHAN_SCRIPT, &[dir.str(), "wait"]).spawn();
    let init_pid = r.pid();
    let what = "child script did not finish its checks";
    expect_file(&r, &dir.join("ready"), secs(20), what);
    // The script printed its report before writing `ready`; wait until our
    // reader thread has it too.
    assert!(
        wait_until(secs(5), || r
            .stdout
            .text()
            .lines()
            .any(|l| l.starts_with("LEFT "))),
        "no LEFT line\n{}",
        r.dump()
    );
    let out = r.stdout.text();
    let what = "modelarts-init (not a subreaper?)";
    for (pid, _) in assert_orphans_reaped_by(&r, &out, init_pid, what) {
        assert!(
            is_gone(pid),
            "orphan {} still present: {:?}",
            pid,
            stat(pid)
        );
    }
    let zombies = zombie_children_of(init_pid);
    assert!(
        zombies.is_empty(),
        "zombie children of modelarts-init: {:?}\n{}",
        zombies,
        r.dump()
    );
    release_waiting_script(&mut r, &dir);
    assert_no_panic(&r);
}

#[test]
fn subreaper_reaps_storm_of_1000_orphans() {
    let dir = TempDir::new("sub-storm");
    let mut r = init().sh(STORM_SCRIPT, &[dir.str(), "wait"]).spawn();
    let init_pid = r.pid();
    expect_file(&r, &dir.join("storm"), secs(60), "storm did not finish");
    let mut zombies = Vec::new();
    let clean = wait_until(secs(10), || {
        zombies = zombie_children_of(init_pid);
        zombies.is_empty()
    });
    assert!(
        clean,
        "{} zombie children of modelarts-init left 10 s after the storm, e.g. {:?}\n{}",
        zombies.len(),
        zombies.iter().take(5).collect::<Vec<_>>(),
        r.dump()
    );
    release_waiting_script(&mut r, &dir);
    assert_no_panic(&r);
}

// ===========================================================================
// Signal forwarding
// ===========================================================================

/// Every signal modelarts-init passes on as it comes (its signal table):
/// the standard ones and the real-time range, by number.
fn forwarded_signals() -> Vec<i32> {
    use libc::*;
    let standard = [
        SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGTTIN, SIGTTOU, SIGCONT, SIGALRM, SIGPWR,
        SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGIO, SIGSTKFLT, SIGURG,
    ];
    standard
        .into_iter()
        .chain(SIGRTMIN()..=SIGRTMAX())
        .collect()
}

/// A child that records each signal number of `$2...` it gets in `$1/sigs`.
const TRAP_NUMBERS: &str = r#"
d=$1; shift
for n in "$@"; do trap "echo $n >> \"$d/sigs\"" $n; done
echo ready > "$d/ready"
while :; do sleep 0.05; done
"#;

/// Sends signal number `n` (real-time ones included) to `pid`.
fn send_raw(pid: i32, n: i32) {
    // SAFETY: kill(2) with plain integers.
    let rc = unsafe { libc::kill(pid, n) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {n}): {}",
        std::io::Error::last_os_error()
    );
}

/// Runs `init` on a child that traps every forwarded signal; sends each one
/// to modelarts-init (the spawned process, or its child when `pid1`: the
/// spawned one is unshare) and asserts that the child got it and that
/// modelarts-init is still running.
fn assert_every_signal_reaches_the_child(init: Init, tag: &str, pid1: bool) {
    let dir = TempDir::new(tag);
    let sigs = forwarded_signals();
    let numbers: Vec<String> = sigs.iter().map(|n| n.to_string()).collect();
    let mut args = vec![dir.str()];
    args.extend(numbers.iter().map(String::as_str));
    let mut r = init.sh(TRAP_NUMBERS, &args).spawn();
    let init_pid = if pid1 {
        wait_for_child(r.pid(), secs(5))
            .unwrap_or_else(|| panic!("unshare has no child\n{}", r.dump()))
    } else {
        r.pid()
    };
    wait_ready(&r, &dir);
    let mut missing = Vec::new();
    for (n, name) in sigs.iter().zip(&numbers) {
        send_raw(init_pid, *n);
        if !wait_for_line(&dir.join("sigs"), name, secs(5)) {
            missing.push(*n);
        }
        assert!(
            is_alive(init_pid) && r.try_status().is_none(),
            "signal {n} ended modelarts-init\n{}",
            r.dump()
        );
    }
    assert!(
        missing.is_empty(),
        "signals not forwarded to the child: {missing:?}; child saw:\n{}\n{}",
        fs::read_to_string(dir.join("sigs")).unwrap_or_default(),
        r.dump()
    );
    // Clean stop: the child has the default SIGTERM disposition -> 128+15.
    send_raw(init_pid, libc::SIGTERM);
    assert_eq!(r.expect_code(secs(10)), 143, "{}", r.dump());
    assert_no_panic(&r);
}

#[test]
fn every_asynchronous_signal_reaches_the_child_and_we_survive() {
    assert_every_signal_reaches_the_child(init_timed("100ms", "5s"), "fwd", false);
}

#[test]
fn every_asynchronous_signal_reaches_the_child_of_pid1() {
    if !unshare_or_skip(
        "every_asynchronous_signal_reaches_the_child_of_pid1",
        "`unshare --pid --fork --mount-proc` refused here",
    ) {
        return;
    }
    let init = init_pid1().args(["--drain-delay", "100ms", "--stop-timeout", "5s"]);
    assert_every_signal_reaches_the_child(init, "fwd-pid1", true);
}

#[test]
fn stop_signal_quit_reaches_the_child_at_the_end_of_the_drain() {
    let dir = TempDir::new("stopsig");
    let script = format!(
        r#"trap 'date +%s.%N > "$1/quit_at"; echo QUIT >> "$1/log"; exit 3' QUIT
trap 'echo TERM >> "$1/log"' TERM
echo ready > "$1/ready"
{IDLE_LOOP}"#
    );
    let init = init_timed("1s", "5s").args(["--stop-signal", "QUIT"]);
    let mut r = spawn_ready(init, &script, &dir);
    let (t0, code) = signal_and_exit(&mut r, Signal::SIGTERM, secs(10));
    assert_eq!(code, 3, "the child exits from its QUIT trap\n{}", r.dump());
    let delay = read_epoch(&dir.join("quit_at")) - t0;
    assert!(
        (0.995..5.0).contains(&delay),
        "QUIT came {delay:.3} s after our SIGTERM, expected the 1 s drain delay\n{}",
        r.dump()
    );
    assert_eq!(fs::read_to_string(dir.join("log")).unwrap(), "QUIT\n");
    assert_no_panic(&r);
}

#[test]
fn tstp_stops_the_job_for_the_shell_and_cont_resumes_it() {
    let dir = TempDir::new("tstp");
    // bash with job control (set -m) runs modelarts-init as a job, as an
    // interactive shell does; `jobs -l` is what the user would see.
    let script = r#"
set -m
d=$1
"$2" --no-proxy --drain-delay 100ms -- sh -c '
  trap "echo TSTP >> $0/sigs" TSTP
  trap "echo CONT >> $0/sigs" CONT
  echo ready > $0/ready
  while :; do sleep 0.05; done' "$d" &
pid=$!
for i in $(seq 200); do [ -e "$d/ready" ] && break; sleep 0.05; done
kill -TSTP $pid
for i in $(seq 200); do case "$(jobs -l)" in *Stopped*) break;; esac; sleep 0.05; done
echo "after TSTP: $(jobs -l)"
read -r _ _ state _ < /proc/$pid/stat; echo "state after TSTP: $state"
for i in $(seq 200); do grep -q TSTP "$d/sigs" 2>/dev/null && break; sleep 0.05; done
kill -CONT $pid
for i in $(seq 200); do case "$(jobs -l)" in *Running*) break;; esac; sleep 0.05; done
echo "after CONT: $(jobs -l)"
read -r _ _ state _ < /proc/$pid/stat; echo "state after CONT: $state"
kill -TERM $pid
wait $pid
echo "exit $?"
"#;
    let mut cmd = scrubbed_command("bash");
    cmd.args(["-c", script, "bash", dir.str(), bin()]);
    let mut r = Running::spawn(cmd);
    r.finish(secs(30));
    let out = r.stdout.text();
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line\n{}", r.dump()))
            .to_owned()
    };
    assert!(line("after TSTP:").contains("Stopped"), "{}", r.dump());
    assert_eq!(line("state after TSTP:"), "state after TSTP: T");
    assert!(line("after CONT:").contains("Running"), "{}", r.dump());
    assert_ne!(line("state after CONT:"), "state after CONT: T");
    assert_eq!(line("exit "), "exit 143", "{}", r.dump());
    assert_eq!(
        fs::read_to_string(dir.join("sigs")).unwrap_or_default(),
        "TSTP\nCONT\n",
        "the child hears TSTP, then CONT\n{}",
        r.dump()
    );
    assert_no_panic(&r);
}

/// Child traps USR1 (writes `$1/child_sigs`) and starts a grandchild in its
/// process group that traps USR1 (writes `$1/gc_sigs`).
const GROUP_SCRIPT: &str = r#"
echo $$ > "$1/child.pid"
trap 'echo USR1 >> "$1/child_sigs"' USR1
sh -c 'trap "echo USR1 >> \"$1/gc_sigs\"" USR1; echo $$ > "$1/gc.pid"; while :; do sleep 0.05; done' gc "$1" &
while [ ! -s "$1/gc.pid" ]; do sleep 0.02; done
echo ready > "$1/ready"
while :; do sleep 0.05; done
"#;

/// Runs `init` on [`GROUP_SCRIPT`] in a `tag` temp dir: USR1 must reach the
/// child, and the grandchild exactly when `expect_grandchild`; then a clean stop.
fn run_group_case(tag: &str, init: Init, expect_grandchild: bool) {
    let dir = TempDir::new(tag);
    let mut r = spawn_ready(init, GROUP_SCRIPT, &dir);
    let r = &mut r;
    let child = read_pid_file(&dir.join("child.pid"), secs(5));
    let gc = read_pid_file(&dir.join("gc.pid"), secs(5));
    r.track_pid(gc);
    let (cs, gs) = (stat(child).unwrap(), stat(gc).unwrap());
    assert_eq!(
        cs.pgrp, child,
        "child is not a process-group leader: {:?}",
        cs
    );
    assert_eq!(
        gs.pgrp, child,
        "grandchild not in the child's process group: {:?}",
        gs
    );

    r.signal(Signal::SIGUSR1);
    assert!(
        wait_for_line(&dir.join("child_sigs"), "USR1", secs(5)),
        "child did not get USR1\n{}",
        r.dump()
    );
    if expect_grandchild {
        assert!(
            wait_for_line(&dir.join("gc_sigs"), "USR1", secs(5)),
            "grandchild did not get USR1 with --signal-group\n{}",
            r.dump()
        );
    } else {
        // Negative check: give a wrong group-wide delivery ample time to show.
        thread::sleep(Duration::from_millis(500));
        assert!(
            !dir.join("gc_sigs").exists(),
            "grandchild got USR1 without --signal-group\n{}",
            r.dump()
        );
    }
    r.signal(Signal::SIGTERM);
    assert_eq!(r.expect_code(secs(10)), 143, "{}", r.dump());
    assert!(
        wait_until(secs(3), || is_gone(gc)),
        "grandchild left behind: {:?}",
        stat(gc)
    );
    assert_no_panic(r);
}

#[test]
fn signal_group_flag_reaches_grandchild() {
    let init = init().args([
        "--signal-group",
        "--drain-delay",
        "100ms",
        "--stop-timeout",
        "5s",
    ]);
    run_group_case("sg-flag", init, true);
}

#[test]
fn signal_group_env_reaches_grandchild() {
    let init = init().env("MODELARTS_INIT_SIGNAL_GROUP", "true").args([
        "--drain-delay",
        "100ms",
        "--stop-timeout",
        "5s",
    ]);
    run_group_case("sg-env", init, true);
}

#[test]
fn without_signal_group_grandchild_is_not_signalled() {
    run_group_case("sg-none", init_timed("100ms", "5s"), false);
}

// ===========================================================================
// Exit statuses and argument errors
// ===========================================================================

#[test]
fn exit_codes_0_to_255_pass_through() {
    let start = Instant::now();
    let codes: Vec<u32> = (0..=255).collect();
    // 4 workers: the spawn cost dominates; keeps the test well under 15 s.
    let failures: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = codes
            .chunks(64)
            .map(|chunk| {
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for &c in chunk {
                        let mut r = init().sh("exit $1", &[&c.to_string()]).run(secs(20));
                        let got = exit_code(&mut r);
                        if got != Some(c as i32) {
                            bad.push(format!("exit {} -> {:?}\n{}", c, r.status(), r.dump()));
                        }
                        if r.stderr.text().contains("panicked") {
                            bad.push(format!("exit {}: panic\n{}", c, r.dump()));
                        }
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    eprintln!("256 exit codes checked in {:?}", start.elapsed());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn signal_deaths_map_to_128_plus_n() {
    let dir = TempDir::new("sigdeath");
    for (name, n) in [
        ("HUP", 1),
        ("INT", 2),
        ("ABRT", 6),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("TERM", 15),
    ] {
        let script = format!("ulimit -c 0; kill -{} $$; sleep 5; exit 99", name);
        let mut r = init()
            .current_dir(dir.path())
            .sh(&script, &[])
            .run(secs(20));
        let code = exit_code(&mut r);
        assert_eq!(
            code,
            Some(128 + n),
            "child killed by SIG{}\n{}",
            name,
            r.dump()
        );
        assert_no_panic(&r);
    }
}

#[test]
fn command_not_found_is_127() {
    for argv in [["no-such-command-modelarts-it"], ["/nonexistent/dir/cmd"]] {
        let mut r = init().command(argv).run(secs(10));
        let code = exit_code(&mut r);
        assert_eq!(code, Some(127), "{:?}\n{}", argv, r.dump());
        assert_no_panic(&r);
    }
}

#[test]
fn not_executable_is_126() {
    let dir = TempDir::new("noexec");
    let script = dir.join("script.sh");
    fs::write(&script, "#!/bin/sh\necho SHOULD-NOT-RUN\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    for path in [script.to_str().unwrap(), dir.str()] {
        let mut r = init().command([path]).run(secs(10));
        let code = exit_code(&mut r);
        assert_eq!(code, Some(126), "{} (not executable)\n{}", path, r.dump());
        assert!(!r.stdout.has_line("SHOULD-NOT-RUN"), "{}", r.dump());
        assert_no_panic(&r);
    }
}

fn assert_usage_error(r: &Running, what: &str) {
    let code = r.status().and_then(|s| s.code());
    let err = r.stderr.text();
    assert_eq!(code, Some(2), "{}: expected exit 2\n{}", what, r.dump());
    assert!(!err.contains("panicked"), "{}: panic\n{}", what, r.dump());
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{}: expected a one-line message on stderr, got {} lines\n{}",
        what,
        lines.len(),
        r.dump()
    );
    assert!(
        !r.stdout.has_line("SHOULD-NOT-RUN"),
        "{}: the child ran\n{}",
        what,
        r.dump()
    );
}

#[test]
fn bad_flags_exit_2_with_one_line_message() {
    let child = ["sh", "-c", "echo SHOULD-NOT-RUN"];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("unknown flag", vec!["--no-proxy", "--bogus-flag"]),
        ("bad duration", vec!["--no-proxy", "--drain-delay", "abc"]),
        (
            "bad duration unit",
            vec!["--no-proxy", "--stop-timeout", "5x"],
        ),
        ("bad log format", vec!["--no-proxy", "--log-format", "xml"]),
        (
            "unknown user",
            vec!["--no-proxy", "--user", "no_such_user_modelarts_it"],
        ),
        (
            "unknown group",
            vec!["--no-proxy", "--user", "0:no_such_group_modelarts_it"],
        ),
        ("no proxy threads", vec!["--proxy-threads", "0"]),
        (
            "unknown stop signal",
            vec!["--no-proxy", "--stop-signal", "NOPE"],
        ),
        (
            "uncatchable stop signal",
            vec!["--no-proxy", "--stop-signal", "KILL"],
        ),
        (
            "a stop signal past the real-time ones",
            vec!["--no-proxy", "--stop-signal", "RTMIN+2147483647"],
        ),
        (
            "a delay past a year",
            vec!["--no-proxy", "--drain-delay", "9999999999999999999"],
        ),
        ("no keep-alive timer", vec!["--keep-alive", "0"]),
        (
            "a request timeout under 100 ms",
            vec!["--request-timeout", "5ms"],
        ),
        ("no stream idle timer", vec!["--stream-idle-timeout", "0"]),
        (
            "too many connections",
            vec!["--max-connections", "99999999999"],
        ),
        (
            "a health path with a query",
            vec!["--health-path", "/health?x=1"],
        ),
        (
            "a health path with a space",
            vec!["--health-path", "/he alth"],
        ),
        (
            "a front flag in pure init",
            vec!["--no-proxy", "--listen", "0.0.0.0:9000"],
        ),
        (
            "a proxy flag in pure init",
            vec!["--no-proxy", "--upstream-health", "tcp"],
        ),
        (
            "the quiet drain in pure init",
            vec!["--no-proxy", "--drain-quiet-period", "3s"],
        ),
    ];
    for (what, flags) in cases {
        let mut r = Init::new().args(&flags).command(child).run(secs(10));
        r.try_status();
        assert_usage_error(&r, &format!("{} ({:?})", what, flags));
    }
    for (what, argv) in [
        ("no command", vec!["--no-proxy"]),
        ("no command after --", vec!["--no-proxy", "--"]),
    ] {
        let mut r = Init::new().args(&argv).run(secs(10));
        r.try_status();
        assert_usage_error(&r, what);
    }
}

#[test]
fn bad_env_values_exit_2_with_one_line_message() {
    let child = ["sh", "-c", "echo SHOULD-NOT-RUN"];
    for (k, v) in [
        ("MODELARTS_INIT_DRAIN_DELAY", "abc"),
        ("MODELARTS_INIT_STOP_TIMEOUT", "5x"),
        ("MODELARTS_INIT_LOG_FORMAT", "xml"),
    ] {
        let mut r = init().env(k, v).command(child).run(secs(10));
        r.try_status();
        assert_usage_error(&r, &format!("{}={}", k, v));
    }
}

#[test]
fn duration_forms_are_accepted() {
    for d in ["60", "60s", "500ms", "2m"] {
        for flag in ["--drain-delay", "--stop-timeout"] {
            let mut r = init().args([flag, d]).sh("exit 3", &[]).run(secs(10));
            let code = exit_code(&mut r);
            assert_eq!(code, Some(3), "{} {} rejected?\n{}", flag, d, r.dump());
            assert_no_panic(&r);
        }
    }
}

#[test]
fn env_vars_set_drain_delay_and_stop_timeout() {
    let dir = TempDir::new("env-timeline");
    let script =
        format!(r#"trap 'date +%s.%N >> "$1/term_at"' TERM; echo ready > "$1/ready"; {IDLE_LOOP}"#);
    let mut r = spawn_ready(
        init()
            .env("MODELARTS_INIT_DRAIN_DELAY", "1s")
            .env("MODELARTS_INIT_STOP_TIMEOUT", "1s"),
        &script,
        &dir,
    );
    let (t0, code) = signal_and_exit(&mut r, Signal::SIGTERM, secs(10));
    let t_exit = epoch_now();
    assert_eq!(
        code,
        137,
        "child ignoring SIGTERM should be SIGKILLed\n{}",
        r.dump()
    );
    assert_child_got(
        &r,
        &dir,
        Signal::SIGTERM,
        t0,
        0.995..5.0,
        "ours (MODELARTS_INIT_DRAIN_DELAY=1s)",
    );
    assert!(
        t_exit - t0 >= 1.9,
        "exited {:.3} s after SIGTERM; expected drain 1 s + stop timeout 1 s",
        t_exit - t0
    );
    assert_no_panic(&r);
}

// ===========================================================================
// The SIGTERM timeline
// ===========================================================================

/// Child that records when it gets SIGTERM (and SIGINT) and exits 7 (5 on
/// INT).
fn recording_child() -> String {
    format!(
        r#"trap 'date +%s.%N > "$1/term_at"; echo TERM >> "$1/log"; exit 7' TERM
trap 'date +%s.%N > "$1/int_at"; echo INT >> "$1/log"; exit 5' INT
echo ready > "$1/ready"
{IDLE_LOOP}"#
    )
}

#[test]
fn sigterm_waits_drain_delay_before_signalling_child() {
    let dir = TempDir::new("drain");
    let mut r = spawn_ready(init_timed("1s", "1s"), &recording_child(), &dir);
    let (t0, code) = signal_and_exit(&mut r, Signal::SIGTERM, secs(10));
    let after = "ours (>= 1 s: the drain delay)";
    assert_trap_exit(&r, &dir, code, Signal::SIGTERM, t0, 0.995..5.0, after);
    assert_no_panic(&r);
}

#[test]
fn stop_timeout_sigkills_child_grandchild_and_setsid_escapees() {
    let dir = TempDir::new("stop");
    // Child ignores (only records) SIGTERM; starts a grandchild in its group,
    // one that called setsid, and one that called setsid and was orphaned
    // (re-parented to modelarts-init).
    let script = format!(
        r#"
trap 'date +%s.%N > "$1/term_at"' TERM
sh -c 'echo $$ > "$1/gc.pid"; exec sleep 1000' gc "$1" &
setsid sh -c 'echo $$ > "$1/sid.pid"; exec sleep 1000' sid "$1" &
( setsid sh -c 'echo $$ > "$1/sid2.pid"; exec sleep 1000' sid2 "$1" & )
while [ ! -s "$1/gc.pid" ] || [ ! -s "$1/sid.pid" ] || [ ! -s "$1/sid2.pid" ]; do sleep 0.02; done
echo ready > "$1/ready"
{IDLE_LOOP}
"#
    );
    let mut r = spawn_ready(init_timed("1s", "1s"), &script, &dir);
    let pids: Vec<(&str, i32)> = ["gc", "sid", "sid2"]
        .iter()
        .map(|n| (*n, read_pid_file(&dir.join(&format!("{}.pid", n)), secs(5))))
        .collect();
    for &(_, p) in &pids {
        r.track_pid(p);
    }
    let (_, sid) = pids[1];
    let (_, sid2) = pids[2];
    assert_ne!(
        stat(sid).unwrap().session,
        stat(r.pid()).unwrap().session,
        "setsid did not take effect"
    );
    assert!(
        wait_until(secs(5), || stat(sid2).map(|s| s.ppid) == Some(r.pid())),
        "orphaned setsid process not re-parented to modelarts-init: {:?}",
        stat(sid2)
    );

    let (t0, code) = signal_and_exit(&mut r, Signal::SIGTERM, secs(15));
    let t_exit = epoch_now();
    assert_eq!(
        code,
        137,
        "child that ignores SIGTERM must end by SIGKILL (128+9)\n{}",
        r.dump()
    );
    assert_child_got(&r, &dir, Signal::SIGTERM, t0, 0.995..5.0, "ours");
    assert!(
        t_exit - t0 >= 1.9 && t_exit - t0 < 10.0,
        "exit {:.3} s after SIGTERM; expected about drain 1 s + stop timeout 1 s",
        t_exit - t0
    );
    for (name, pid) in pids {
        assert!(
            wait_until(secs(3), || is_gone(pid)),
            "{} (pid {}) survived or is a zombie after modelarts-init exited: {:?}\n{}",
            name,
            pid,
            stat(pid),
            r.dump()
        );
    }
    assert_no_panic(&r);
}

#[test]
fn second_sigterm_skips_drain_delay() {
    let dir = TempDir::new("term2");
    let mut r = spawn_ready(init_timed("30s", "5s"), &recording_child(), &dir);
    signal_and_settle(&r, Signal::SIGTERM);
    assert!(
        !dir.join("log").exists(),
        "child signalled before the drain delay ended\n{}",
        r.dump()
    );
    let (t1, code) = signal_and_exit(&mut r, Signal::SIGTERM, secs(10));
    let after = "the second SIGTERM";
    assert_trap_exit(&r, &dir, code, Signal::SIGTERM, t1, ..5.0, after);
    assert_no_panic(&r);
}

#[test]
fn sigint_is_a_fast_stop_and_child_sees_int() {
    let dir = TempDir::new("int");
    let mut r = spawn_ready(init_timed("30s", "5s"), &recording_child(), &dir);
    let (t0, code) = signal_and_exit(&mut r, Signal::SIGINT, secs(10));
    assert_trap_exit(&r, &dir, code, Signal::SIGINT, t0, ..5.0, "ours");
    assert_no_panic(&r);
}

#[test]
fn sigint_during_drain_delay_skips_the_rest() {
    let dir = TempDir::new("term-int");
    let mut r = spawn_ready(init_timed("30s", "5s"), &recording_child(), &dir);
    signal_and_settle(&r, Signal::SIGTERM);
    let (t1, code) = signal_and_exit(&mut r, Signal::SIGINT, secs(10));
    // The child gets SIGINT at once (the rest of the drain delay is skipped).
    let after = "ours, at once";
    assert_trap_exit(&r, &dir, code, Signal::SIGINT, t1, ..5.0, after);
    assert_no_panic(&r);
}

#[test]
fn sigint_fast_stop_still_applies_stop_timeout() {
    let dir = TempDir::new("int-kill");
    let script =
        format!(r#"trap 'date +%s.%N > "$1/int_at"' INT; echo ready > "$1/ready"; {IDLE_LOOP}"#);
    let mut r = spawn_ready(init_timed("30s", "1s"), &script, &dir);
    let (t0, code) = signal_and_exit(&mut r, Signal::SIGINT, secs(15));
    let t_exit = epoch_now();
    assert_eq!(
        code,
        137,
        "child ignoring SIGINT must be SIGKILLed after the stop timeout\n{}",
        r.dump()
    );
    assert_child_got(&r, &dir, Signal::SIGINT, t0, ..5.0, "ours");
    // SIGKILL is due 1 s after the child's SIGINT; the child's trap may run a
    // little after the signal, so bound from our SIGINT instead.
    assert!(
        t_exit - t0 >= 0.95 && t_exit - t0 < 10.0,
        "exit {:.3} s after our SIGINT; expected about the 1 s stop timeout (not the 30 s drain delay)\n{}",
        t_exit - t0,
        r.dump()
    );
    assert_no_panic(&r);
}

#[test]
fn child_exiting_during_drain_delay_ends_init_at_once() {
    let dir = TempDir::new("exit-in-drain");
    // The child gets no signal during the delay, so it exits on its own once
    // the test creates $1/go (after the SIGTERM to modelarts-init).
    let script = r#"
trap 'echo TERM >> "$1/log"' TERM
echo ready > "$1/ready"
while [ ! -e "$1/go" ]; do sleep 0.02; done
exit 3
"#;
    let mut r = spawn_ready(init_timed("30s", "5s"), script, &dir);
    signal_and_settle(&r, Signal::SIGTERM);
    let (code, took) = release_child(&mut r, &dir);
    assert_eq!(code, 3, "child's status\n{}", r.dump());
    assert!(
        took < secs(5),
        "modelarts-init took {:?} to exit after the child did",
        took
    );
    assert!(
        !dir.join("log").exists(),
        "child got SIGTERM during the drain delay\n{}",
        r.dump()
    );
    assert_no_panic(&r);
}

#[test]
fn leftovers_get_sigterm_then_sigkill_and_are_reaped_before_we_exit() {
    let dir = TempDir::new("leftover");
    // The child leaves two workers: one that stops on SIGTERM (after
    // recording it) and one that ignores it; then it exits on its own.
    let script = r#"
sh -c 'trap "date +%s.%N > \"$1/polite_term\"; exit 0" TERM; echo $$ > "$1/polite.pid"; while :; do sleep 0.05; done' polite "$1" &
sh -c 'trap "" TERM; echo $$ > "$1/stubborn.pid"; exec sleep 1000' stubborn "$1" &
while [ ! -s "$1/polite.pid" ] || [ ! -s "$1/stubborn.pid" ]; do sleep 0.02; done
echo ready > "$1/ready"
while [ ! -e "$1/go" ]; do sleep 0.02; done
exit 4
"#;
    // As a child subreaper, the wrapper inherits whatever modelarts-init
    // leaves: zombies it did not reap included.
    let mut cmd = scrubbed_command("python3");
    cmd.arg(repo().join("tests/py/subreaper.py"))
        .arg(bin())
        .args(["--no-proxy", "--leftover-grace", "1s", "--"])
        .args(["sh", "-c", script, "sh", dir.str()]);
    let mut r = Running::spawn(cmd);
    wait_ready(&r, &dir);
    let polite = read_pid_file(&dir.join("polite.pid"), secs(5));
    let stubborn = read_pid_file(&dir.join("stubborn.pid"), secs(5));
    r.track_pid(polite);
    r.track_pid(stubborn);
    let go = epoch_now();
    fs::write(dir.join("go"), "").unwrap();
    r.finish(secs(15));
    let out = r.stdout.text();
    assert!(out.contains("EXIT 4\n"), "the child's status\n{}", r.dump());
    assert!(
        out.contains("LEFT 0 \n"),
        "modelarts-init left processes or zombies to its parent\n{}",
        r.dump()
    );
    let term_after = read_epoch(&dir.join("polite_term")) - go;
    assert!(
        term_after < 1.0,
        "the polite worker got SIGTERM {term_after:.3} s after the child's exit\n{}",
        r.dump()
    );
    for (name, pid) in [("polite", polite), ("stubborn", stubborn)] {
        assert!(
            is_gone(pid),
            "{name} worker {pid} survived: {:?}",
            stat(pid)
        );
    }
    // The stubborn one got its SIGKILL after the 1 s grace, logged with
    // counts.
    let sigkill = out
        .lines()
        .find(|l| l.contains("signal to the processes left below us") && l.contains("SIGKILL"))
        .unwrap_or_else(|| panic!("no SIGKILL step logged\n{}", r.dump()));
    assert!(sigkill.contains("count=1"), "{sigkill}");
    let sigterm = out
        .lines()
        .find(|l| l.contains("signal to the processes left below us") && l.contains("SIGTERM"))
        .unwrap_or_else(|| panic!("no SIGTERM step logged\n{}", r.dump()));
    // The two workers, and the polite one's `sleep` if it was running.
    let count = sigterm
        .split("count=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(matches!(count, Some(2 | 3)), "{sigterm}");
    assert_no_panic(&r);
}

#[test]
fn child_exit_kills_lingering_process_group() {
    let dir = TempDir::new("linger");
    let script = r#"
sh -c 'echo $$ > "$1/gc.pid"; exec sleep 1000' gc "$1" >/dev/null 2>&1 &
while [ ! -s "$1/gc.pid" ]; do sleep 0.02; done
echo ready > "$1/ready"
while [ ! -e "$1/go" ]; do sleep 0.02; done
exit 4
"#;
    let mut r = spawn_ready(init(), script, &dir);
    let gc = read_pid_file(&dir.join("gc.pid"), secs(5));
    r.track_pid(gc);
    let (code, took) = release_child(&mut r, &dir);
    assert_eq!(code, 4, "{}", r.dump());
    assert!(took < secs(5), "took {:?} to exit after the child", took);
    assert!(
        wait_until(secs(3), || is_gone(gc)),
        "grandchild in the child's process group survived: {:?}\n{}",
        stat(gc),
        r.dump()
    );
    assert_no_panic(&r);
}

// ===========================================================================
// Output
// ===========================================================================

#[test]
fn ten_megabytes_of_child_stdout_arrive_whole() {
    // 0x01 bytes never occur in log lines, so counting them is exact even if
    // a log line lands between two of the child's writes.
    const N: usize = 10_000_000;
    let mut r = init()
        .sh(
            &format!("head -c {N} /dev/zero | tr '\\000' '\\001'; exit 0"),
            &[],
        )
        .spawn();
    assert_eq!(r.expect_code(secs(30)), 0, "{}", r.dump());
    assert!(r.stdout.wait_eof(secs(10)), "stdout not closed after exit");
    let out = r.stdout.bytes();
    let count = out.iter().filter(|&&b| b == 1).count();
    assert_eq!(
        count,
        N,
        "child bytes on our stdout (total {} bytes)",
        out.len()
    );
    assert_no_panic(&r);
}

const OUT_ERR: &str = "echo OUT-LINE-MARK; echo ERR-LINE-MARK >&2; exit 0";

#[test]
fn child_stderr_is_merged_into_stdout_by_default() {
    let mut r = init().sh(OUT_ERR, &[]).run(secs(10));
    assert_eq!(exit_code(&mut r), Some(0), "{}", r.dump());
    let out = r.stdout.text();
    assert!(out.lines().any(|l| l == "OUT-LINE-MARK"), "{}", r.dump());
    assert!(
        out.lines().any(|l| l == "ERR-LINE-MARK"),
        "child stderr not on stdout\n{}",
        r.dump()
    );
    assert!(
        !r.stderr.has_line("ERR-LINE-MARK"),
        "child stderr also on stderr\n{}",
        r.dump()
    );
    assert_no_panic(&r);
}

fn assert_kept_stderr(r: &mut Running) {
    assert_eq!(exit_code(r), Some(0), "{}", r.dump());
    let out = r.stdout.text();
    assert!(out.lines().any(|l| l == "OUT-LINE-MARK"), "{}", r.dump());
    assert!(
        !r.stdout.has_line("ERR-LINE-MARK"),
        "child stderr on stdout despite --keep-stderr\n{}",
        r.dump()
    );
    assert!(
        r.stderr.text().lines().any(|l| l == "ERR-LINE-MARK"),
        "child stderr missing from stderr\n{}",
        r.dump()
    );
    assert_no_panic(r);
}

#[test]
fn keep_stderr_keeps_child_stderr_separate() {
    let mut r = init().arg("--keep-stderr").sh(OUT_ERR, &[]).run(secs(10));
    assert_kept_stderr(&mut r);
}

#[test]
fn keep_stderr_env_var() {
    let mut r = init()
        .env("MODELARTS_INIT_KEEP_STDERR", "true")
        .sh(OUT_ERR, &[])
        .run(secs(10));
    assert_kept_stderr(&mut r);
}

// ===========================================================================
// --user
// ===========================================================================

const ID_SCRIPT: &str = r#"echo "IDS uid=$(id -u) gid=$(id -g) groups=$(id -G | tr ' ' ',')""#;

/// Runs `id` as the child with `--user spec`; returns (uid, gid, groups).
fn ids_as(spec: &str, dir: &TempDir) -> (u32, u32, Vec<u32>) {
    let mut r = init()
        .args(["--user", spec])
        .current_dir(dir.path())
        .sh(ID_SCRIPT, &[])
        .run(secs(10));
    assert_eq!(exit_code(&mut r), Some(0), "--user {}\n{}", spec, r.dump());
    assert_no_panic(&r);
    let out = r.stdout.text();
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("IDS "))
        .unwrap_or_else(|| panic!("no id output\n{}", r.dump()))
        .to_string();
    let get = |k: &str| -> String {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {} in {:?}", k, line))
            .to_string()
    };
    let uid = get("uid=").parse().unwrap();
    let gid = get("gid=").parse().unwrap();
    let groups = get("groups=")
        .split(',')
        .map(|g| g.parse().unwrap())
        .collect();
    (uid, gid, groups)
}

#[test]
fn user_numeric_uid_gid_drops_supplementary_groups() {
    if !is_root() {
        skip(
            "user_numeric_uid_gid_drops_supplementary_groups",
            "needs root",
        );
        return;
    }
    let dir = TempDir::new("user-num");
    let (uid, gid, groups) = ids_as("1000:100", &dir);
    assert_eq!((uid, gid), (1000, 100));
    assert_eq!(
        groups,
        vec![100],
        "supplementary groups must be just the gid"
    );
}

#[test]
fn user_by_name() {
    if !is_root() {
        skip("user_by_name", "needs root");
        return;
    }
    let Some((nuid, ngid)) = passwd_entry("nobody") else {
        skip("user_by_name", "no user `nobody` in /etc/passwd");
        return;
    };
    let dir = TempDir::new("user-name");
    let (uid, gid, groups) = ids_as("nobody", &dir);
    assert_eq!(
        (uid, gid),
        (nuid, ngid),
        "--user nobody: uid and primary gid from /etc/passwd"
    );
    assert!(
        !groups.contains(&0),
        "root's group 0 leaked into the child's groups: {:?}",
        groups
    );
}

#[test]
fn user_and_group_by_name() {
    if !is_root() {
        skip("user_and_group_by_name", "needs root");
        return;
    }
    let (Some((nuid, _)), Some(users)) = (passwd_entry("nobody"), group_entry("users")) else {
        skip(
            "user_and_group_by_name",
            "no user `nobody` or group `users`",
        );
        return;
    };
    let dir = TempDir::new("user-grp");
    let (uid, gid, groups) = ids_as("nobody:users", &dir);
    assert_eq!((uid, gid), (nuid, users));
    assert!(
        !groups.contains(&0),
        "root's group 0 leaked into the child's groups: {:?}",
        groups
    );
}

// ===========================================================================
// The child's signal state and process group
// ===========================================================================

/// Signal numbers set in a /proc status mask (bit n-1 = signal n).
fn sig_list(mask: u64) -> Vec<u32> {
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| b + 1)
        .collect()
}

fn masks(text: &str) -> (u64, u64) {
    (
        status_mask(text, "SigBlk").expect("SigBlk line"),
        status_mask(text, "SigIgn").expect("SigIgn line"),
    )
}

#[test]
fn child_has_default_dispositions_when_init_inherited_ignored_signals() {
    // Control: the shell trick really makes the exec'd program ignore them.
    let mut ctl = Running::spawn({
        let mut c = scrubbed_command("sh");
        c.args([
            "-c",
            r#"trap "" HUP USR1 INT QUIT; exec cat /proc/self/status"#,
        ]);
        c
    });
    ctl.expect_exit(secs(10));
    ctl.stdout.wait_eof(secs(5));
    let (_, ign) = masks(&ctl.stdout.text());
    assert_ne!(ign, 0, "control run: SigIgn should be non-zero");

    let mut r = Running::spawn({
        let mut c = scrubbed_command("sh");
        c.args([
            "-c",
            r#"trap "" HUP USR1 INT QUIT; exec "$0" --no-proxy -- cat /proc/self/status"#,
            bin(),
        ]);
        c
    });
    assert_eq!(r.expect_code(secs(10)), 0, "{}", r.dump());
    r.stdout.wait_eof(secs(5));
    let (blk, ign) = masks(&r.stdout.text());
    assert_eq!(
        blk,
        0,
        "child's SigBlk must be empty; blocked: {:?}\n{}",
        sig_list(blk),
        r.dump()
    );
    assert_eq!(
        ign,
        0,
        "child's SigIgn must be empty; ignored: {:?} (control run without modelarts-init: {:?})\n{}",
        sig_list(ign),
        sig_list(masks(&ctl.stdout.text()).1),
        r.dump()
    );
    assert_no_panic(&r);
}

/// Run in the spawned process before exec: block some standard and
/// real-time signals and ignore others, including the highest one (SIGRTMAX).
fn block_and_ignore() -> std::io::Result<()> {
    use nix::libc;
    let mut set = SigSet::empty();
    set.add(Signal::SIGUSR2);
    set.add(Signal::SIGWINCH);
    set.add(Signal::SIGTERM);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    // SAFETY: sigemptyset/sigaddset/sigprocmask/signal only (async-signal-safe).
    unsafe {
        let mut rt: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut rt);
        libc::sigaddset(&mut rt, libc::SIGRTMIN() + 10);
        libc::sigaddset(&mut rt, libc::SIGRTMAX());
        if libc::sigprocmask(libc::SIG_BLOCK, &rt, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        nix::sys::signal::signal(Signal::SIGHUP, SigHandler::SigIgn)?;
        nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigIgn)?;
        for sig in [libc::SIGRTMIN() + 6, libc::SIGRTMAX()] {
            if libc::signal(sig, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

#[test]
fn child_has_empty_mask_when_init_inherited_blocked_signals() {
    // Control: pre_exec state survives exec.
    let mut c = scrubbed_command("cat");
    c.arg("/proc/self/status");
    cmd_pre_exec(&mut c, block_and_ignore);
    let mut ctl = Running::spawn(c);
    ctl.expect_exit(secs(10));
    ctl.stdout.wait_eof(secs(5));
    let (cblk, cign) = masks(&ctl.stdout.text());
    assert!(cblk != 0 && cign != 0, "control run: {:x} {:x}", cblk, cign);

    let mut i = init().command(["cat", "/proc/self/status"]);
    cmd_pre_exec(i.cmd_mut(), block_and_ignore);
    let mut r = i.spawn();
    assert_eq!(r.expect_code(secs(10)), 0, "{}", r.dump());
    r.stdout.wait_eof(secs(5));
    let (blk, ign) = masks(&r.stdout.text());
    assert_eq!(
        blk,
        0,
        "child's SigBlk must be empty; blocked: {:?} (control run without modelarts-init: {:?})\n{}",
        sig_list(blk),
        sig_list(cblk),
        r.dump()
    );
    assert_eq!(
        ign,
        0,
        "child's SigIgn must be empty; ignored: {:?} (control run without modelarts-init: {:?})\n{}",
        sig_list(ign),
        sig_list(cign),
        r.dump()
    );
    assert_no_panic(&r);
}

#[test]
fn child_runs_in_its_own_process_group() {
    let script =
        r#"read pid comm state ppid pgrp rest < /proc/self/stat; echo "PGRP $pid $ppid $pgrp""#;
    let mut r = init().sh(script, &[]).run(secs(10));
    assert_eq!(exit_code(&mut r), Some(0), "{}", r.dump());
    let out = r.stdout.text();
    let v: Vec<i32> = out
        .lines()
        .find_map(|l| l.strip_prefix("PGRP "))
        .unwrap_or_else(|| panic!("no PGRP line\n{}", r.dump()))
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let (pid, ppid, pgrp) = (v[0], v[1], v[2]);
    assert_eq!(
        ppid,
        r.pid(),
        "the child should be modelarts-init's own child"
    );
    assert_eq!(pgrp, pid, "pgid must equal the child's pid");
    assert_no_panic(&r);
}

// ===========================================================================
// --log-format json
// ===========================================================================

#[test]
fn log_level_selects_our_lines() {
    let r = init()
        .args(["--log-level", "warn"])
        .sh("echo child-line", &[])
        .run(secs(10));
    let out = r.stdout.text();
    assert!(out.contains("child-line"), "{}", r.dump());
    assert!(
        !out.contains(" INFO "),
        "info lines at --log-level warn\n{}",
        r.dump()
    );
    // RUST_LOG-style targets: debug for ours, and the env var works too.
    let r = init()
        .env(
            "MODELARTS_INIT_LOG_LEVEL",
            "warn,modelarts_init::timeline=info",
        )
        .sh("exit 0", &[])
        .run(secs(10));
    let out = r.stdout.text();
    assert!(
        out.contains("child exited"),
        "the timeline's info line\n{}",
        r.dump()
    );
    assert!(
        !out.contains("child started"),
        "the supervisor's info line\n{}",
        r.dump()
    );
}

#[test]
fn json_log_lines_parse_and_child_output_is_untouched() {
    let dir = TempDir::new("json");
    let child_lines = [
        "CHILD plain line",
        r#"{"child": "looks like JSON but is not ours""#,
        "CHILD stderr line",
        "CHILD got TERM",
    ];
    let script = format!(
        r#"
echo 'CHILD plain line'
echo '{{"child": "looks like JSON but is not ours"'
echo 'CHILD stderr line' >&2
trap 'echo "CHILD got TERM"; exit 3' TERM
echo ready > "$1/ready"
{IDLE_LOOP}
"#
    );
    let mut r = spawn_ready(
        init().args([
            "--log-format",
            "json",
            "--drain-delay",
            "200ms",
            "--stop-timeout",
            "5s",
        ]),
        &script,
        &dir,
    );
    r.signal(Signal::SIGTERM);
    assert_eq!(r.expect_code(secs(10)), 3, "{}", r.dump());
    assert!(r.stdout.wait_eof(secs(5)));
    let out = r.stdout.text();
    let mut json_lines = 0;
    for line in out.lines() {
        if line.is_empty() {
            continue;
        }
        if child_lines.contains(&line) {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => json_lines += 1,
            other => panic!(
                "stdout line is neither child output nor a JSON object: {:?} ({:?})\n{}",
                line,
                other.map(|_| "not an object").map_err(|e| e.to_string()),
                r.dump()
            ),
        }
    }
    for want in child_lines {
        let n = out.lines().filter(|l| *l == want).count();
        assert_eq!(
            n,
            1,
            "child line {:?} should appear once, untouched\n{}",
            want,
            r.dump()
        );
    }
    assert!(
        json_lines >= 1,
        "modelarts-init wrote no JSON log line to stdout\n{}",
        r.dump()
    );
    assert_no_panic(&r);
}
