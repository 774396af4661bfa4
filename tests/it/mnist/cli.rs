//! The standalone `modelarts-init-mnist`: its own `--help`, the same flags
//! as `modelarts-init mnist`, with or without the word `mnist`.

use super::*;

/// Runs `program args` to the end: (exit code, stdout, stderr).
fn run(program: &str, args: &[&str]) -> (i32, String, String) {
    let mut r = Running::spawn({
        let mut cmd = scrubbed_command(program);
        cmd.args(args);
        cmd
    });
    let status = r.finish(Duration::from_secs(10));
    (
        status.code().unwrap_or(-1),
        r.stdout.text(),
        r.stderr.text(),
    )
}

#[test]
fn the_standalone_binary_explains_itself() {
    let (code, out, _) = run(mnist_bin(), &["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Usage: modelarts-init-mnist [OPTIONS]"),
        "{out}"
    );
    for flag in [
        "--listen",
        "--max-image-bytes",
        "--max-pixels",
        "--decode-memory",
        "--upload-memory",
        "--drain-delay",
        "MODELARTS_INIT_MAX_PIXELS",
        "MODELARTS_INIT_DECODE_MEMORY",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help:\n{out}");
    }
    assert!(!out.contains("COMMAND"), "the init's help:\n{out}");
    // the init's `mnist --help` lists the same flags
    let (code, init_out, _) = run(crate::util::bin(), &["mnist", "--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--max-pixels",
        "--decode-memory",
        "--upload-memory",
        "--max-image-bytes",
    ] {
        assert!(init_out.contains(flag), "{flag}:\n{init_out}");
    }
    // a wrong flag: one line naming the command as typed, and exit 2
    let (code, _, err) = run(mnist_bin(), &["--frobnicate"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("modelarts-init-mnist: ")
            && err.contains("--frobnicate")
            && err.lines().count() == 1,
        "{err}"
    );
    let (code, _, err) = run(mnist_bin(), &["mnist", "--frobnicate"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("modelarts-init mnist: "), "{err}");
    let (code, _, err) = run(mnist_bin(), &["--decode-memory", "1000"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--decode-memory 1000 is below 1 MiB"), "{err}");
}

#[test]
fn the_standalone_binary_serves_with_or_without_the_word_mnist() {
    let seven = repo().join("examples/images/seven.jpg");
    for with_word in [false, true] {
        let mut cmd = scrubbed_command(mnist_bin());
        if with_word {
            cmd.arg("mnist");
        }
        cmd.args(["--max-pixels", "1000000"]);
        let s = Server::launch(cmd);
        let (code, body) = s.classify(&seven);
        assert_eq!(
            (code, digit_of(&body)),
            (200, Some(7)),
            "mnist word {with_word}: {body}"
        );
    }
}
