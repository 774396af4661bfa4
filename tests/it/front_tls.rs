//! HTTPS and WSS on the front (`--tls`): real TLS clients (curl with `-k`
//! and with `--cacert`, openssl s_client for the protocol versions and
//! ALPN, Python's ssl with websockets for WSS) against real gunicorn
//! behind; 50 MB byte-exact both ways over TLS; the drain over TLS; every
//! bad certificate or key refused at start with exit 2 naming the file; and
//! clients that botch the handshake (plain HTTP, silence, no common
//! cipher): closed and counted, others unaffected, nothing logged above
//! debug. The certificates are made by the openssl command line.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::front_util::*;
use crate::http::*;
use crate::payload::*;
use crate::util::*;

/// The name the test server's certificate is issued for.
const NAME: &str = "modelarts.example";

/// A CA and a server certificate it issued for [`NAME`], made by openssl in
/// `dir`: (ca.pem, server.pem, server key in PKCS#8).
fn certificates(dir: &TempDir) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=test-ca",
            "-days",
            "2",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            &format!("/CN={NAME}"),
        ],
    ]
    .concat());
    fs::write(dir.join("ext.cnf"), format!("subjectAltName=DNS:{NAME}\n")).unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// gunicorn behind a TLS front with the files; ready.
fn tls_gunicorn(tag: &str, extra: &[&str]) -> (Front, PathBuf) {
    let certs = TempDir::new(&format!("{tag}-certs"));
    let (ca, cert, key) = certificates(&certs);
    let mut flags = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    flags.extend_from_slice(extra);
    let (init, dir, listen, upstream) = init_on_free_ports(tag, &flags);
    let argv = gunicorn_argv(&dir, upstream, &[]);
    let mut f = Front::spawn(init, dir, listen, &argv);
    let keep = f.dir.join("ca.pem");
    fs::copy(&ca, &keep).unwrap();
    wait_https_ready(&mut f);
    (f, keep)
}

/// Waits (60 s) until `GET https://.../health` answers 200.
fn wait_https_ready(f: &mut Front) {
    let ok = wait_until(secs(60), || {
        assert!(f.run.try_status().is_none(), "exited\n{}", f.run.dump());
        let url = format!("https://127.0.0.1:{}/health", f.listen.port());
        let out = curl(
            &["-sk", "-o", "/dev/null", "-w", "%{http_code}", &url],
            secs(5),
        );
        out.stdout == "200"
    });
    assert!(ok, "never ready over TLS\n{}", f.run.dump());
}

fn https(f: &Front, path: &str) -> String {
    format!("https://{NAME}:{}{path}", f.listen.port())
}

/// curl against the front with the name resolved to it and `ca` trusted.
fn curl_ca(f: &Front, ca: &Path, args: &[&str]) -> CurlOut {
    let resolve = format!("{NAME}:{}:127.0.0.1", f.listen.port());
    let mut all = vec![
        "-s",
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &resolve,
    ];
    all.extend_from_slice(args);
    curl(&all, secs(120))
}

#[test]
fn https_through_the_proxy_50mb_byte_exact_both_ways() {
    let (f, ca) = tls_gunicorn("tls-bytes", &[]);
    let src = f.dir.join("up.bin");
    write_random_file(&src, 50 * 1024 * 1024);
    let echoed = f.dir.join("echoed.bin");
    let resolve = format!("{NAME}:{}:127.0.0.1", f.listen.port());
    curl_post_file(
        &https(&f, "/echo"),
        &src,
        &echoed,
        &["--cacert", ca.to_str().unwrap(), "--resolve", &resolve],
        secs(120),
    );
    assert_eq!(
        sha256_file(&echoed),
        sha256_file(&src),
        "upload echoed back differs"
    );
    let down = f.dir.join("down.bin");
    let n = 50 * 1024 * 1024;
    let out = curl_ca(
        &f,
        &ca,
        &[
            "-o",
            down.to_str().unwrap(),
            "-w",
            "%{http_code}",
            &https(&f, &format!("/bytes?n={n}")),
        ],
    );
    assert_eq!(out.stdout, "200", "{}", out.stderr);
    let expected = f.dir.join("expected.bin");
    write_pattern_file(&expected, n);
    assert_eq!(
        sha256_file(&down),
        sha256_file(&expected),
        "download differs"
    );
    // The upstream hears that the client came over TLS.
    let out = curl_ca(&f, &ca, &[&https(&f, "/headers")]);
    let headers: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(headers["x-forwarded-proto"], "https", "{headers}");
    assert!(
        f.run.stdout.contains("serving the certificate of"),
        "{}",
        f.run.dump()
    );
}

#[test]
fn tls_1_2_and_1_3_with_alpn_http_1_1() {
    let (f, _) = tls_gunicorn("tls-versions", &[]);
    for (flag, want) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = Command::new("sh")
            .args(["-c", &format!("echo | openssl s_client -connect 127.0.0.1:{} {flag} -alpn http/1.1 -servername {NAME}", f.listen.port())])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("Protocol  : {want}")) || text.contains(&format!("New, {want}")),
            "{flag}: {text}"
        );
        assert!(text.contains("ALPN protocol: http/1.1"), "{flag}: {text}");
    }
}

#[test]
fn config_json_asking_for_https_gets_a_self_signed_certificate() {
    let dir = TempDir::new("tls-config");
    let config = dir.join("config.json");
    fs::write(&config, r#"{"apis": [{"url": "/", "method": "get", "protocol": "HTTPS"}], "health": {"url": "/health", "protocol": "https"}}"#).unwrap();
    let mut f = spawn_gunicorn(
        "tls-selfsigned",
        &["--config", config.to_str().unwrap()],
        &[],
    );
    wait_https_ready(&mut f);
    let out = curl(
        &["-sk", &format!("https://127.0.0.1:{}/", f.listen.port())],
        secs(10),
    );
    assert!(out.stdout.contains("gunicorn-app"), "{}", out.stdout);
    let line = f.wait_log("TLS on the listener", secs(5)).unwrap();
    assert!(line.contains("self-signed"), "{line}");
    // Plain HTTP on that port gets nothing: it speaks TLS only.
    assert!(
        f.get("/health").is_err(),
        "plain HTTP answered on the TLS port"
    );
    // And --tls off with such a config.json is refused at start.
    let (r, code) = run_verb(Init::new().args([
        "--tls",
        "off",
        "--config",
        config.to_str().unwrap(),
        "--",
        "true",
    ]));
    assert_eq!(code, 2, "{}", r.dump());
    assert!(r.stderr.contains("health.protocol (https)"), "{}", r.dump());
}

#[test]
fn websocket_over_tls_reaches_the_plain_upstream() {
    let py = python();
    let server = py_script("ws_echo_server.py");
    let mut f = spawn_child(
        "wss",
        &["--tls", "self-signed"],
        &[py.as_str(), server.as_str()],
    );
    wait_https_ready(&mut f);
    let url = format!("wss://127.0.0.1:{}/ws", f.listen.port());
    let mut cmd = scrubbed_command(&py);
    cmd.arg(py_script("ws_client.py"))
        .arg(&url)
        .env("WS_INSECURE", "1");
    let mut client = Running::spawn(cmd);
    assert_eq!(
        client.expect_code(secs(60)),
        0,
        "{}\n{}",
        client.dump(),
        f.run.dump()
    );
    assert!(client.stdout.contains("WS-OK 5"), "{}", client.dump());
    let headers = client.stdout.text();
    assert!(
        headers.contains(r#""x-forwarded-proto": "https""#),
        "{headers}"
    );
}

#[test]
fn the_drain_over_tls() {
    let (f, ca) = tls_gunicorn(
        "tls-drain",
        &["--drain-delay", "2s", "--stop-timeout", "5s"],
    );
    f.sigterm();
    let health = wait_until(secs(5), || {
        curl_ca(
            &f,
            &ca,
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &https(&f, "/health"),
            ],
        )
        .stdout
            == "503"
    });
    assert!(health, "/health did not fail over TLS");
    let out = curl_ca(
        &f,
        &ca,
        &["-o", "/dev/null", "-w", "%{http_code}", &https(&f, "/")],
    );
    assert_eq!(out.stdout, "200", "traffic still served during the drain");
    let line = f.wait_child_stop_signal();
    assert!(line >= 1900, "{line}");
    let mut run = f.run;
    assert!(run.wait_exit(secs(20)).is_some(), "{}", run.dump());
}

#[test]
fn bad_certificates_and_keys_exit_2_naming_the_file() {
    let certs = TempDir::new("tls-bad");
    let (_, cert, key) = certificates(&certs);
    let other = TempDir::new("tls-bad-other");
    let (_, _, other_key) = certificates(&other);
    let text = certs.join("text.pem");
    fs::write(&text, "not a certificate\n").unwrap();
    let (c, k, t, o) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        text.to_str().unwrap(),
        other_key.to_str().unwrap(),
    );
    let missing = "/nonexistent/server.pem";
    let dir = certs.path().to_str().unwrap();
    for (flags, file, what) in [
        (
            vec!["--tls-cert", missing, "--tls-key", k],
            missing,
            "cannot read",
        ),
        (vec!["--tls-cert", dir, "--tls-key", k], dir, "cannot read"),
        (
            vec!["--tls-cert", t, "--tls-key", k],
            t,
            "no PEM certificate",
        ),
        (
            vec!["--tls-cert", c, "--tls-key", t],
            t,
            "no PEM private key",
        ),
        (vec!["--tls-cert", c, "--tls-key", o], o, "does not match"),
        (vec!["--tls-cert", c], "--tls-key", "needs --tls-key"),
    ] {
        let marker = certs.join("child-ran");
        let (r, code) =
            run_verb(
                Init::new()
                    .args(&flags)
                    .args(["--", "touch", marker.to_str().unwrap()]),
            );
        assert_eq!(code, 2, "{flags:?}\n{}", r.dump());
        let err = r.stderr.text();
        assert!(err.contains(file) && err.contains(what), "{flags:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(!marker.exists(), "the child ran despite the bad TLS files");
    }
}

#[test]
fn botched_handshakes_are_closed_counted_and_not_logged() {
    let (f, ca) = tls_gunicorn(
        "tls-botched",
        &["--tls-handshake-timeout", "1s", "--status-path", "/status"],
    );
    let before = f.run.stdout.len();
    // Plain HTTP to the TLS port.
    assert!(f.get("/").is_err(), "plain HTTP was answered");
    // A client that never sends its hello: cut by the handshake timeout.
    let mut silent = Conn::open(f.listen).unwrap();
    let mut got = Vec::new();
    assert!(
        silent.wait_closed(secs(10), &mut got).is_some(),
        "a silent client was never cut"
    );
    // No common cipher: a TLS 1.2 client offering only CBC suites.
    let out = Command::new("sh")
        .args([
            "-c",
            &format!(
                "echo | openssl s_client -connect 127.0.0.1:{} -tls1_2 -cipher AES128-SHA",
                f.listen.port()
            ),
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains("Cipher is AES128-SHA"),
        "a CBC suite was agreed: {text}"
    );
    // Others are unaffected meanwhile.
    let ok = curl_ca(
        &f,
        &ca,
        &["-o", "/dev/null", "-w", "%{http_code}", &https(&f, "/")],
    );
    assert_eq!(ok.stdout, "200");
    let status = curl_ca(&f, &ca, &[&https(&f, "/status")]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(status["tls_failures"].as_u64() >= Some(3), "{status}");
    let logged = &f.run.stdout.text()[before..];
    assert!(
        !logged.contains("TLS") && !logged.contains("handshake"),
        "logged above debug: {logged}"
    );
}

#[test]
fn the_health_verb_speaks_https() {
    let (f, ca) = tls_gunicorn("tls-verb", &[]);
    let url = format!("https://127.0.0.1:{}/health", f.listen.port());
    let (r, code) = run_verb(Init::new().args(["health", "--url", &url, "--insecure"]));
    assert_eq!(code, 0, "{}", r.dump());
    // Verified against the root; the certificate names modelarts.example,
    // but 127.0.0.1 is not checked against its names.
    let (r, code) =
        run_verb(Init::new().args(["health", "--url", &url, "--cacert", ca.to_str().unwrap()]));
    assert_eq!(code, 0, "{}", r.dump());
    // Another root: refused.
    let other = TempDir::new("tls-verb-other");
    let (other_ca, _, _) = certificates(&other);
    let (r, code) = run_verb(Init::new().args([
        "health",
        "--url",
        &url,
        "--cacert",
        other_ca.to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "{}", r.dump());
    assert!(r.stderr.contains("TLS"), "{}", r.dump());
    // Neither flag: a usage error.
    let (r, code) = run_verb(Init::new().args(["health", "--url", &url]));
    assert_eq!(code, 2, "{}", r.dump());
    assert!(
        r.stderr.contains("--insecure") && r.stderr.contains("--cacert"),
        "{}",
        r.dump()
    );
}

/// The init that every container runs carries no TLS code: TLS is the
/// third binary's, which the init execs when TLS is asked for (as the tests
/// above do, through `modelarts-init`).
#[test]
fn the_init_itself_carries_no_tls_code() {
    let has = |path: &Path, needle: &[u8]| {
        let bytes = fs::read(path).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    };
    let init = Path::new(bin());
    assert!(
        !has(init, b"rustls"),
        "rustls is linked into {}",
        init.display()
    );
    let tls = init.with_file_name("modelarts-init-tls");
    assert!(has(&tls, b"rustls"), "no rustls in {}", tls.display());
}

#[test]
fn the_https_example_config_is_valid_and_asks_for_tls() {
    let config = repo().join("examples/gunicorn-app/config-https.json");
    let (r, code) = run_verb(Init::new().arg("check-config").arg(&config));
    assert_eq!(code, 0, "{}", r.dump());
    assert!(
        r.stdout
            .contains("tls: health.protocol (https) asks for it"),
        "{}",
        r.dump()
    );
}
