//! The restart policy (`--restart`): whether a child that exited is started
//! again, and after how long.
//!
//! Owns: the backoff (doubling from `min` to `max`, back to `min` once the
//! child has been ready for [`STABLE_AFTER`]) and the budget
//! (`--max-restarts` within `--restart-window`). Must not: act; the machine
//! turns a decision into a phase.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::supervisor::ExitStatus;

/// A child ready this long has proved it can run: the next failure starts
/// the backoff from its minimum again.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// When to start the child again after it exits (`--restart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum When {
    /// Never: our exit status is the child's (the platform restarts
    /// containers, and a dying server should stay visible).
    Never,
    /// When it exits with a non-zero code or is killed by a signal.
    OnFailure,
    /// Whenever it exits.
    Always,
}

/// `--restart`, `--restart-backoff`, `--max-restarts`, `--restart-window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub when: When,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub max_restarts: u32,
    pub window: Duration,
}

impl Policy {
    /// No restarts at all.
    pub const NEVER: Policy = Policy {
        when: When::Never,
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(30),
        max_restarts: 5,
        window: Duration::from_secs(600),
    };
}

/// What to do after the child exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The policy does not restart on this status.
    Exit,
    /// Restart after this delay.
    Restart(Duration),
    /// The policy would restart, but `max_restarts` restarts already
    /// happened within the window.
    GiveUp { restarts: u32, window: Duration },
}

/// The restart history.
#[derive(Debug, Clone)]
pub struct Restarts {
    policy: Policy,
    /// When each restart within the window was decided.
    recent: VecDeque<Instant>,
    next_delay: Duration,
    total: u32,
}

impl Restarts {
    pub fn new(policy: Policy) -> Restarts {
        Restarts {
            policy,
            recent: VecDeque::new(),
            next_delay: policy.backoff_min,
            total: 0,
        }
    }

    /// Restarts decided so far.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// The child has been ready for [`STABLE_AFTER`]: the backoff starts
    /// over.
    pub fn stable(&mut self) {
        self.next_delay = self.policy.backoff_min;
    }

    /// The child exited with `status` at `now`.
    pub fn decide(&mut self, now: Instant, status: ExitStatus) -> Decision {
        let wanted = match self.policy.when {
            When::Never => false,
            When::OnFailure => status != ExitStatus::Code(0),
            When::Always => true,
        };
        if !wanted {
            return Decision::Exit;
        }
        while let Some(&first) = self.recent.front() {
            if now.saturating_duration_since(first) < self.policy.window {
                break;
            }
            self.recent.pop_front();
        }
        if self.recent.len() >= self.policy.max_restarts as usize {
            return Decision::GiveUp {
                restarts: self.recent.len() as u32,
                window: self.policy.window,
            };
        }
        let delay = self.next_delay;
        self.next_delay = (delay * 2).min(self.policy.backoff_max);
        self.recent.push_back(now);
        self.total += 1;
        Decision::Restart(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn policy(when: When) -> Policy {
        Policy {
            when,
            backoff_min: s(1),
            backoff_max: s(30),
            max_restarts: 5,
            window: s(600),
        }
    }

    #[test]
    fn backoff_doubles_to_its_maximum() {
        let mut r = Restarts::new(Policy {
            max_restarts: 100,
            ..policy(When::Always)
        });
        let t = Instant::now();
        let delays: Vec<_> = (0..8)
            .map(|i| r.decide(t + s(i), ExitStatus::Code(1)))
            .collect();
        let want: Vec<_> = [1, 2, 4, 8, 16, 30, 30, 30]
            .into_iter()
            .map(|d| Decision::Restart(s(d)))
            .collect();
        assert_eq!(delays, want);
        assert_eq!(r.total(), 8);
    }

    #[test]
    fn a_stable_child_starts_the_backoff_over() {
        let mut r = Restarts::new(policy(When::Always));
        let t = Instant::now();
        assert_eq!(r.decide(t, ExitStatus::Code(1)), Decision::Restart(s(1)));
        assert_eq!(r.decide(t, ExitStatus::Code(1)), Decision::Restart(s(2)));
        r.stable();
        assert_eq!(r.decide(t, ExitStatus::Code(1)), Decision::Restart(s(1)));
    }

    #[test]
    fn on_failure_restarts_failures_only() {
        let mut r = Restarts::new(policy(When::OnFailure));
        let t = Instant::now();
        assert_eq!(r.decide(t, ExitStatus::Code(0)), Decision::Exit);
        assert_eq!(r.decide(t, ExitStatus::Code(3)), Decision::Restart(s(1)));
        assert_eq!(r.decide(t, ExitStatus::Signal(9)), Decision::Restart(s(2)));
        let mut never = Restarts::new(policy(When::Never));
        assert_eq!(never.decide(t, ExitStatus::Code(3)), Decision::Exit);
    }

    #[test]
    fn max_restarts_within_the_window_then_give_up() {
        let mut r = Restarts::new(Policy {
            max_restarts: 2,
            window: s(60),
            ..policy(When::Always)
        });
        let t = Instant::now();
        assert!(matches!(
            r.decide(t, ExitStatus::Code(1)),
            Decision::Restart(_)
        ));
        assert!(matches!(
            r.decide(t + s(10), ExitStatus::Code(1)),
            Decision::Restart(_)
        ));
        assert_eq!(
            r.decide(t + s(20), ExitStatus::Code(1)),
            Decision::GiveUp {
                restarts: 2,
                window: s(60)
            }
        );
        // Once the first restart is older than the window, one more is allowed.
        assert!(matches!(
            r.decide(t + s(61), ExitStatus::Code(1)),
            Decision::Restart(_)
        ));
    }
}
