//! Hostile uploads (tests/tools/make_hostile_images.py): each bomb and
//! limit answered with its status and message, the refusals logged with
//! the client's address and rate-limited, and the server's peak memory
//! (VmHWM, from /proc) bounded while 16 clients send them at once.

use std::collections::HashMap;
use std::thread;

use super::*;

/// The hostile images, made into `dir`: name -> (width, height).
fn make_hostile(dir: &TempDir) -> HashMap<String, (u64, u64)> {
    make_images(dir, &[])
}

/// make_hostile_images.py's files, with `args`, made into `dir`.
fn make_images(dir: &TempDir, args: &[&str]) -> HashMap<String, (u64, u64)> {
    let out = Command::new(python())
        .arg(repo().join("tests/tools/make_hostile_images.py"))
        .arg(dir.path())
        .args(args)
        .output()
        .expect("run make_hostile_images.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_owned(),
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
            )
        })
        .collect()
}

/// (status, error code, message) of an answer.
fn refusal(code: u16, body: &str) -> (u16, String, String) {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    let text = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    (code, text("error"), text("message"))
}

/// What each hostile file must be answered with under the default limits:
/// status, error code, and the message (or, for the memory estimate, its
/// start and end).
fn expected(name: &str) -> (u16, &'static str, &'static str, &'static str) {
    const MEMORY_END: &str = "MB of memory to decode; the limit is 128 MB";
    match name {
        "png-bomb-16k-rgba.png" => (
            413,
            "too_many_pixels",
            "the image is 16384x16384 px (268 MP); the limit is 40 MP",
            "",
        ),
        "png-header-100k.png" => (
            413,
            "too_many_pixels",
            "the image is 100000x100000 px (10000 MP); the limit is 40 MP",
            "",
        ),
        "jpeg-header-65500.jpg" => (
            413,
            "too_many_pixels",
            "the image is 65500x65500 px (4290 MP); the limit is 40 MP",
            "",
        ),
        "png-palette-trns-6k.png" | "png-rgba16-6k.png" | "jpeg-prog444-6k.jpg" => (
            413,
            "too_much_memory",
            "the image is 6000x6000 px and needs about ",
            MEMORY_END,
        ),
        "jpeg-many-scans.jpg" => (
            413,
            "too_many_scans",
            "the JPEG has 2000 scans; the limit is 100 (a progressive JPEG has about 10)",
            "",
        ),
        // admitted, decoded, blank
        _ => (422, "no_digit", "no digit found in the image", ""),
    }
}

fn check(name: &str, code: u16, body: &str) {
    let (status, error, message) = refusal(code, body);
    let (want, want_error, start, end) = expected(name);
    assert_eq!(
        (status, error.as_str()),
        (want, want_error),
        "{name}: {body}"
    );
    if end.is_empty() {
        assert_eq!(message, start, "{name}");
    } else {
        assert!(
            message.starts_with(start) && message.ends_with(end),
            "{name}: {message}"
        );
    }
}

#[test]
fn each_bomb_and_limit_gets_its_status_and_message_and_is_logged() {
    let dir = TempDir::new("mnist-hostile");
    let files = make_hostile(&dir);
    assert_eq!(files.len(), 10);
    let s = Server::start(&[]);
    let mut names: Vec<&String> = files.keys().collect();
    names.sort();
    for name in names {
        let (code, body) = s.classify(&dir.join(name));
        check(name, code, &body);
    }
    // the server still classifies
    let (code, body) = s.classify(&repo().join("examples/images/seven.jpg"));
    assert_eq!((code, digit_of(&body)), (200, Some(7)), "{body}");
    // every refusal logged at info with its reason and the client
    let log = s.run.stdout.text();
    let line = log
        .lines()
        .find(|l| l.contains("refused: the image is 16384x16384 px (268 MP); the limit is 40 MP"))
        .unwrap_or_else(|| panic!("the bomb's refusal is not logged:\n{log}"));
    assert!(
        line.contains("INFO") && line.contains("status=413") && line.contains("peer=127.0.0.1:"),
        "{line}"
    );
    assert!(
        log.contains("refused: no digit found in the image"),
        "{log}"
    );
}

#[test]
fn limits_follow_their_flags_and_variables() {
    let seven = repo().join("examples/images/seven.jpg"); // 134 x 115 = 15410 px
    let s = Server::start(&["--max-pixels", "10000"]);
    let (code, body) = s.classify(&seven);
    assert_eq!(
        refusal(code, &body),
        (
            413,
            "too_many_pixels".into(),
            "the image is 134x115 px (15410 px); the limit is 10000 px".into()
        )
    );
    // the variable, on the standalone binary
    let mut cmd = scrubbed_command(mnist_bin());
    cmd.env("MODELARTS_INIT_MAX_PIXELS", "15410");
    let s = Server::launch(cmd);
    let (code, body) = s.classify(&seven);
    assert_eq!(
        (code, digit_of(&body)),
        (200, Some(7)),
        "exactly at the limit: {body}"
    );
    // a budget that one decode's estimate exceeds
    let dir = TempDir::new("mnist-budget");
    make_hostile(&dir);
    let s = Server::start(&["--decode-memory", "20000000"]);
    let (code, body) = s.classify(&dir.join("png-grey16-5k.png"));
    let (status, error, message) = refusal(code, &body);
    assert_eq!((status, error.as_str()), (413, "too_much_memory"), "{body}");
    assert!(message.ends_with("the limit is 20 MB"), "{message}");
    let (code, body) = s.classify(&seven);
    assert_eq!((code, digit_of(&body)), (200, Some(7)), "{body}");
}

#[test]
fn refusals_are_logged_at_a_bounded_rate() {
    let s = Server::start(&[]);
    let url = s.url("/no/such/path");
    // one curl, one connection, 300 requests (each URL with its own -o)
    let mut args: Vec<&str> = vec!["-s", "-w", "%{http_code}\n", "--max-time", "20"];
    for _ in 0..300 {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    let out = Command::new("curl").args(&args).output().expect("run curl");
    let codes = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        codes.lines().filter(|c| *c == "404").count(),
        300,
        "{codes}"
    );
    let logged = || {
        s.run
            .stdout
            .text()
            .lines()
            .filter(|l| l.contains("refused: POST an image"))
            .count()
    };
    // one more after a second: it carries the count of the lines dropped
    assert!(logged() < 300, "every refusal of the flood was logged");
    assert!(
        wait_until(Duration::from_secs(10), || {
            s.get("/still/no");
            s.run.stdout.text().lines().any(|l| {
                l.contains("refused: POST an image")
                    && l.split_whitespace()
                        .any(|f| f.starts_with("suppressed=") && f != "suppressed=0")
            })
        }),
        "no line says how many were suppressed\n{}",
        s.run.dump()
    );
}

/// Peak resident memory of `pid` (VmHWM), in bytes.
fn peak_rss(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

#[test]
fn memory_stays_bounded_while_16_clients_send_bombs() {
    let dir = TempDir::new("mnist-rss");
    make_hostile(&dir);
    let s = Server::start(&[]);
    let before = peak_rss(s.run.pid());
    let refused = [
        "png-bomb-16k-rgba.png",
        "png-palette-trns-6k.png",
        "png-rgba16-6k.png",
        "jpeg-prog444-6k.jpg",
        "jpeg-many-scans.jpg",
        "jpeg-header-65500.jpg",
    ];
    let admitted = [
        "png-palette-5k.png",
        "png-grey16-5k.png",
        "jpeg-prog420-5k.jpg",
    ];
    let url = s.url("/");
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let mut files: Vec<PathBuf> = refused.iter().map(|n| dir.join(n)).collect();
            files.insert(i % files.len(), dir.join(admitted[i % admitted.len()]));
            let url = url.clone();
            thread::spawn(move || {
                files
                    .into_iter()
                    .map(|f| {
                        let form = format!("images=@{}", f.display());
                        let (code, body) =
                            curl_status(&["-F", &form, &url], Duration::from_secs(120));
                        (
                            f.file_name().unwrap().to_string_lossy().into_owned(),
                            code,
                            body,
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for client in clients {
        for (name, code, body) in client.join().unwrap() {
            check(&name, code, &body);
        }
    }
    eprintln!("mnist server VmHWM before: {} MB", before >> 20);
    assert_peak_within_bound(&s, "16 clients x 7 hostile uploads");
    assert_eq!(s.get("/health").0, 200);
}

/// The bound on the server's peak RSS, whatever 16 clients send.
const BOUND: u64 = 300 << 20;

/// Asserts (and prints) that the server's VmHWM is under `BOUND`.
fn assert_peak_within_bound(s: &Server, after: &str) {
    let peak = peak_rss(s.run.pid());
    let (mb, bound) = (peak >> 20, BOUND >> 20);
    eprintln!("mnist server VmHWM: {mb} MB after {after} (bound {bound} MB)");
    assert!(peak < BOUND, "peak RSS {mb} MB >= {bound} MB after {after}");
}

/// Sends `file` from `n` clients at once; returns their answers.
fn at_once(s: &Server, file: &Path, n: usize) -> Vec<(u16, String)> {
    let form = format!("images=@{}", file.display());
    let url = s.url("/");
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let (form, url) = (form.clone(), url.clone());
            thread::spawn(move || curl_status(&["-F", &form, &url], Duration::from_secs(120)))
        })
        .collect();
    clients.into_iter().map(|c| c.join().unwrap()).collect()
}

#[test]
fn memory_stays_bounded_while_16_clients_upload_the_largest_files() {
    let dir = TempDir::new("mnist-big");
    make_images(&dir, &["--big"]);
    let s = Server::start(&[]);
    for (code, body) in at_once(&s, &dir.join("big-noise.jpg"), 16) {
        assert_eq!(refusal(code, &body).1, "no_digit", "{body}");
    }
    assert_peak_within_bound(&s, "16 clients x one 9.7 MB, 16 MP progressive JPEG");
}

#[test]
fn a_decode_waits_for_room_until_the_request_timeout() {
    let dir = TempDir::new("mnist-wait");
    make_hostile(&dir);
    // one 5000x5000 16-bit grey PNG (about 54 MB) fits at a time
    let s = Server::start(&["--decode-memory", "80000000", "--request-timeout", "200ms"]);
    let answers = at_once(&s, &dir.join("png-grey16-5k.png"), 6);
    let codes: Vec<u16> = answers.iter().map(|a| a.0).collect();
    // decoded one after the other, so not all within 200 ms: the waits
    // end in the front's 504, none in a 413 (each fits on its own)
    assert!(
        codes.iter().all(|c| *c == 422 || *c == 504) && codes.contains(&504),
        "{answers:?}"
    );
    // the room comes back: the server still decodes
    let (code, body) = s.classify(&repo().join("examples/images/seven.jpg"));
    assert_eq!((code, digit_of(&body)), (200, Some(7)), "{body}");
}
