//! config.json parsing (`ModelConfig::parse`), as `--config` and
//! `check-config` do it: arbitrary text either parses, and then describes
//! itself and gives a patience, or gives a one-line error naming the field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelarts_init::fuzzing::ModelConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ModelConfig::parse(text) {
        Ok(config) => {
            let described = config.describe();
            assert!(!described.is_empty());
            if let Some(health) = &config.health {
                let _ = health.patience_seconds();
            }
        }
        Err(message) => {
            assert!(!message.is_empty());
            assert!(!message.contains('\n'), "a multi-line error: {message:?}");
        }
    }
});
