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
        "--compute-nice",
        "MODELARTS_INIT_COMPUTE_NICE",
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
        "--compute-nice",
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

/// Nice values of the threads of `pid` named `mnist-compute-N`.
fn compute_nices(pid: i32) -> Vec<i64> {
    let mut nices = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("mnist-compute-") {
            continue;
        }
        let stat = fs::read_to_string(task.path().join("stat")).unwrap();
        // after "pid (comm) ": state is field 3, nice field 19
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        nices.push(fields[16].parse().unwrap());
    }
    nices
}

/// `--compute-nice`: the compute threads run at 19 by default, at the
/// flag's or MODELARTS_INIT_COMPUTE_NICE's value otherwise, and still
/// answer; below the process's own nice without CAP_SYS_NICE they keep
/// the process's, with one warning; a value outside 0-19 is refused with
/// exit 2.
#[test]
fn the_compute_threads_run_at_the_configured_nice() {
    let seven = repo().join("examples/images/seven.jpg");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (env, args, want) in [
        (None, &[][..], 19),
        (None, &["--compute-nice", "4"][..], 4),
        (Some("0"), &[][..], 0),
    ] {
        let mut cmd = Init::new().arg("mnist").into_command();
        cmd.args(args);
        if let Some(v) = env {
            cmd.env("MODELARTS_INIT_COMPUTE_NICE", v);
        }
        let s = Server::launch(cmd);
        let (code, body) = s.classify(&seven);
        assert_eq!((code, digit_of(&body)), (200, Some(7)), "{body}");
        // each thread sets its own nice as it starts, which may come
        // after /health answers 200
        let pid = s.run.pid();
        assert!(
            wait_until(Duration::from_secs(5), || compute_nices(pid)
                == vec![want; cores]),
            "{env:?} {args:?}: {:?}",
            compute_nices(pid)
        );
    }
    // below the process's own nice without CAP_SYS_NICE: a warning, the
    // threads keep the process's nice, and the server serves
    let mut cmd = scrubbed_command("setpriv");
    cmd.args([
        "--inh-caps=-sys_nice",
        "--bounding-set=-sys_nice",
        "nice",
        "-n",
        "10",
    ])
    .args([mnist_bin(), "--compute-nice", "0"]);
    let s = Server::launch(cmd);
    let (code, body) = s.classify(&seven);
    assert_eq!((code, digit_of(&body)), (200, Some(7)), "{body}");
    let pid = s.run.pid();
    let warned = || {
        let log = s.run.dump();
        log.contains("WARN cannot set the compute threads' nice")
            && log.contains("CAP_SYS_NICE")
            && log.contains("nice=0")
    };
    assert!(
        wait_until(Duration::from_secs(5), warned),
        "{}",
        s.run.dump()
    );
    assert_eq!(compute_nices(pid), vec![10; cores]);
    // out of range either way (a negative nice is what `nice -n -5` takes)
    for bad in ["20", "-1"] {
        let (code, _, err) = run(mnist_bin(), &["--compute-nice", bad]);
        assert_eq!(code, 2, "{err}");
        let want = format!("'{bad}' for '--compute-nice <NICE>': use 0 to 19");
        assert!(err.contains(&want) && err.lines().count() == 1, "{err}");
    }
}
