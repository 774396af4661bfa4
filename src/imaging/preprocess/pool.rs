//! Per-thread pools of recycled working buffers.
//!
//! Owns: `take`/`give` and the `Buf` guard. Why: glibc returns large freed
//! blocks to the OS, and faulting fresh pages in again cost more than all
//! the filters together (measured: ~100 faults per call). Must not: keep a
//! buffer larger than a working-size plane (a full-size photo's would pin
//! its memory), or more than a few per thread.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Largest buffer (elements) kept for reuse: every working-size plane fits
/// (at most (128 + 60) x (384 + 60)), a full-size photo does not.
const POOL_MAX_LEN: usize = 1 << 18;
/// Most buffers kept per element type and thread.
const POOL_MAX_COUNT: usize = 16;

/// Element types with a per-thread pool of recycled buffers. Why: glibc
/// returns large freed blocks to the OS, and faulting fresh pages in again
/// cost more than all the filters together (measured: ~100 faults per call).
pub(crate) trait Pooled: Copy + 'static {
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> Option<R>;
}

macro_rules! pooled {
    ($($t:ty),*) => {$(
        impl Pooled for $t {
            fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<$t>>) -> R) -> Option<R> {
                thread_local!(static POOL: RefCell<Vec<Vec<$t>>> = const { RefCell::new(Vec::new()) });
                POOL.try_with(|p| p.try_borrow_mut().ok().map(|mut p| f(&mut p))).ok().flatten()
            }
        }
    )*};
}
pooled!(f32, f64, u32, u8);

/// `len` copies of `fill`, in a recycled buffer when one is free (the
/// smallest that fits, else the largest).
pub(crate) fn take<T: Pooled>(len: usize, fill: T) -> Vec<T> {
    let mut v = take_any::<T>(len, false);
    v.clear();
    extend_to(&mut v, len, fill);
    v
}

/// `v.resize(len, value)` for a longer `len`, as copies of a block of
/// values: `Vec::resize` stored them one by one (about 4.5 instructions
/// each, some 40,000 values per upload; bench/mnist-cost.sh).
fn extend_to<T: Copy>(v: &mut Vec<T>, len: usize, value: T) {
    const BLOCK: usize = 256;
    debug_assert!(len >= v.len(), "extend_to only grows");
    if v.len() >= len {
        return;
    }
    let block = [value; BLOCK];
    v.reserve(len - v.len());
    while v.len() < len {
        let n = (len - v.len()).min(BLOCK);
        v.extend_from_slice(&block[..n]);
    }
}

/// A recycled buffer, as it was: of capacity >= `len` when one is free,
/// or with `filled`, the one with the fewest values to add to hold `len`.
fn take_any<T: Pooled>(len: usize, filled: bool) -> Vec<T> {
    T::with_pool(|pool| {
        let fit = if filled {
            // the least to fill: the shortest that holds `len` values, else
            // the longest
            (0..pool.len())
                .filter(|&i| pool[i].len() >= len)
                .min_by_key(|&i| pool[i].len())
                .or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()))
        } else {
            (0..pool.len())
                .filter(|&i| pool[i].capacity() >= len)
                .min_by_key(|&i| pool[i].capacity())
                .or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].capacity()))
        };
        fit.map(|i| pool.swap_remove(i))
    })
    .flatten()
    .unwrap_or_default()
}

/// `len` values of whatever a recycled buffer held (`T::default()` past
/// its old length): for buffers that are written before they are read,
/// without zeroing them first.
pub(crate) fn take_dirty<T: Pooled + Default>(len: usize) -> Vec<T> {
    let mut v = take_any::<T>(len, true);
    if v.len() > len {
        v.truncate(len);
    } else {
        extend_to(&mut v, len, T::default());
    }
    v
}

/// Returns a buffer to this thread's pool (or frees it).
pub(crate) fn give<T: Pooled>(v: Vec<T>) {
    if v.capacity() == 0 || v.capacity() > POOL_MAX_LEN {
        return;
    }
    T::with_pool(move |pool| {
        if pool.len() < POOL_MAX_COUNT {
            pool.push(v);
        }
    });
}

/// A scratch buffer from the pool, returned on drop.
pub(crate) struct Buf<T: Pooled>(pub(crate) Vec<T>);

impl<T: Pooled> Buf<T> {
    pub(crate) fn new(len: usize, fill: T) -> Buf<T> {
        Buf(take(len, fill))
    }

    /// `len` values to be overwritten before they are read (`take_dirty`).
    pub(crate) fn dirty(len: usize) -> Buf<T>
    where
        T: Default,
    {
        Buf(take_dirty(len))
    }
}

impl<T: Pooled> Deref for Buf<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Pooled> DerefMut for Buf<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T: Pooled> Drop for Buf<T> {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_to_is_resize() {
        for (have, len) in [
            (0, 0),
            (0, 1),
            (3, 255),
            (0, 256),
            (10, 257),
            (5, 1000),
            (7, 7),
        ] {
            let mut fast: Vec<u32> = (0..have as u32).collect();
            let mut slow = fast.clone();
            extend_to(&mut fast, len, 9);
            slow.resize(len, 9);
            assert_eq!(fast, slow, "{have} -> {len}");
        }
    }

    #[test]
    fn take_fills_and_take_dirty_has_the_length() {
        give(vec![1.5f32; 100]);
        let v = take(300, 2.5f32);
        assert_eq!(v, vec![2.5f32; 300]);
        give(v);
        let d = take_dirty::<f32>(500);
        assert_eq!(d.len(), 500);
        assert!(
            d[300..].iter().all(|&x| x == 0.0),
            "past the old values: zeros"
        );
        let short = take_dirty::<f32>(20);
        assert_eq!(short.len(), 20);
    }
}
