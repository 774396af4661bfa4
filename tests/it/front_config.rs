//! config.json (`--config`, both health formats) and the `check-config`
//! verb, and the start-up refusals: exit 2 before the child is started.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::front_util::*;
use crate::http::*;
use crate::util::*;

// ===========================================================================
// config.json and check-config
// ===========================================================================

const OLD_FORMAT: &str = r#"{
  "model_algorithm": "image_classification",
  "model_type": "Image",
  "apis": [{"protocol": "http", "url": "/", "method": "post",
            "request": {"Content-type": "multipart/form-data",
                        "data": {"type": "object", "properties": {"images": {"type": "file"}}}},
            "response": {"Content-type": "application/json",
                         "data": {"type": "object", "properties": {"mnist_result": {"type": "integer"}}}}}],
  "health": {"url": "/ping", "protocol": "http", "initial_delay_seconds": "30", "timeout_seconds": "5"}
}"#;

const NEW_FORMAT: &str = r#"{
  "model_algorithm": "image_classification",
  "model_type": "Image",
  "apis": [{"url": "/predict", "method": "post",
            "request": {"Content-type": "application/json", "data": {"type": "object"}},
            "response": {"Content-type": "application/json", "data": {"type": "object"}}},
           {"url": "/", "method": "get"}],
  "health": {"check_method": "HTTP", "url": "/ping", "protocol": "http",
             "initial_delay_seconds": 10, "timeout_seconds": 5,
             "period_seconds": 5, "failure_threshold": 2}
}"#;

/// `modelarts-init check-config <path>`.
fn check_config_file(path: &Path) -> (Running, i32) {
    run_verb(Init::new().arg("check-config").arg(path))
}

/// Runs `init` with a child that would touch `marker`; asserts exit 2 before
/// the child was started (`what` names the case) and returns the guard.
pub(crate) fn assert_refused_before_child(init: Init, marker: &Path, what: &str) -> Running {
    let (r, code) = run_verb(init.sh("touch \"$1\"", &[marker.to_str().unwrap()]));
    assert_eq!(code, 2, "{what}: exit {code}\n{}", r.dump());
    assert!(!marker.exists(), "{what}: the child was started");
    r
}

fn check_config(dir: &TempDir, name: &str, text: &str) -> (i32, String, String, PathBuf) {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    let (r, code) = check_config_file(&path);
    (code, r.stdout.text(), r.stderr.text(), path)
}

/// Both health formats (strings; numbers with check_method) and the
/// example app's config.json are valid; check-config prints what they
/// declare.
#[test]
fn check_config_accepts_both_formats() {
    let dir = TempDir::new("check-config");
    let (code, out, err, path) = check_config(&dir, "old.json", OLD_FORMAT);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{}: valid", path.display())), "{out}");
    assert!(out.lines().any(|l| l == "api: POST /"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("health: http /ping")),
        "{out}"
    );

    let (code, out, err, _) = check_config(&dir, "new.json", NEW_FORMAT);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().any(|l| l == "api: POST /predict"), "{out}");
    assert!(out.lines().any(|l| l == "api: GET /"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("health: http /ping")),
        "{out}"
    );

    let example = repo().join("examples/gunicorn-app/config.json");
    let (r, code) = check_config_file(&example);
    let out = r.stdout.text();
    assert_eq!(code, 0, "{}", r.dump());
    assert!(out.contains(": valid"), "{out}");
    assert!(out.lines().any(|l| l == "api: POST /echo"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("health: http /health")),
        "{out}"
    );
}

/// Broken configs: exit 2 with the field path, from check-config and from
/// `--config` (before the child is started).
#[test]
fn broken_config_exits_2_with_the_field_path() {
    let dir = TempDir::new("bad-config");
    let cases: [(&str, &str, &str); 7] = [
        (
            "wrong-type",
            r#"{"health": {"url": "/health", "period_seconds": true}}"#,
            "health.period_seconds",
        ),
        (
            "not-a-number",
            r#"{"health": {"url": "/health", "initial_delay_seconds": "thirty"}}"#,
            "health.initial_delay_seconds",
        ),
        ("url-type", r#"{"health": {"url": 5}}"#, "health.url"),
        (
            "protocol",
            r#"{"health": {"url": "/health", "protocol": "ftp"}}"#,
            "health.protocol",
        ),
        (
            "no-slash",
            r#"{"health": {"url": "health", "protocol": "http"}}"#,
            "health.url",
        ),
        (
            "api-url",
            r#"{"apis": [{"url": "predict", "method": "post"}]}"#,
            "apis[0].url",
        ),
        (
            "check-method",
            r#"{"health": {"url": "/health", "check_method": "TCP"}}"#,
            "health.check_method",
        ),
    ];
    for (name, text, field) in cases {
        let (code, out, err, path) = check_config(&dir, &format!("{name}.json"), text);
        assert_eq!(code, 2, "{name}: check-config exit {code}\n{out}{err}");
        assert!(err.contains(field), "{name}: no {field} in {err:?}");
        assert!(
            err.contains(path.to_str().unwrap()),
            "{name}: file not named in {err:?}"
        );

        let marker = dir.join(&format!("{name}.ran"));
        let init = init_at(&free_addr().to_string(), &free_addr().to_string())
            .arg("--config")
            .arg(&path);
        let r = assert_refused_before_child(init, &marker, &format!("{name}: --config"));
        assert!(r.stderr.contains(field), "{name}: no {field}\n{}", r.dump());
    }
}

/// `--config` with health.url /ping, in both formats: /ping is the health
/// path (200 {"health":"true"} when ready); /health is the app's (404).
#[test]
fn config_health_url_is_the_health_path() {
    for (name, text) in [("old", OLD_FORMAT), ("new", NEW_FORMAT)] {
        let dir = TempDir::new("config-ping");
        let cfg = dir.join("config.json");
        fs::write(&cfg, text).unwrap();
        let mut f = spawn_gunicorn(
            &format!("config-{name}"),
            &["--config", cfg.to_str().unwrap()],
            &[],
        );
        f.wait_ready("/ping");
        let r = f.get("/ping").unwrap();
        assert_health_true(&r);
        let r = f.get("/health").unwrap();
        assert_eq!(
            r.status,
            404,
            "{name}: /health should reach gunicorn: {}",
            r.text()
        );
    }
}

// ===========================================================================
// Start-up refusals
// ===========================================================================

/// `--upstream` equal to `--listen` (or reachable through 0.0.0.0): exit 2
/// before the child starts.
#[test]
fn upstream_equal_to_listen_exits_2() {
    let dir = TempDir::new("same-addr");
    let p = free_port();
    for (listen, upstream) in [
        (format!("127.0.0.1:{p}"), format!("127.0.0.1:{p}")),
        (format!("0.0.0.0:{p}"), format!("127.0.0.1:{p}")),
    ] {
        let marker = dir.join("ran");
        let what = format!("--listen {listen} --upstream {upstream}");
        let r = assert_refused_before_child(init_at(&listen, &upstream), &marker, &what);
        assert!(r.stderr.contains("--upstream"), "{}", r.dump());
    }
}

/// A port already in use: exit 2 with a message naming the address.
#[test]
fn port_in_use_exits_2() {
    let dir = TempDir::new("in-use");
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let marker = dir.join("ran");
    let init = init_at(&addr.to_string(), &free_addr().to_string());
    let r = assert_refused_before_child(init, &marker, &format!("--listen {addr} in use"));
    let err = r.stderr.text();
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(err.to_lowercase().contains("in use"), "{err}");
    drop(holder);
}
