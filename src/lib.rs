//! modelarts-init: a PID-1 init wrapper for model-serving containers.
//!
//! It runs any server as its child and makes the container meet the
//! ModelArts runtime contract (rules R1-R11 in `shared/spec`): reaps every
//! zombie, forwards signals, merges the child's stderr into stdout (R4),
//! owns port 8080 with a streaming proxy and a synthesized `/health` (R1,
//! R3, R7), and on SIGTERM follows rule R8's drain (60 s of service, then
//! SIGTERM to the child, then SIGKILL before 90 s).
//!
//! Module map:
//! - [`cli`]: flags and `MODELARTS_INIT_*` variables, parsed from a slice.
//! - [`config`]: validated settings built from the flags and config.json.
//! - [`model_config`]: the model's ModelArts config.json.
//! - [`error`]: the error enum; exit codes are decided there, once.
//! - [`logging`]: `tracing` on stdout, text or JSON, non-blocking.
//! - [`lifecycle`]: the one state machine everybody reads.
//! - [`supervisor`]: spawn, signal, reap and kill the child.
//! - [`shutdown`]: the R8 timeline.
//! - [`http`]: the front on port 8080: server, proxy, health, status.
//! - [`imaging`]: decoding and preprocessing for the mnist server (the
//!   init never calls it, so the linker drops it from the init).
//!
//! The mnist server is a second binary, `modelarts-init-mnist` (its code is
//! in `src/mnist/`, on top of this library); see [`exec_mnist`].

pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod imaging;
pub mod lifecycle;
pub mod logging;
pub mod model_config;
pub mod shutdown;
pub mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};

pub use error::Error;

use config::{Mode, WrapConfig};
use http::{proxy::Proxy, server, status, Front};
use lifecycle::Lifecycle;
use supervisor::{reaper, signals, Child, ExitStatus};

/// How long, after the timeline ends, open connections get to send the
/// answers they still owe (503s) before the process exits.
pub const FRONT_GRACE: Duration = Duration::from_millis(500);

/// Runs `mode` to the end and returns the process exit code.
pub fn run(mode: Mode) -> Result<u8, Error> {
    match mode {
        // One thread in both wrap modes. Pure init only waits for signals
        // and timers. The proxy only moves bytes between sockets: one
        // thread costs less CPU per request than a work-stealing pool
        // (bench/README.md), and the server it fronts is on the other cores.
        Mode::Wrap(c) => block_on(false, wrap(c)),
        // The model lives in its own binary, so that the init, which runs
        // in every container, does not carry tract's 20 MB of code (it
        // would triple its resident memory); see `mnist::exec`.
        Mode::Mnist(_) => exec_mnist(),
        Mode::Health(args) => block_on(false, async move {
            match http::client::get_status(&args.url, args.timeout).await {
                Ok(s) if s == hyper::StatusCode::OK => Ok(0),
                Ok(s) => {
                    eprintln!("modelarts-init: {} answered {s}", args.url);
                    Ok(1)
                }
                Err(message) => {
                    eprintln!("modelarts-init: {message}");
                    Ok(1)
                }
            }
        }),
        Mode::CheckConfig(path) => {
            let config = model_config::ModelConfig::load(&path)?;
            print!("{}: valid\n{}", path.display(), config.describe());
            Ok(0)
        }
    }
}

pub fn block_on<F: std::future::Future<Output = Result<u8, Error>>>(
    threads: bool,
    f: F,
) -> Result<u8, Error> {
    let mut builder = if threads {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = builder.enable_all().build().map_err(|source| Error::Os {
        what: "cannot start the async runtime",
        source,
    })?;
    let result = runtime.block_on(f);
    // Do not wait for work still running on blocking threads: the
    // timeline has already decided that we exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn wrap(config: WrapConfig) -> Result<u8, Error> {
    let lifecycle = Lifecycle::new();
    // Signals first: a SIGCHLD or SIGTERM between spawn and here would
    // otherwise be lost.
    let signals = signals::listen()?;
    match reaper::become_subreaper_unless_pid1() {
        Ok(true) => tracing::info!(
            pid = std::process::id(),
            "not PID 1: registered as child subreaper"
        ),
        Ok(false) => tracing::info!("running as PID 1"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot become a child subreaper; orphans will go to the real init")
        }
    }
    // The port is bound before the child starts, so that /health answers
    // 503 from the first moment.
    let front = match &config.proxy {
        Some(p) => {
            let (listener, extra) = server::bind_shared(p.front.listen, p.threads)?;
            let proxy = || Proxy::new(p.upstream, p.idle_timeout, p.front.max_body);
            let front = Arc::new(Front::new(p.front.clone(), lifecycle.clone(), proxy()));
            // More serving threads: each its own listener, front and pool.
            let extra: Vec<_> = extra
                .into_iter()
                .map(|l| (l, Arc::new(front.sibling(proxy()))))
                .collect();
            tracing::info!(listen = %p.front.listen, upstream = %p.upstream, health_path = %p.front.health_path, threads = p.threads, "listening");
            Some((listener, front, extra, p.probe.clone()))
        }
        None => None,
    };
    let child = Child::spawn(&config.child, config.signal_group)?;
    let served = match front {
        Some((listener, front, extra, probe)) => {
            if let Some(page) = &front.status {
                page.set_child(child.pid);
            }
            tokio::spawn(probe.run(lifecycle.clone()));
            start_fronts(listener, front, extra)?
        }
        None => {
            // Without a front there is no readiness to probe: a running
            // child is as ready as we can tell.
            lifecycle.set_ready(true);
            std::future::ready(()).boxed().shared()
        }
    };
    let status = shutdown::run(
        Some(child),
        signals,
        &lifecycle,
        config.timeline,
        served.clone(),
    )
    .await;
    let _ = tokio::time::timeout(FRONT_GRACE, served).await;
    Ok(exit_code(status))
}

/// Starts serving `front` (and, with a status page, logging its figures at
/// each lifecycle change). The returned future resolves once the front has
/// stopped and every connection is closed; it can be awaited more than once.
pub fn start_front<A: http::App>(
    listener: tokio::net::TcpListener,
    front: Arc<Front<A>>,
) -> Shared<BoxFuture<'static, ()>> {
    server::raise_nofile_limit();
    if front.status.is_some() {
        tokio::spawn(status::log_changes(front.clone()));
    }
    tokio::spawn(server::serve(listener, front))
        .map(|_| ())
        .boxed()
        .shared()
}

/// `start_front`, plus one thread per `extra` listener serving its front
/// on a single-threaded runtime of its own (nginx's worker model: no work
/// moves between threads). Resolves once every thread's front has stopped.
pub fn start_fronts<A: http::App>(
    listener: tokio::net::TcpListener,
    front: Arc<Front<A>>,
    extra: Vec<(std::net::TcpListener, Arc<Front<A>>)>,
) -> Result<Shared<BoxFuture<'static, ()>>, Error> {
    let mut done = vec![start_front(listener, front).boxed()];
    for (n, (listener, front)) in extra.into_iter().enumerate() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let os = |source| Error::Os {
            what: "cannot start a proxy thread",
            source,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(os)?;
        std::thread::Builder::new()
            .name(format!("proxy-{}", n + 1))
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => server::serve(listener, front).await,
                        Err(e) => tracing::error!(error = %e, "proxy thread cannot listen"),
                    }
                });
                let _ = tx.send(());
            })
            .map_err(os)?;
        done.push(rx.map(|_| ()).boxed());
    }
    Ok(futures_util::future::join_all(done)
        .map(|_| ())
        .boxed()
        .shared())
}

/// The binary that serves mnist mode.
pub const MNIST_BINARY: &str = "modelarts-init-mnist";

/// `modelarts-init mnist`: replaces this process with `modelarts-init-mnist`
/// and the same
/// arguments: the one next to our own executable, else the one in PATH.
/// Returns only on failure.
///
/// Why a second binary (as git and cargo do with their subcommands): tract
/// brings about 20 MB of code, and its constructors would keep it linked
/// into the init that every container runs, tripling the init's resident
/// memory and slowing its start-up. The init pays nothing for the model.
pub fn exec_mnist() -> Result<u8, Error> {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(MNIST_BINARY))
        .filter(|p| p.exists());
    let program = beside.unwrap_or_else(|| MNIST_BINARY.into());
    let source = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(Error::Spawn {
        command: format!(
            "{} (mnist mode is a second binary: `cargo build --release` builds both; install it next to modelarts-init)",
            program.display()
        ),
        source,
    })
}

/// The child's status as our exit code. A child we could not even collect
/// after SIGKILL is reported as killed by SIGKILL.
fn exit_code(status: Option<ExitStatus>) -> u8 {
    status
        .unwrap_or(ExitStatus::Signal(libc::SIGKILL))
        .exit_code()
}
