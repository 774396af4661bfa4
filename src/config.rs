//! Validated settings, built from the parsed command line.
//!
//! Owns: every check that needs more than one flag or a lookup (users),
//! turning `cli`'s raw values into what the rest of the crate runs on.
//! Must not: start anything.

use crate::cli::WrapArgs;
use crate::error::Error;
use crate::shutdown::Timeline;
use crate::supervisor::{ChildSpec, Credentials};

/// Everything wrap mode needs.
#[derive(Debug, Clone)]
pub struct WrapConfig {
    pub child: ChildSpec,
    pub signal_group: bool,
    pub timeline: Timeline,
}

impl WrapConfig {
    pub fn from_args(args: &WrapArgs) -> Result<WrapConfig, Error> {
        let sup = &args.supervisor;
        let user = sup.user.as_deref().map(Credentials::resolve).transpose()?;
        Ok(WrapConfig {
            child: ChildSpec {
                command: args.command.clone(),
                keep_stderr: sup.keep_stderr,
                user,
                env: Vec::new(),
            },
            signal_group: sup.signal_group,
            timeline: Timeline {
                drain_delay: sup.timeline.drain_delay,
                stop_timeout: sup.timeline.stop_timeout,
            },
        })
    }
}
