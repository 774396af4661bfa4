//! Payload files for the integration tests: pseudo-random bytes, the
//! example app's `/bytes` pattern, and their sha256 (by `sha256sum`).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;

/// The sha256 of a file, in hex (from `sha256sum`).
pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// `n` pseudo-random bytes (xorshift64*, fixed seed) into `path`.
pub fn write_random_file(path: &Path, n: usize) {
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = n;
    while left > 0 {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let k = left.min(8);
        w.write_all(&v[..k]).unwrap();
        left -= k;
    }
    w.flush().unwrap();
}

/// What the app's `/bytes?n=N` sends: byte i is i % 251.
pub fn write_pattern_file(path: &Path, n: usize) {
    let block: Vec<u8> = (0..251 * 256).map(|i| (i % 251) as u8).collect();
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len());
        w.write_all(&block[..k]).unwrap();
        left -= k;
    }
    w.flush().unwrap();
}
