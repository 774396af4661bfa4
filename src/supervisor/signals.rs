//! Every decision about a signal that reaches modelarts-init, in one table.
//!
//! Owns: which signals we catch and what each one means. Must not: act on
//! them; the timeline carries out the decision.
//!
//! | signal                                 | before the stop        | once stopping          |
//! |----------------------------------------|------------------------|------------------------|
//! | CHLD                                   | reap                   | reap                   |
//! | TERM                                   | start the R8 drain     | fast stop              |
//! | INT                                    | fast stop              | fast stop              |
//! | TSTP                                   | forward, then stop us  | forward, then stop us  |
//! | HUP QUIT USR1 USR2 WINCH TTIN TTOU     | forward                | forward                |
//! | CONT ALRM PWR XCPU XFSZ VTALRM PROF IO | forward                | forward                |
//! | STKFLT URG, SIGRTMIN..=SIGRTMAX        | forward                | forward                |
//! | PIPE                                   | ignored                | ignored                |
//! | ILL FPE SEGV BUS TRAP ABRT SYS         | default action         | default action         |
//! | KILL STOP                              | cannot be caught       | cannot be caught       |
//!
//! Why:
//! - SIGTERM is how the platform (and `docker stop`, and Kubernetes) asks a
//!   container to stop. Rule R8 wants service to go on for 60 s first,
//!   because the load balancer keeps routing here for a while; so SIGTERM is
//!   NOT forwarded at once, it starts the drain. At its end the child gets
//!   `--stop-signal` (TERM unless set: php-fpm and nginx stop gracefully on
//!   QUIT, as Docker's STOPSIGNAL knows).
//! - SIGINT is a person at a terminal (Ctrl-C), and a second SIGTERM is an
//!   operator who means it: both skip what remains of the drain; the child
//!   gets INT for INT and the stop signal for TERM at once (the stop
//!   timeout still applies).
//! - Every other signal that can be sent with `kill` is passed on, so that
//!   nothing but SIGKILL and SIGSTOP can end or stop us and leave the child
//!   unsupervised (as tini does): HUP, USR1, USR2, TTIN, TTOU, QUIT, WINCH
//!   are gunicorn's control signals (reload, reopen logs, add or remove a
//!   worker, ...); PWR is how LXC asks a container to stop; XCPU and XFSZ
//!   come from resource limits; the real-time signals are the application's
//!   own. They go to the child alone, or to its whole process group with
//!   `--signal-group`.
//! - TSTP (Ctrl-Z) goes to the child, then we stop ourselves, so that a
//!   shell's job control sees the job stopped (as dumb-init does); CONT
//!   resumes us (the kernel does that) and is forwarded. The kernel does not
//!   let PID 1 of a namespace stop itself, so there we only forward. TTIN
//!   and TTOU only forward: gunicorn uses them to add and remove workers,
//!   and stopping would freeze the front and `/health` with it.
//! - PIPE stays ignored (Rust's default), since our own sockets raise it. The
//!   synchronous faults keep their default action: they mean a bug in us,
//!   and a core dump is worth more than pretending.
//! - Catching a signal also matters for PID 1: the kernel drops signals that
//!   PID 1 has left at their default action, so without a handler SIGTERM
//!   would do nothing at all.

use libc::{SIGPWR, SIGSTKFLT};
use signal_hook::consts::signal::*;
use signal_hook_tokio::Signals;

use crate::error::Error;

/// The standard signals passed on to the child as they come (the real-time
/// ones are added by [`forwarded`]).
pub(crate) const FORWARDED: [i32; 17] = [
    SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGTTIN, SIGTTOU, SIGCONT, SIGALRM, SIGPWR,
    SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGIO, SIGSTKFLT, SIGURG,
];

/// What to do about one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Collect exit statuses.
    Reap,
    /// Start the R8 drain.
    Drain,
    /// Skip the rest of the drain; the child gets this signal now (or the
    /// stop signal, for TERM).
    FastStop(i32),
    /// Pass this signal on to the child (or its group).
    Forward(i32),
    /// Pass it on, then stop ourselves (TSTP).
    ForwardThenSuspend(i32),
}

/// Every signal passed on as it comes: [`FORWARDED`] and the real-time
/// signals, whose range only libc knows at run time (glibc keeps the first
/// two for itself).
pub(crate) fn forwarded() -> impl Iterator<Item = i32> {
    FORWARDED
        .into_iter()
        .chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
}

/// The table above; `stopping` once a stop has begun.
pub(crate) fn decide(signal: i32, stopping: bool) -> Option<Action> {
    match signal {
        SIGCHLD => Some(Action::Reap),
        SIGTERM if !stopping => Some(Action::Drain),
        SIGTERM | SIGINT => Some(Action::FastStop(signal)),
        SIGTSTP => Some(Action::ForwardThenSuspend(signal)),
        s if forwarded().any(|f| f == s) => Some(Action::Forward(s)),
        _ => None,
    }
}

/// Starts catching every signal in the table. Call this before the child
/// is spawned, so that no SIGCHLD or SIGTERM can slip in between.
///
/// CHLD, TERM and INT are required. A signal to forward that cannot be
/// caught here (a debugger or valgrind may keep a real-time one for
/// itself) is left at its default and named in the log; it does not stop
/// the init.
pub fn listen() -> Result<Signals, Error> {
    let signals = Signals::new([SIGCHLD, SIGTERM, SIGINT]).map_err(|source| Error::Os {
        what: "cannot install signal handlers",
        source,
    })?;
    let handle = signals.handle();
    let refused: Vec<String> = std::iter::once(SIGTSTP)
        .chain(forwarded())
        .filter(|&sig| handle.add_signal(sig).is_err())
        .map(name)
        .collect();
    if !refused.is_empty() {
        tracing::warn!(signals = ?refused, "cannot catch these signals here: they are not forwarded");
    }
    Ok(signals)
}

/// A signal's name for logs and messages: `SIGTERM`, `SIGRTMIN+3`.
pub(crate) fn name(signal: i32) -> String {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => s.as_str().to_owned(),
        Err(_) if signal == min => "SIGRTMIN".to_owned(),
        Err(_) if signal == max => "SIGRTMAX".to_owned(),
        Err(_) if (min..max).contains(&signal) => format!("SIGRTMIN+{}", signal - min),
        Err(_) => format!("signal {signal}"),
    }
}

/// Parses a signal for `--stop-signal`: `TERM`, `SIGQUIT`, `quit`, `3`,
/// `RTMIN+2`.
pub(crate) fn parse(text: &str) -> Result<i32, String> {
    let upper = text.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let number = if let Ok(n) = bare.parse::<i32>() {
        Some(n)
    } else if let Some(rest) = bare.strip_prefix("RTMIN") {
        rest.strip_prefix('+')
            .map_or(Ok(0), str::parse::<i32>)
            .ok()
            .and_then(|n| min.checked_add(n))
    } else if let Some(rest) = bare.strip_prefix("RTMAX") {
        rest.strip_prefix('-')
            .map_or(Ok(0), str::parse::<i32>)
            .ok()
            .and_then(|n| max.checked_sub(n))
    } else {
        format!("SIG{bare}")
            .parse::<nix::sys::signal::Signal>()
            .ok()
            .map(|s| s as i32)
    };
    match number {
        Some(n) if n == SIGKILL || n == SIGSTOP => Err(format!(
            "{text:?}: the stop signal must be one the child can handle, not {}",
            name(n)
        )),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a signal; use a name such as TERM, QUIT or INT, or a number"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(decide(SIGTERM, false), Some(Action::Drain));
        assert_eq!(decide(SIGTERM, true), Some(Action::FastStop(SIGTERM)));
        assert_eq!(decide(SIGINT, false), Some(Action::FastStop(SIGINT)));
        assert_eq!(decide(SIGHUP, true), Some(Action::Forward(SIGHUP)));
        assert_eq!(decide(SIGCHLD, false), Some(Action::Reap));
        assert_eq!(
            decide(SIGTSTP, false),
            Some(Action::ForwardThenSuspend(SIGTSTP))
        );
        for s in [
            SIGPIPE, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT, SIGSYS,
        ] {
            assert_eq!(decide(s, false), None, "{}", name(s));
        }
        for s in forwarded() {
            assert_eq!(decide(s, false), Some(Action::Forward(s)), "{}", name(s));
        }
        let rt: Vec<i32> = forwarded().filter(|&s| s >= libc::SIGRTMIN()).collect();
        assert_eq!(rt.first(), Some(&libc::SIGRTMIN()));
        assert_eq!(rt.last(), Some(&libc::SIGRTMAX()));
    }

    #[test]
    fn every_catchable_signal_has_a_row() {
        // 1..=31 and the real-time range: what is neither caught nor left
        // at its default on purpose would end or stop us.
        let by_default = [
            SIGKILL, SIGSTOP, SIGPIPE, SIGILL, SIGFPE, SIGSEGV, SIGBUS, SIGTRAP, SIGABRT, SIGSYS,
        ];
        for s in (1..32).chain(libc::SIGRTMIN()..=libc::SIGRTMAX()) {
            assert!(
                decide(s, false).is_some() || by_default.contains(&s),
                "{} has no row",
                name(s)
            );
        }
    }

    #[test]
    fn names_and_parsing() {
        assert_eq!(name(SIGTERM), "SIGTERM");
        assert_eq!(name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
        assert_eq!(name(libc::SIGRTMAX()), "SIGRTMAX");
        for (text, sig) in [
            ("TERM", SIGTERM),
            ("sigquit", SIGQUIT),
            ("Quit", SIGQUIT),
            ("3", SIGQUIT),
            ("INT", SIGINT),
            ("RTMIN+2", libc::SIGRTMIN() + 2),
            ("SIGRTMAX", libc::SIGRTMAX()),
        ] {
            assert_eq!(parse(text), Ok(sig), "{text}");
        }
        for bad in [
            "KILL",
            "9",
            "STOP",
            "nope",
            "0",
            "200",
            "RTMIN+x",
            "",
            "RTMIN+2147483647",
            "RTMAX-2147483647",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
