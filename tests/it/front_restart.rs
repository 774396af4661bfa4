//! Restarts (`--restart`, `--restart-backoff`, `--max-restarts`): `/health`
//! and the status page across them, and the child's exit status once we
//! give up.

use nix::sys::signal::Signal;

use crate::front_util::*;
use crate::util::*;

/// A child that fails on its second run (exit 3) and otherwise serves HTTP
/// on $PORT with Python's http.server; `$1/count` counts its runs.
const FAILS_ON_SECOND_RUN: &str = r#"n=$(cat "$1/count" 2>/dev/null || echo 0)
echo $((n + 1)) > "$1/count"
if [ "$n" = 1 ]; then exit 3; fi
exec "$2" -m http.server "$PORT" --bind 127.0.0.1"#;

#[test]
fn restart_on_failure_brings_health_back() {
    let flags = [
        "--restart",
        "on-failure",
        "--restart-backoff",
        "200ms..400ms",
        "--status-path",
        "/status",
        "--drain-delay",
        "500ms",
    ];
    let (init, dir, listen, _) = init_on_free_ports("restart", &flags);
    let argv = ["sh", "-c", FAILS_ON_SECOND_RUN, "sh", dir.str(), &python()].map(String::from);
    let mut f = Front::spawn(init, dir, listen, &argv);
    f.wait_ready("/health");
    let first = f.get("/status").unwrap().json()["child_pid"]
        .as_i64()
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    // /health follows: 503 "restarting" while the child is down (the second
    // run fails too), then 200 once the third run serves; a proxied request
    // meanwhile gets 503 JSON, never a hang.
    let mut seen_restarting = false;
    let back = wait_until(secs(30), || match f.get("/health") {
        Ok(r) if r.status == 503 => {
            if r.json()["reason"] == "restarting" {
                seen_restarting = true;
                // The next run may already be starting by now.
                let proxied = f.get("/").unwrap();
                if proxied.status == 503 {
                    let code = proxied.json()["error"].clone();
                    assert!(code == "restarting" || code == "not_ready", "{proxied:?}");
                }
            }
            false
        }
        Ok(r) => r.status == 200 && seen_restarting,
        Err(_) => false,
    });
    assert!(
        back,
        "/health did not come back via 'restarting'\n{}",
        f.run.dump()
    );
    let status = f.get("/status").unwrap().json();
    assert_eq!(status["restarts"], 2, "{status}");
    assert_eq!(status["last_exit"], "exit code 3", "{status}");
    assert_ne!(status["child_pid"].as_i64(), Some(first));
    assert_eq!(f.get("/").unwrap().status, 200, "the third run serves");
    let out = f.run.stdout.text();
    let delays: Vec<u64> = out
        .lines()
        .filter(|l| l.contains("restarting it after the delay"))
        .filter_map(|l| log_field_u64(l, "delay_ms"))
        .collect();
    assert_eq!(delays, [200, 400], "the backoff doubles\n{}", f.run.dump());
    f.sigterm();
    assert_eq!(f.run.expect_code(secs(15)), 143, "{}", f.run.dump());
}

#[test]
fn max_restarts_then_the_childs_exit_status() {
    let flags = [
        "--restart",
        "always",
        "--restart-backoff",
        "100ms..100ms",
        "--max-restarts",
        "2",
    ];
    let mut f = spawn_child("maxrestart", &flags, &["sh", "-c", "exit 5"]);
    assert_eq!(f.run.expect_code(secs(15)), 5, "{}", f.run.dump());
    f.run.stdout.wait_eof(secs(5));
    let out = f.run.stdout.text();
    assert_eq!(
        out.matches("child started").count(),
        3,
        "the first run and two restarts\n{}",
        f.run.dump()
    );
    assert!(out.contains("giving up"), "{}", f.run.dump());
}
