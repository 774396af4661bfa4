//! The compute threads: decoding, preprocessing and inference, one thread
//! per core, fed by one queue.
//!
//! Owns: the threads (`mnist-compute-N`) and the queue between the async
//! handlers and them. Each thread takes the next upload as soon as it has
//! answered the last, so the cores stay busy while requests wait, and it
//! keeps its warm caches and preprocessing buffers (`preprocess` pools them
//! per thread). A `spawn_blocking` per request behind a semaphore left a
//! core idle between jobs and rotated the work over a pool of cold threads
//! (bench/README.md: 158% of 200% busy with 16 uploads queued).
//! Must not: run on, or block, the async reactor threads; compute a job
//! whose client has gone away; keep a job's decode memory admission past
//! its computation.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use modelarts_init::imaging::decode::Header;
use tokio::sync::oneshot;

use crate::budget::Admission;
use crate::model::Predict;
use crate::pipeline::{self, Failure};

/// One upload to classify, its admission, and where its answer goes.
struct Job {
    image: Bytes,
    header: Header,
    admission: Admission,
    answer: oneshot::Sender<Result<u8, Failure>>,
}

/// The queue into the compute threads; cheap to share.
pub struct Compute {
    queue: crossbeam_channel::Sender<Job>,
}

/// The compute threads stopped (they only stop when the process exits).
#[derive(Debug, thiserror::Error)]
#[error("the compute threads have stopped")]
pub struct Stopped;

impl Compute {
    /// Starts `threads` compute threads running `model` at CPU priority
    /// `nice` (`set_nice`; a failure is logged once, as a warning).
    pub fn start(model: Arc<dyn Predict>, threads: usize, nice: u8) -> std::io::Result<Compute> {
        let (queue, jobs) = crossbeam_channel::unbounded::<Job>();
        for n in 0..threads.max(1) {
            let (model, jobs) = (model.clone(), jobs.clone());
            std::thread::Builder::new()
                .name(format!("mnist-compute-{n}"))
                .spawn(move || {
                    if let Err(e) = set_nice(nice) {
                        if n == 0 {
                            tracing::warn!(nice, error = %e,
                                "cannot set the compute threads' nice (below the process's own it \
                                 needs CAP_SYS_NICE); they keep the process's nice");
                        }
                    }
                    // Ends when every sender is gone.
                    for job in jobs {
                        run(job, &*model);
                    }
                })?;
        }
        Ok(Compute { queue })
    }

    /// Classifies one admitted upload on a compute thread.
    pub async fn classify(
        &self,
        image: Bytes,
        header: Header,
        admission: Admission,
    ) -> Result<Result<u8, Failure>, Stopped> {
        let (answer, result) = oneshot::channel();
        let job = Job {
            image,
            header,
            admission,
            answer,
        };
        self.queue.send(job).map_err(|_| Stopped)?;
        result.await.map_err(|_| Stopped)
    }
}

/// Computes one job, unless its client has gone away; the admission is
/// given back as soon as the decoded image is gone.
fn run(job: Job, model: &dyn Predict) {
    if job.answer.is_closed() {
        return;
    }
    // A panic in a decoder or in tract fails this upload (500), not the
    // thread.
    let digit = std::panic::catch_unwind(AssertUnwindSafe(|| {
        pipeline::classify(&job.image, &job.header, model)
    }))
    .unwrap_or(Err(Failure::Panic));
    drop(job.admission);
    let _ = job.answer.send(digit);
}

/// Gives this thread CPU priority `nice` (`--compute-nice`, default +19;
/// Linux: per thread), below the HTTP thread's, so that reading an upload
/// or writing an answer (a few µs of work each) preempts a computation
/// instead of waiting for the end of its time slice. At nice 0 the
/// answers of finished jobs waited behind running ones: p99 at c=16 was
/// 13-26% higher than at +19 in three paired runs of bench/mnist-nice.sh
/// (15-37% in five earlier ad-hoc ones; +5 fell in between, and +10
/// measured the same as +19 in an earlier stop, bench/README.md). The
/// price: a busy process of the same cgroup at nice 0 takes nearly all
/// the CPU from threads at +19 (beside two `yes` loops: 30-34 uploads/s
/// at +19, 1,367-1,745 at 0), hence the flag. Raising a nice needs no
/// privilege; going below the process's own (started under `nice -n 10`,
/// say) needs CAP_SYS_NICE.
fn set_nice(nice: u8) -> std::io::Result<()> {
    // SAFETY: plain syscalls on the calling thread's id.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    match unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, libc::c_int::from(nice)) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
