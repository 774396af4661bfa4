//! Flag parsing: `cli::parse_duration`, `cli::parse_backoff`, `cli::bytes`
//! and `cli::whole` on the input as text, and `cli::parse` then
//! `config::Mode::from_cli` on an argv made of the input's NUL-separated
//! parts (after "modelarts-init"), as `main` does. Whatever the argv, no
//! panic, and every usage error renders to the text that
//! `report_usage_error` reduces to one line.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;
use modelarts_init::cli;
use modelarts_init::config::Mode;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(d) = cli::parse_duration(text) {
            assert!(d.as_secs_f64().is_finite());
        }
        if let Ok((min, max)) = cli::parse_backoff(text) {
            assert!(min <= max);
        }
        if let Ok(n) = cli::bytes::<u64>(1)(text) {
            assert!(n >= 1);
        }
        if let Ok(n) = cli::whole::<u8>(0, Some(19))(text) {
            assert!(n <= 19);
        }
    }
    let argv = std::iter::once(OsString::from("modelarts-init")).chain(
        data.split(|&b| b == 0)
            .map(|a| OsString::from_vec(a.to_vec())),
    );
    match cli::parse(argv) {
        Ok(parsed) => {
            // Validation only: reads a --config file or the user database
            // at most, starts nothing.
            let _ = Mode::from_cli(parsed).map_err(|e| e.to_string());
        }
        Err(e) => {
            // What report_usage_error reduces to its first line.
            assert!(!e.render().to_string().trim().is_empty());
        }
    }
});
