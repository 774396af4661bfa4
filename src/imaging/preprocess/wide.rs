//! The preprocessing compiled twice: for the x86-64 baseline (SSE2) and
//! for AVX2, chosen at run time (`steps::preprocess` and
//! `preprocess_grey_traced` call their `#[target_feature(enable =
//! "avx2")]` copy when `avx2()` says so).
//!
//! Owns: the CPU check. The steps' loops are written to auto-vectorise,
//! and they are `#[inline(always)]` so that they are compiled into the
//! AVX2 copy too: twice the lanes, the same results bit for bit (Rust
//! never fuses a multiply and an add, and no step uses an operation that
//! rounds differently with AVX2). Must not: enable FMA or any feature
//! that changes a result, or let AVX2 code run on a CPU without it.

/// Whether this CPU runs AVX2 (detected once; std caches it).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}
