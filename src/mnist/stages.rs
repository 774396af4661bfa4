//! `modelarts-init-mnist --bench-stages IMAGE [SECONDS [STAGE]]`: the per-image
//! stages of a request, timed one by one on one thread, on the very code
//! the server runs (for `bench/mnist.sh`, like `openssl speed`).
//!
//! Prints one line per stage, `name best_us median_us loops cpu_us` (best
//! and median of 5 repeats, per call, and the best repeat's CPU time per
//! call, which a busy machine inflates less): `decode` (JPEG/PNG with the server's
//! default limits, header probe included), `preprocess`, `tract` (inference alone, batch 1) and
//! `end_to_end` (what one request computes), then `predicted D`; with
//! STAGE, that stage only (for `perf stat` / `perf record`). Must not:
//! be reachable from the HTTP server.

use std::hint::black_box;
use std::time::{Duration, Instant};

use modelarts_init::imaging::decode::{decode_within, Limits};
use modelarts_init::imaging::preprocess::preprocess;

use crate::model::{Model, SIDE};

/// The server's decode with its default limits.
fn decode(
    bytes: &[u8],
) -> Result<image::DynamicImage, modelarts_init::imaging::decode::DecodeError> {
    decode_within(bytes, &Limits::default())
}

/// Runs the stage timings; returns the process exit code.
pub fn run(args: &[String]) -> u8 {
    let (Some(path), seconds) = (args.first(), args.get(1)) else {
        eprintln!("usage: modelarts-init-mnist --bench-stages IMAGE [SECONDS_PER_STAGE [STAGE]]");
        return 2;
    };
    let seconds: f64 = match seconds.map(|s| s.parse()) {
        None => 2.0,
        Some(Ok(s)) if s > 0.0 => s,
        Some(_) => {
            eprintln!("modelarts-init-mnist: SECONDS_PER_STAGE must be a positive number");
            return 2;
        }
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("modelarts-init-mnist: cannot read {path}: {e}");
            return 2;
        }
    };
    let (model, image) = match (Model::load(), decode(&bytes)) {
        (Ok(m), Ok(i)) => (m, i),
        (Err(e), _) => {
            eprintln!("modelarts-init-mnist: {e}");
            return 1;
        }
        (_, Err(e)) => {
            eprintln!("modelarts-init-mnist: {path}: {e}");
            return 2;
        }
    };
    let input = preprocess(&image);
    let only = args.get(2).map(String::as_str);
    let wanted = |name: &str| only.is_none_or(|o| o == name);
    let print = |name: &str, (best, median, loops, cpu): (Duration, Duration, u32, Duration)| {
        println!(
            "{name} {:.1} {:.1} {loops} {:.1}",
            best.as_secs_f64() * 1e6,
            median.as_secs_f64() * 1e6,
            cpu.as_secs_f64() * 1e6
        );
    };
    if wanted("decode") {
        print(
            "decode",
            time(seconds, || {
                let _ = black_box(decode(black_box(&bytes)));
            }),
        );
    }
    if wanted("preprocess") {
        print(
            "preprocess",
            time(seconds, || {
                black_box(preprocess(black_box(&image)));
            }),
        );
    }
    // Inference time does not depend on the pixels: without a digit, time
    // tract on a blank input all the same.
    let x = input.unwrap_or([0.0; SIDE * SIDE]);
    if wanted("tract") {
        print(
            if input.is_some() {
                "tract"
            } else {
                "tract_blank"
            },
            time(seconds, || {
                let _ = black_box(model.logits(black_box(&x)));
            }),
        );
    }
    match input {
        Some(input) if wanted("end_to_end") => {
            print(
                "end_to_end",
                time(seconds, || {
                    let digit = decode(black_box(&bytes))
                        .ok()
                        .and_then(|im| preprocess(&im))
                        .map(|x| model.predict(&x));
                    black_box(digit.map(|d| d.ok()));
                }),
            );
            match model.predict(&input) {
                Ok(d) => println!("predicted {d}"),
                Err(e) => println!("predicted error {e}"),
            }
        }
        Some(_) => {}
        None => println!("predicted none"),
    }
    0
}

/// This thread's CPU time.
fn cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a plain syscall writing into `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Times `f`: loops per repeat sized to last about `seconds / 5`; returns
/// (best, median) per call over 5 repeats, the loops per repeat, and the
/// least CPU time per call of a repeat.
fn time<F: FnMut()>(seconds: f64, mut f: F) -> (Duration, Duration, u32, Duration) {
    let mut n = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        let e = t.elapsed().as_secs_f64();
        if e >= 0.05 || n >= 1 << 24 {
            n = ((n as f64) * (seconds / 5.0) / e.max(1e-9)).max(1.0) as u32;
            break;
        }
        n *= 4;
    }
    let mut cpu = Duration::MAX;
    let mut runs: Vec<Duration> = (0..5)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_time());
            for _ in 0..n {
                f();
            }
            cpu = cpu.min((cpu_time() - c) / n);
            t.elapsed() / n
        })
        .collect();
    runs.sort();
    (runs[0], runs[2], n, cpu)
}
