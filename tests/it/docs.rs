//! The docs against the binary: every `modelarts-init ...` command line in
//! README.md, Dockerfile.example, docs/*.md and examples/kubernetes/
//! parses with the real binary, every flag they name is in `--help`, each
//! verb's `--help` works, and `check-config` accepts the docs' config.json
//! files.
//!
//! A command line is run with `--help` put after its flags (before `--`),
//! so that clap checks every flag and value up to there and then prints
//! help instead of starting anything; `check-config FILE` runs for real.
//! Lines marked `needs issue N` (`<!-- needs issue N -->` in Markdown, a
//! comment in YAML: flags of a branch not merged yet) are checked as soon
//! as `--help` lists all of their flags, and reported as waiting until
//! then. The README's two commands are among them, and the scripts it runs
//! (`bash .ci/run`) pass `bash -n`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::util::*;

/// A command line found in a doc: where, its words, and whether it waits
/// for another issue's flags.
#[derive(Debug)]
struct Found {
    place: String,
    words: Vec<String>,
    waits: bool,
}

fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md"), repo().join("Dockerfile.example")];
    for dir in ["docs", "examples/kubernetes"] {
        if let Ok(rd) = fs::read_dir(repo().join(dir)) {
            let mut more: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "md" || x == "yaml"))
                .collect();
            more.sort();
            files.extend(more);
        }
    }
    files
}

/// The commands of a shell `line`, each as its words (simple quoting), up
/// to a comment; `|`, `&&`, `||`, `;` and `&` separate commands.
fn shell_commands(line: &str) -> Vec<Vec<String>> {
    let (mut words, mut cur, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                any = true;
            }
            (None, ' ' | '\t') => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, '#') if cur.is_empty() => break,
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    words
        .split(|w| matches!(w.as_str(), "|" | "&&" | ";" | "&" | "||"))
        .filter(|c| !c.is_empty())
        .map(<[String]>::to_vec)
        .collect()
}

/// Whether `line` is marked as waiting for another issue's flags.
fn waits_for_issue(line: &str) -> bool {
    line.contains("needs issue ")
}

/// The invocation in `words`, if it runs modelarts-init: leading
/// `VAR=value` kept, the program replaced by "modelarts-init".
fn invocation(mut words: Vec<String>) -> Option<Vec<String>> {
    if words.first().is_some_and(|w| w == "exec") {
        words.remove(0);
    }
    let at = words.iter().position(|w| !is_assignment(w))?;
    let program = words[at].rsplit('/').next().unwrap_or_default();
    (program == "modelarts-init").then(|| {
        words[at] = "modelarts-init".into();
        words
    })
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
    })
}

/// Every command line in the docs: shell lines in code blocks, and
/// JSON-style arrays (Dockerfile CMD, YAML flow sequences).
fn command_lines() -> Vec<Found> {
    let mut found = Vec::new();
    for file in doc_files() {
        let text = fs::read_to_string(&file).unwrap();
        let name = file
            .strip_prefix(repo())
            .unwrap_or(&file)
            .display()
            .to_string();
        let yaml = file.extension().is_some_and(|x| x == "yaml");
        let mut in_code = false;
        let mut shell = false;
        for (n, line) in text.lines().enumerate() {
            let place = format!("{name}:{}", n + 1);
            let waits = waits_for_issue(line);
            let trimmed = line.trim();
            if !yaml && trimmed.starts_with("```") {
                in_code = !in_code;
                let lang = trimmed.trim_start_matches('`');
                shell = in_code && matches!(lang, "sh" | "bash" | "shell" | "console");
                continue;
            }
            if let Some(start) = line.find("[\"modelarts-init\"") {
                let end = line[start..].find(']').map(|e| start + e + 1);
                let array = &line[start..end.unwrap_or(line.len())];
                let words: Vec<String> = serde_json::from_str(array)
                    .unwrap_or_else(|e| panic!("{place}: not a JSON array ({e}): {array}"));
                found.push(Found {
                    place,
                    words,
                    waits,
                });
                continue;
            }
            if !(in_code && shell) {
                continue;
            }
            let line = trimmed.trim_start_matches("$ ");
            for words in shell_commands(line).into_iter().filter_map(invocation) {
                found.push(Found {
                    place: place.clone(),
                    words,
                    waits,
                });
            }
        }
    }
    found
}

/// The shell commands in the `sh` code blocks of `file`.
fn shell_block_commands(file: &Path) -> Vec<Vec<String>> {
    let text = fs::read_to_string(file).unwrap();
    let mut in_code = false;
    let mut shell = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("```") {
            in_code = !in_code;
            shell = in_code
                && matches!(
                    line.trim_start_matches('`'),
                    "sh" | "bash" | "shell" | "console"
                );
        } else if in_code && shell {
            out.extend(shell_commands(line.trim_start_matches("$ ")));
        }
    }
    out
}

/// The flags that `--help` of the wrap mode and of `mnist` list.
fn known_flags() -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for args in [&["--help"][..], &["mnist", "--help"], &["health", "--help"]] {
        let r = Init::new().args(args).run(secs(10));
        for word in r
            .stdout
            .text()
            .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
        {
            if word.starts_with("--") && word.len() > 2 {
                flags.insert(word.trim_end_matches(['.', ')', ':']).to_owned());
            }
        }
    }
    flags
}

/// Runs one documented command line: `check-config FILE` for real, any
/// other with `--help` after its flags. Its output, if it failed.
fn check(words: &[String]) -> Result<(), String> {
    let at = words.iter().position(|w| w == "modelarts-init").unwrap();
    let (env, args) = (&words[..at], &words[at + 1..]);
    let mut init = Init::new().current_dir(repo());
    for assignment in env {
        let (k, v) = assignment.split_once('=').unwrap();
        init = init.env(k, v);
    }
    let run = if args.first().is_some_and(|a| a == "check-config") {
        init.args(args)
    } else {
        let cut = args.iter().position(|a| a == "--").unwrap_or(args.len());
        init.args(&args[..cut]).arg("--help")
    };
    let mut r = run.run(secs(20));
    match r.expect_code(secs(1)) {
        0 => Ok(()),
        code => Err(format!("exit {code}\n{}", r.dump())),
    }
}

fn flags_of(words: &[String]) -> impl Iterator<Item = &str> {
    let cut = words.iter().position(|w| w == "--").unwrap_or(words.len());
    words[..cut]
        .iter()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split('=').next().unwrap())
}

#[test]
fn every_documented_command_line_parses_with_the_binary() {
    let lines = command_lines();
    let known = known_flags();
    let mut checked = 0;
    let mut failures = Vec::new();
    for f in &lines {
        if f.waits && !flags_of(&f.words).all(|flag| known.contains(flag)) {
            eprintln!("waiting for its issue's flags: {} {:?}", f.place, f.words);
            continue;
        }
        if let Err(e) = check(&f.words) {
            failures.push(format!("{}: {:?}: {e}", f.place, f.words));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The README's two commands and the docs' examples at least.
    assert!(
        checked >= 8,
        "only {checked} command lines found: {lines:?}"
    );
    eprintln!("{checked} documented command lines parse");
}

/// The README's two commands: the main job (`./target/release/modelarts-init
/// mnist`, with `--help` as above) and every test (`bash .ci/run`, whose
/// script must pass `bash -n`); every `bash SCRIPT` the docs show too.
#[test]
fn the_readmes_two_commands_parse() {
    let readme = shell_block_commands(&repo().join("README.md"));
    let main_job: Vec<_> = readme.iter().cloned().filter_map(invocation).collect();
    assert!(
        main_job
            .iter()
            .any(|w| w.get(1).is_some_and(|v| v == "mnist")),
        "no `modelarts-init mnist` command in the README: {readme:?}"
    );
    for words in &main_job {
        check(words).unwrap_or_else(|e| panic!("README: {words:?}: {e}"));
    }
    let scripts: Vec<_> = doc_files()
        .iter()
        .flat_map(|f| shell_block_commands(f))
        .filter(|w| w.first().is_some_and(|p| p == "bash") && w.len() >= 2)
        .map(|w| w[1].clone())
        .collect();
    assert!(
        scripts.iter().any(|s| s == ".ci/run"),
        "no `bash .ci/run` in the docs: {scripts:?}"
    );
    for script in &scripts {
        let path = repo().join(script);
        assert!(
            path.is_file(),
            "{script}: the docs run it, but it is not in the repo"
        );
        let mut r = Running::spawn({
            let mut c = scrubbed_command("bash");
            c.arg("-n").arg(&path);
            c
        });
        assert_eq!(r.expect_code(secs(10)), 0, "bash -n {script}\n{}", r.dump());
    }
}

/// Every `--flag` in the README's and docs' tables and prose is one that
/// `--help` lists (or one of another issue's, marked as waiting for it).
#[test]
fn every_flag_the_docs_name_is_in_help() {
    let known = known_flags();
    let mut unknown = Vec::new();
    for file in doc_files() {
        let text = fs::read_to_string(&file).unwrap();
        // ```text blocks hold diagrams and log lines (the binary's own).
        let mut in_text = false;
        for (n, line) in text.lines().enumerate() {
            if let Some(lang) = line.trim().strip_prefix("```") {
                in_text = !in_text && lang == "text";
                continue;
            }
            if in_text || waits_for_issue(line) {
                continue;
            }
            for flag in flags_in(line) {
                if !known.contains(&flag) && !OTHER_PROGRAMS_FLAGS.contains(&flag.as_str()) {
                    unknown.push(format!("{}:{}: {flag}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "flags not in --help:\n{}",
        unknown.join("\n")
    );
}

/// Flags of other programs that the docs show (gunicorn, cargo, curl,
/// docker, kubectl, wrk).
const OTHER_PROGRAMS_FLAGS: &[&str] = &[
    "--keep-alive", // gunicorn's too; ours is in --help anyway
    "--release",
    "--profile",
    "--bin",
    "--bins",
    "--locked",
    "--chdir",
    "--pythonpath",
    "--no-control-socket",
    "--target",
    "--workers",
    "--bind",
    "--timeout",
    "--graceful-timeout",
    "--interval",
    "--start-period",
    "--retries",
    "--no-cache-dir",
    "--no-install-recommends",
    "--pid",
    "--fork",
    "--mount-proc",
    "--latency",
    "--cacert",
    "--insecure",
    "--data-binary",
    "--max-time",
    "--fail",
    "--disable-pip-version-check",
    "--from",
    "--features",
    "--all-targets",
    "--sanitizer",
    "--jobs",
    "--help",
    "--version",
    "--bench-stages",
    "--dev",
    "--debug-assertions",
    "--rm",
    "--signal",
];

/// `--word` tokens in inline code and code blocks of a line.
fn flags_in(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while let Some(at) = line[i..].find("--") {
        let start = i + at;
        let before_ok =
            start == 0 || matches!(bytes[start - 1], b' ' | b'`' | b'(' | b'[' | b'"' | b'|');
        let end = line[start + 2..]
            .find(|c: char| !(c.is_ascii_lowercase() || c == '-' || c.is_ascii_digit()))
            .map_or(line.len(), |e| start + 2 + e);
        let flag = &line[start..end];
        if before_ok && flag.len() > 3 && flag.as_bytes()[2].is_ascii_lowercase() {
            out.push(flag.trim_end_matches('-').to_owned());
        }
        i = end.max(start + 2);
    }
    out
}

/// Each verb's `--help` exits 0 with its usage, and so do the mnist and
/// TLS binaries' own.
#[test]
fn each_verb_has_help() {
    for args in [
        &["--help"][..],
        &["mnist", "--help"],
        &["health", "--help"],
        &["check-config", "--help"],
    ] {
        let mut r = Init::new().args(args).run(secs(10));
        assert_eq!(r.expect_code(secs(1)), 0, "{args:?}\n{}", r.dump());
        assert!(r.stdout.text().contains("Usage:"), "{args:?}\n{}", r.dump());
    }
    for sibling in ["modelarts-init-mnist", "modelarts-init-tls"] {
        let mut r = Running::spawn({
            let mut c = scrubbed_command(Path::new(bin()).with_file_name(sibling));
            c.arg("--help");
            c
        });
        assert_eq!(r.expect_code(secs(10)), 0, "{sibling}\n{}", r.dump());
        assert!(
            r.stdout.text().contains("Usage:"),
            "{sibling}\n{}",
            r.dump()
        );
    }
}

/// `check-config` accepts every config.json the docs and examples ship
/// (the gunicorn app's plain and https ones, the wrapping guide's).
#[test]
fn check_config_accepts_the_docs_config_files() {
    let mut files = Vec::new();
    for dir in ["examples/gunicorn-app", "docs", "examples/kubernetes"] {
        if let Ok(rd) = fs::read_dir(repo().join(dir)) {
            files.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json")),
            );
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let mut r = Init::new().arg("check-config").arg(&f).run(secs(10));
        assert_eq!(r.expect_code(secs(1)), 0, "{}\n{}", f.display(), r.dump());
        assert!(r.stdout.text().contains("valid"), "{}", r.dump());
    }
}
