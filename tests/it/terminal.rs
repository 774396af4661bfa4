//! `docker run -it`: with a terminal on stdin, the child's process group
//! becomes the terminal's foreground group (as tini does), so Ctrl-C and
//! keyboard input reach it. `script` gives us a real pseudo-terminal.

use std::process::Command;
use std::time::Duration;

use crate::util::{bin, scrubbed_command, skip, Running};

#[test]
fn child_gets_the_terminal_foreground() {
    if Command::new("script").arg("--version").output().is_err() {
        return skip(
            "child_gets_the_terminal_foreground",
            "`script` (util-linux) is not installed",
        );
    }
    let inner = format!("{} --no-proxy -- cat /proc/self/stat", bin());
    let mut cmd = scrubbed_command("script");
    cmd.args(["-qec", &inner, "/dev/null"]);
    let mut r = Running::spawn(cmd);
    assert_eq!(
        r.finish(Duration::from_secs(20)).code(),
        Some(0),
        "{}",
        r.dump()
    );
    let text = r.stdout.text();
    let line = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.contains("(cat)"))
        .unwrap_or_else(|| panic!("no /proc/self/stat line\n{}", r.dump()));
    // pid (comm) state ppid pgrp session tty_nr tpgid ...
    let pid: i64 = line.split(' ').next().unwrap().parse().unwrap();
    let after: Vec<i64> = line[line.rfind(')').unwrap() + 4..]
        .split(' ')
        .take(5)
        .map(|f| f.parse().unwrap())
        .collect();
    let (pgrp, tty_nr, tpgid) = (after[1], after[3], after[4]);
    assert_eq!(pgrp, pid, "the child leads its own process group\n{line}");
    assert_ne!(tty_nr, 0, "the child has the terminal\n{line}");
    assert_eq!(
        tpgid, pgrp,
        "the terminal's foreground group is the child's\n{line}"
    );
}
