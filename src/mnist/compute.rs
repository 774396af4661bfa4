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
//! Must not: run on, or block, the async reactor threads; a job whose
//! client has gone away is skipped, not computed.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::app::{decode_and_preprocess, UploadError};
use crate::model::Model;

/// One upload to classify and where its answer goes.
struct Job {
    image: Bytes,
    answer: oneshot::Sender<Result<u8, UploadError>>,
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
    /// Starts `threads` compute threads running `model`.
    pub fn start(model: Model, threads: usize) -> std::io::Result<Compute> {
        let model = Arc::new(model);
        let (queue, jobs) = crossbeam_channel::unbounded::<Job>();
        for n in 0..threads.max(1) {
            let (model, jobs) = (model.clone(), jobs.clone());
            std::thread::Builder::new()
                .name(format!("mnist-compute-{n}"))
                .spawn(move || {
                    lower_priority();
                    // Ends when every sender is gone.
                    for job in jobs {
                        if job.answer.is_closed() {
                            continue;
                        }
                        // A panic in a decoder or in tract fails this
                        // upload (500), not the thread.
                        let digit = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            decode_and_preprocess(&job.image).and_then(|x| {
                                model
                                    .predict(&x)
                                    .map_err(|e| UploadError::Corrupt(e.to_string()))
                            })
                        }))
                        .unwrap_or_else(|_| {
                            tracing::error!("panic while classifying an upload; answered 500");
                            Err(UploadError::Internal)
                        });
                        let _ = job.answer.send(digit);
                    }
                })?;
        }
        Ok(Compute { queue })
    }

    /// Classifies one uploaded image on a compute thread.
    pub async fn classify(&self, image: Bytes) -> Result<Result<u8, UploadError>, Stopped> {
        let (answer, result) = oneshot::channel();
        self.queue
            .send(Job { image, answer })
            .map_err(|_| Stopped)?;
        result.await.map_err(|_| Stopped)
    }
}

/// Gives this thread the lowest CPU priority (nice +19, Linux: per
/// thread), below the async workers, so that reading an upload or writing
/// an answer (a few µs of work each) preempts a computation instead of
/// waiting for the end of its time slice: without this, the answers of
/// finished jobs waited behind running ones and p99 grew by a third
/// (bench/README.md; +10 measured the same as +19).
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread's id.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 19) };
}
