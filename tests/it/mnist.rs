//! `modelarts-init mnist`: the bundled model through the real HTTP front,
//! with real uploads (curl) of photo-like images made from the MNIST test
//! split by `tests/tools/make_photos.py`. Submodules: `limits` (hostile
//! uploads: each limit's answer, the log, the peak memory), `cli` (the
//! standalone binary's command line), `decode` (the library's decoder on
//! mutated images), `reference` (the preprocessing against preprocess.py).

mod cli;
mod decode;
mod limits;
mod reference;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::{
    curl_status, free_port, repo, scrubbed_command, venv_bin, wait_until, Init, Running, TempDir,
};

/// The standalone mnist binary.
fn mnist_bin() -> &'static str {
    env!("CARGO_BIN_EXE_modelarts-init-mnist")
}

/// The Python of the test venv (numpy + Pillow for make_photos.py).
fn python() -> PathBuf {
    venv_bin("python")
}

/// A running mnist server on a free port.
struct Server {
    run: Running,
    port: u16,
}

impl Server {
    /// `modelarts-init mnist --listen ... EXTRA`.
    fn start(extra: &[&str]) -> Server {
        let mut cmd = Init::new().arg("mnist").into_command();
        cmd.args(extra);
        Server::launch(cmd)
    }

    /// `cmd --listen 127.0.0.1:PORT`, once /health answers 200.
    fn launch(mut cmd: Command) -> Server {
        let port = free_port();
        cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
        let run = Running::spawn(cmd);
        let server = Server { run, port };
        assert!(
            wait_until(Duration::from_secs(30), || server.get("/health").0 == 200),
            "mnist server never became healthy\n{}",
            server.run.dump()
        );
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// (status, body) of a curl call with `args` (status 0: no answer).
    fn curl(&self, args: &[&str]) -> (u16, String) {
        curl_status(args, Duration::from_secs(20))
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.curl(&[&self.url(path)])
    }

    /// POSTs `file` as the multipart field `images`.
    fn classify(&self, file: &Path) -> (u16, String) {
        self.curl(&["-F", &format!("images=@{}", file.display()), &self.url("/")])
    }
}

fn digit_of(body: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("mnist_result")?.as_i64()
}

#[test]
fn seven_jpg_is_a_seven_and_drain_follows_r8() {
    let mut s = Server::start(&["--drain-delay", "1s", "--stop-timeout", "1s"]);
    let (code, body) = s.get("/health");
    assert_eq!((code, body.as_str()), (200, r#"{"health":"true"}"#));
    let (code, body) = s.classify(&repo().join("examples/images/seven.jpg"));
    assert_eq!((code, body.as_str()), (200, r#"{"mnist_result":7}"#));

    s.run.signal(Signal::SIGTERM);
    assert!(wait_until(Duration::from_secs(5), || s.get("/health").0 == 503));
    // Still served during the drain delay.
    let (code, body) = s.classify(&repo().join("examples/images/seven.jpg"));
    assert_eq!((code, digit_of(&body)), (200, Some(7)), "{body}");
    let status = s.run.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", s.run.dump());
}

#[test]
fn every_sample_image_is_classified_as_named() {
    let s = Server::start(&[]);
    let names = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    let mut seen = 0;
    for entry in fs::read_dir(repo().join("examples/images")).expect("examples/images") {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let Some(want) = names.iter().position(|n| stem.starts_with(n)) else {
            continue;
        };
        let (code, body) = s.classify(&path);
        assert_eq!(
            (code, digit_of(&body)),
            (200, Some(want as i64)),
            "{}: {body}",
            path.display()
        );
        seen += 1;
    }
    assert!(
        seen >= 3,
        "expected several named sample images, found {seen}"
    );
}

#[test]
fn photo_like_images_are_classified_accurately() {
    let dir = TempDir::new("mnist-photos");
    let count = 300;
    let made = Command::new(python())
        .arg(repo().join("tests/tools/make_photos.py"))
        .args([
            "--out",
            dir.str(),
            "--count",
            &count.to_string(),
            "--seed",
            "20261126",
        ])
        .arg("--sample")
        .arg(repo().join("tests/data/mnist-test-sample.bin.gz"))
        .status()
        .expect("run make_photos.py");
    assert!(made.success());
    let labels: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&fs::read_to_string(dir.join("labels.json")).unwrap()).unwrap();
    assert_eq!(labels.len(), count);

    let s = Server::start(&[]);
    let mut right = 0;
    let mut wrong = Vec::new();
    for (name, label) in &labels {
        let (code, body) = s.classify(&dir.join(name));
        let got = digit_of(&body);
        if code == 200 && got == label.as_i64() {
            right += 1;
        } else {
            wrong.push(format!("{name}: label {label}, got {code} {body}"));
        }
    }
    let accuracy = right as f64 / count as f64;
    eprintln!("photo accuracy through HTTP: {right}/{count} = {accuracy:.4}");
    assert!(
        accuracy >= 0.97,
        "accuracy {accuracy:.4} < 0.97; wrong:\n{}",
        wrong.join("\n")
    );
}

/// A PNG that declares `width` x `height` pixels and holds none.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grey, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png
}

#[test]
fn bad_inputs_get_json_4xx_and_the_server_keeps_serving() {
    // a size with a unit, as nginx takes it: 100K is 102400 bytes
    let s = Server::start(&["--max-image-bytes", "100K"]);
    let dir = TempDir::new("mnist-bad");
    let seven = repo().join("examples/images/seven.jpg");
    let jpeg = fs::read(&seven).unwrap();
    fs::write(dir.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    fs::write(dir.join("text.txt"), b"this is not an image at all").unwrap();
    fs::write(dir.join("empty.png"), b"").unwrap();
    fs::write(dir.join("bomb.png"), png_header_only(100_000, 100_000)).unwrap();
    fs::write(dir.join("big.jpg"), vec![0xFFu8; 200_000]).unwrap();
    fs::write(
        dir.join("garbage.bin"),
        b"--xyz\r\nContent-Disposition: form-data; name=\"images\"\r\n\r\nabc",
    )
    .unwrap();
    let url = s.url("/");
    // curl args uploading `file` of `dir` as the multipart field `images`.
    let upload = |file: &str| vec!["-F".into(), format!("images=@{}", dir.join(file).display())];

    let cases: Vec<(&str, Vec<String>, u16)> = vec![
        (
            "no images field",
            vec!["-F".into(), format!("other=@{}", seven.display())],
            400,
        ),
        ("not an image", upload("text.txt"), 415),
        ("truncated jpeg", upload("truncated.jpg"), 400),
        ("empty file", upload("empty.png"), 400),
        ("decompression bomb", upload("bomb.png"), 413),
        ("over --max-image-bytes", upload("big.jpg"), 413),
        (
            "empty body",
            vec![
                "-X".into(),
                "POST".into(),
                "-H".into(),
                "Content-Type: multipart/form-data; boundary=xyz".into(),
                "--data-binary".into(),
                "".into(),
            ],
            400,
        ),
        (
            "malformed multipart",
            vec![
                "-H".into(),
                "Content-Type: multipart/form-data; boundary=xyz".into(),
                "--data-binary".into(),
                format!("@{}", dir.join("garbage.bin").display()),
            ],
            400,
        ),
        (
            "not multipart",
            vec![
                "-H".into(),
                "Content-Type: application/json".into(),
                "--data".into(),
                "{}".into(),
            ],
            415,
        ),
        ("wrong method", vec!["-X".into(), "GET".into()], 405),
    ];
    for (what, args, want) in cases {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.push(&url);
        let (code, body) = s.curl(&all);
        assert_eq!(code, want, "{what}: {body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: not JSON: {body}"));
        assert!(
            v["error"].is_string() && v["message"].is_string(),
            "{what}: {body}"
        );
        if what == "over --max-image-bytes" {
            assert!(body.contains("exceeds 102400 bytes"), "{what}: {body}");
        }
        assert_eq!(s.get("/health").0, 200, "unhealthy after {what}");
    }
    let (code, body) = s.get("/no/such/path");
    assert_eq!(code, 404, "{body}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok());
    let (code, body) = s.classify(&seven);
    assert_eq!((code, digit_of(&body)), (200, Some(7)), "{body}");
}
