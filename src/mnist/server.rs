//! The wiring of the mnist server: the front, the app, the model and the
//! R8 timeline, as wrap mode has them, without a child.
//!
//! Owns: the order of start-up (listen first, so that /health answers 503
//! while the model loads; then the model; then ready) and of the stop.
//! Must not: hold HTTP or decoding logic (`http`, `compute` do).

use std::sync::Arc;

use modelarts_init::config::MnistConfig;
use modelarts_init::http::{server, Front};
use modelarts_init::imaging::decode::Limits;
use modelarts_init::lifecycle;
use modelarts_init::supervisor::{signals, Supervised};
use modelarts_init::{timeline, Error};

use crate::compute::Compute;
use crate::http::Mnist;
use crate::model::Model;

/// Runs the mnist server to the end: the bundled model behind the same
/// front and the same R8 timeline as wrap mode, without a child. Exits 0
/// after a drain.
///
/// The front runs on one thread, as the init's does: it only moves bytes
/// and parses multipart bodies, while decoding, preprocessing and the model
/// run on the compute threads (one per core). One async runtime on one
/// thread is also what lets the init leave tokio's multi-threaded
/// scheduler out of its binary.
pub fn run(config: MnistConfig) -> Result<u8, Error> {
    modelarts_init::block_on(serve(config))
}

async fn serve(config: MnistConfig) -> Result<u8, Error> {
    let (lifecycle, feed) = lifecycle::channel();
    let signals = signals::listen()?;
    let listener = server::bind(config.front.listen)?;
    let limits = Limits {
        max_pixels: config.max_pixels,
        max_memory: config.decode_memory,
    };
    let front = Arc::new(Front::new(
        config.front.clone(),
        lifecycle.clone(),
        Mnist::new(config.max_image_bytes, limits, config.upload_memory),
    ));
    tracing::info!(listen = %config.front.listen, max_pixels = config.max_pixels,
        decode_memory = config.decode_memory, upload_memory = config.upload_memory,
        compute_nice = config.compute_nice,
        "listening; loading the model");
    let served = modelarts_init::start_front(listener, front.clone());
    // /health answers 503 until the model is loaded and optimized.
    let started = std::time::Instant::now();
    let model = tokio::task::spawn_blocking(Model::load)
        .await
        .map_err(|e| Error::Model(e.to_string()))?
        .map_err(|e| Error::Model(e.to_string()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let compute =
        Compute::start(Arc::new(model), cores, config.compute_nice).map_err(|source| {
            Error::Os {
                what: "cannot start the compute threads",
                source,
            }
        })?;
    front.app.set_compute(compute);
    tracing::info!(
        load_ms = started.elapsed().as_millis() as u64,
        "model loaded"
    );
    lifecycle.report_ready(true);
    let procs = Supervised::none();
    let front = Some(served.clone());
    timeline::run(config.timeline, None, procs, signals, feed, front).await;
    let _ = tokio::time::timeout(modelarts_init::FRONT_GRACE, served).await;
    Ok(0)
}
