//! The memory budgets that concurrent requests share: the decodes'
//! (`--decode-memory`) and the uploads' (`--upload-memory`).
//!
//! Owns: admitting a request's need (a decode's memory estimated from its
//! image's header; an upload's size) once it fits beside the admitted
//! ones, in arrival order, and giving the room back when the admission is
//! dropped. Two budgets, not one: a request holds its upload while it
//! waits for its decode, so uploads and decodes in one budget could hold
//! all the room and wait for each other forever. Must not: admit more
//! than the whole budget at once (a larger need is admitted alone;
//! `decode::probe` refuses such decodes first, with 413) or block a thread
//! while waiting (it is async, and the front's request timeout bounds the
//! wait by dropping it).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A budget, counted in KiB (a semaphore's permits are u32).
pub struct Budget {
    room: Arc<Semaphore>,
    kib: u32,
}

/// Room held by one admission; given back on drop.
pub type Admission = OwnedSemaphorePermit;

impl Budget {
    /// A budget of `bytes` (rounded down to KiB, at least 1 KiB).
    pub fn new(bytes: u64) -> Budget {
        let kib = (bytes / 1024).clamp(1, u32::MAX as u64 >> 4) as u32;
        Budget {
            room: Arc::new(Semaphore::new(kib as usize)),
            kib,
        }
    }

    /// Waits until `bytes` fit beside the admitted needs; a need above the
    /// whole budget is admitted alone.
    /// (None only if the budget was closed, which nothing does.)
    pub async fn admit(&self, bytes: u64) -> Option<Admission> {
        let kib = bytes.div_ceil(1024).clamp(1, self.kib as u64) as u32;
        self.room.clone().acquire_many_owned(kib).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_decode_waits_until_the_room_is_given_back() {
        let budget = Budget::new(100 << 10);
        use futures_util::FutureExt;
        let first = budget.admit(60 << 10).await;
        let second = budget.admit(60 << 10);
        tokio::pin!(second);
        assert!(
            second.as_mut().now_or_never().is_none(),
            "60 + 60 KiB do not fit in 100"
        );
        drop(first);
        let second = second.await;
        assert!(second.is_some());
        // a smaller one fits beside it
        assert!(budget.admit(40 << 10).now_or_never().is_some());
    }
}
