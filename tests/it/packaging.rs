//! What ships around the binary: `run.sh` (the batch-service start script,
//! R5) and the command line of `Dockerfile.example`'s CMD, run directly
//! (there is no Docker engine here), with the real gunicorn example app.

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::{
    bin, curl_status, free_port, repo, scrubbed_command, venv_bin, wait_until, Running, TempDir,
};

/// `sh run.sh ARGS...` with MODELARTS_INIT_BIN pointing at the binary.
fn run_sh(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut cmd = scrubbed_command("sh");
    cmd.arg(repo().join("run.sh"))
        .args(args)
        .env("MODELARTS_INIT_BIN", bin());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running::spawn(cmd)
}

#[test]
fn run_sh_execs_modelarts_init_with_its_arguments() {
    let dir = TempDir::new("run-sh");
    let mut r = run_sh(
        &[
            "sh",
            "-c",
            "echo \"ran in $(pwd) with $1\"; exit 7",
            "sh",
            "arg-one",
        ],
        &[
            ("MODELARTS_INIT_NO_PROXY", "true"),
            ("MODELARTS_SERVICE_DIR", dir.str()),
        ],
    );
    let code = r.expect_code(Duration::from_secs(10));
    r.stdout.wait_eof(Duration::from_secs(5));
    assert_eq!(code, 7, "{}", r.dump());
    assert!(
        r.stdout
            .has_line(&format!("ran in {} with arg-one", dir.str())),
        "{}",
        r.dump()
    );
    // modelarts-init itself ran (it logs the child it started).
    assert!(r.stdout.contains("child started"), "{}", r.dump());
}

#[test]
fn run_sh_takes_the_command_from_the_environment() {
    let mut r = run_sh(
        &[],
        &[
            ("MODELARTS_INIT_NO_PROXY", "true"),
            ("MODELARTS_SERVICE_CMD", "printf %s-%s\\n one *"),
        ],
    );
    assert_eq!(r.expect_code(Duration::from_secs(10)), 0, "{}", r.dump());
    r.stdout.wait_eof(Duration::from_secs(5));
    // Split on blanks, and `*` is not expanded.
    assert!(r.stdout.has_line("one-*"), "{}", r.dump());
}

/// The service stage's CMD of Dockerfile.example, as a JSON array.
fn dockerfile_cmd() -> Vec<String> {
    let text = fs::read_to_string(repo().join("Dockerfile.example")).unwrap();
    let line = text
        .lines()
        .rfind(|l| l.starts_with("CMD ["))
        .expect("a CMD line in Dockerfile.example");
    serde_json::from_str(line.trim_start_matches("CMD ")).expect("CMD is a JSON array")
}

#[test]
fn dockerfile_cmd_serves_the_gunicorn_app_and_drains() {
    let mut argv = dockerfile_cmd();
    assert_eq!(argv[0], "modelarts-init");
    assert!(argv.iter().any(|a| a == "gunicorn"), "{argv:?}");
    // The image's paths and ports, mapped onto this machine: our binary,
    // the venv's gunicorn, free ports instead of 8080/8081.
    let (listen, upstream) = (free_port(), free_port());
    argv[0] = bin().to_owned();
    for a in argv.iter_mut() {
        if a == "127.0.0.1:8081" {
            *a = format!("127.0.0.1:{upstream}");
        }
    }
    let venv_path = venv_bin("gunicorn").parent().unwrap().to_owned();
    let mut cmd = scrubbed_command(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(repo().join("examples/gunicorn-app"))
        .env(
            "PATH",
            format!(
                "{}:{}",
                venv_path.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("MODELARTS_INIT_LISTEN", format!("127.0.0.1:{listen}"))
        .env("MODELARTS_INIT_UPSTREAM", format!("127.0.0.1:{upstream}"))
        .env("MODELARTS_INIT_DRAIN_DELAY", "1s")
        .env("MODELARTS_INIT_STOP_TIMEOUT", "10s");
    let mut r = Running::spawn(cmd);
    let health = format!("http://127.0.0.1:{listen}/health");
    assert!(
        wait_until(Duration::from_secs(30), || curl_status(
            &[&health],
            Duration::from_secs(2)
        )
        .0 == 200),
        "never healthy\n{}",
        r.dump()
    );
    let (code, _) = curl_status(
        &[&format!("http://127.0.0.1:{listen}/")],
        Duration::from_secs(5),
    );
    assert_eq!(code, 200, "{}", r.dump());
    r.signal(Signal::SIGTERM);
    // gunicorn stops cleanly on the SIGTERM it gets after the drain delay.
    assert_eq!(r.expect_code(Duration::from_secs(20)), 0, "{}", r.dump());
    r.stdout.wait_eof(Duration::from_secs(5));
    assert!(
        r.stdout.contains("Handling signal: term"),
        "gunicorn got no SIGTERM\n{}",
        r.dump()
    );
}
