//! The connection limit: how many client connections a front holds, and
//! making room at the limit.
//!
//! Owns: the default limit (what the open-files limit allows: each proxied
//! request holds two descriptors, and [`RESERVED_FDS`] stay free for the
//! readiness probe, the pool and `/health`), the registry of open
//! connections, closing the one idle the longest when a new client needs
//! its slot (as nginx does with its reusable connections: the one
//! documented exception to R7's 200 s), and logging each episode at the
//! limit once, with counts. Must not: accept or serve connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::conn::ConnClock;
use super::lock;

/// Descriptors kept free for the probe, the upstream pool, our logs and a
/// new client's `GET /health`.
pub const RESERVED_FDS: u64 = 64;

/// `--max-connections`, else what the open-files limit allows, in all:
/// (soft limit - [`RESERVED_FDS`]) / 2. Call after the soft limit was
/// raised to the hard one. Returns the limit and the open-files limit it
/// came from, if it did.
pub fn connection_limit(configured: Option<usize>) -> (usize, Option<u64>) {
    use nix::sys::resource::{getrlimit, Resource};
    if let Some(n) = configured {
        return (n, None);
    }
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    let n = (soft.saturating_sub(RESERVED_FDS) / 2).clamp(1, usize::MAX as u64 / 2);
    (n as usize, Some(soft))
}

/// The open connections of one front.
#[derive(Debug, Default)]
pub struct Registry {
    conns: Mutex<HashMap<u64, Arc<ConnClock>>>,
    next: AtomicU64,
}

impl Registry {
    /// Adds a connection; its id, for [`Registry::remove`].
    pub fn add(&self, clock: Arc<ConnClock>) -> u64 {
        let id = self.next.fetch_add(1, Relaxed);
        lock(&self.conns).insert(id, clock);
        id
    }

    pub fn remove(&self, id: u64) {
        lock(&self.conns).remove(&id);
    }

    /// Asks the connection idle the longest to close; false if every one is
    /// busy.
    pub fn evict_idlest(&self) -> bool {
        let conns = lock(&self.conns);
        let victim = conns
            .values()
            .filter_map(|c| c.idle_since().map(|since| (since, c)))
            .min_by_key(|(since, _)| *since);
        match victim {
            Some((_, c)) => {
                c.evict();
                true
            }
            None => false,
        }
    }
}

/// A stretch of time at the limit (or of failing accepts): logged when it
/// starts and when it ends, with what happened in between, never per event.
#[derive(Debug, Default)]
pub struct Episode {
    since: Option<Instant>,
    /// Events of the first kind (idle connections closed; failed accepts).
    pub first: u64,
    /// Events of the second kind (times no connection was idle).
    pub second: u64,
}

impl Episode {
    /// Notes that the episode goes on; true if this starts it.
    pub fn begin(&mut self) -> bool {
        self.since
            .replace(self.since.unwrap_or_else(Instant::now))
            .is_none()
    }

    /// Ends the episode, if one was going on: its length in milliseconds
    /// and counts.
    pub fn end(&mut self) -> Option<(u64, u64, u64)> {
        let since = self.since.take()?;
        let counts = (
            std::mem::take(&mut self.first),
            std::mem::take(&mut self.second),
        );
        Some((since.elapsed().as_millis() as u64, counts.0, counts.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_connection_idle_the_longest_is_closed_first() {
        let r = Registry::default();
        let clocks: Vec<Arc<ConnClock>> = (0..3)
            .map(|_| Arc::new(ConnClock::new(Duration::from_secs(200), None)))
            .collect();
        for c in &clocks {
            r.add(c.clone());
        }
        // The middle one has a request in progress; the last has been idle
        // since its first moment, as the first, but opened later.
        let _busy = clocks[1].begin();
        assert!(r.evict_idlest());
        assert!(
            clocks[0].idle_since().is_none(),
            "the oldest idle one goes first"
        );
        assert!(r.evict_idlest());
        assert!(clocks[2].idle_since().is_none());
        assert!(!r.evict_idlest(), "only a busy one is left");
    }

    #[test]
    fn episodes_start_once_and_report_their_counts() {
        let mut e = Episode::default();
        assert_eq!(e.end(), None);
        assert!(e.begin());
        e.first += 1;
        assert!(!e.begin());
        e.first += 1;
        e.second += 1;
        let (_, first, second) = e.end().unwrap();
        assert_eq!((first, second), (2, 1));
        assert!(e.begin(), "a new episode");
    }

    #[test]
    fn the_default_leaves_room_for_two_descriptors_per_connection() {
        let (n, nofile) = connection_limit(None);
        let nofile = nofile.unwrap();
        assert_eq!(n as u64, (nofile - RESERVED_FDS) / 2);
        assert_eq!(connection_limit(Some(7)), (7, None));
    }
}
