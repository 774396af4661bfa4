//! Test inputs shared by the step families' unit tests: a seeded RNG,
//! random planes and a synthetic photo of a '0'.

use super::Grey;

/// xorshift32 in [0, 1).
pub(crate) struct Rng(pub(crate) u32);
impl Rng {
    pub(crate) fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        (self.0 >> 8) as f32 / (1u32 << 24) as f32
    }
}

/// A dark anti-aliased ring (a '0') plus a bar on lit paper with grain.
pub(crate) fn photo(w: usize, h: usize) -> Grey {
    let mut rng = Rng(7);
    let (cy, cx, rad, th) = (
        h as f32 * 0.45,
        w as f32 * 0.55,
        h as f32 * 0.22,
        h as f32 * 0.06,
    );
    let mut g = Grey::filled(w, h, 0.0);
    for y in 0..h {
        for x in 0..w {
            let dist = ((y as f32 - cy).powi(2) + (x as f32 - cx).powi(2)).sqrt();
            let ring = (th / 2.0 - (dist - rad).abs() + 0.5).clamp(0.0, 1.0);
            let paper = 0.85 - 0.25 * x as f32 / w as f32 + 0.02 * (rng.next() - 0.5);
            g.data[y * w + x] = paper * (1.0 - ring) + 0.12 * ring;
        }
    }
    g
}

/// A `w x h` plane of uniform values in [0, 1).
pub(crate) fn random(w: usize, h: usize, seed: u32) -> Grey {
    let mut rng = Rng(seed);
    Grey::new(w, h, (0..w * h).map(|_| rng.next()).collect())
}
