//! TLS on port 8080 (HTTPS and WSS terminated here, so that the app behind
//! stays plain HTTP: ModelArts lets a service pick HTTPS or WSS, and its
//! config.json says so in `health.protocol` and `apis[].protocol`), and the
//! `health` verb's https:// client.
//!
//! Owns: what TLS needs that is plain data ([`Settings`], [`Source`]), the
//! two seams the rest of the crate calls through ([`Handshake`] for the
//! front, [`Connect`] for the verb), and [`attach`], which plugs rustls into
//! a [`Mode`]. Submodules: `server` and `client`, the rustls sides.
//!
//! Must not: be linked into the init that does not use TLS. rustls, ring
//! and rcgen would grow the init's binary by 1.7 MB and its resident memory
//! past the 4 MiB that pure-init mode must keep, although none of that code
//! would run. So the init's own binary never calls [`attach`] (the linker
//! drops everything behind it) and, when TLS is asked for, execs
//! `modelarts-init-tls`, the same program with [`attach`] called, as
//! `modelarts-init mnist` execs the mnist server.

mod client;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::Mode;
use crate::error::Error;

/// The binary that serves TLS.
pub const TLS_BINARY: &str = "modelarts-init-tls";

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--tls-cert` and `--tls-key`.
    Files { cert: PathBuf, key: PathBuf },
    /// Made at start for these names (the platform does not verify the
    /// container's certificate).
    SelfSigned { names: Vec<String> },
}

/// TLS on a front.
#[derive(Clone)]
pub struct Settings {
    pub source: Source,
    /// A handshake not done by then is cut.
    pub handshake_timeout: Duration,
    /// The handshake and what it serves, once [`attach`]ed.
    pub layer: Option<(Arc<dyn Handshake>, String)>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("source", &self.source)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("attached", &self.layer.is_some())
            .finish()
    }
}

/// A stream HTTP is spoken on.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The server side: an accepted TCP stream to the stream HTTP is spoken on.
pub trait Handshake: Send + Sync + 'static {
    fn handshake(&self, stream: TcpStream) -> BoxFuture<'static, std::io::Result<Box<dyn Stream>>>;
}

/// The client side: a TCP stream to `host` to a TLS stream.
pub trait Connect: Send + Sync + 'static {
    fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> BoxFuture<'static, std::io::Result<Box<dyn Stream>>>;
}

/// The names a self-signed certificate is made for: localhost, the
/// loopback addresses and this host's name.
pub fn self_signed_names() -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_owned());
        }
    }
    names
}

/// Plugs rustls into `mode`: the front's certificate (loaded or made now:
/// a bad file is a configuration error, exit 2) and the `health` verb's
/// client. Called by `modelarts-init-tls` and the mnist server only.
pub fn attach(mode: &mut Mode) -> Result<(), Error> {
    if let Some(front) = mode.front_mut() {
        attach_front(front)?;
    }
    if let Mode::Health(health) = mode {
        if health.args.url.starts_with("https://") {
            let connector =
                client::Connector::new(health.args.insecure, health.args.cacert.as_deref())?;
            health.tls = Some(Arc::new(connector));
        }
    }
    Ok(())
}

/// Plugs rustls into a front, if it asks for TLS.
pub fn attach_front(front: &mut crate::http::FrontConfig) -> Result<(), Error> {
    if let Some(settings) = &mut front.tls {
        let (acceptor, served) = server::Acceptor::new(&settings.source)?;
        settings.layer = Some((Arc::new(acceptor), served));
    }
    Ok(())
}
