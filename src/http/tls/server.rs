//! The rustls side of TLS on the front: the server certificate (PEM files:
//! a chain and a PKCS#8, PKCS#1 or SEC1 key, RSA or EC; or a self-signed one
//! made at start, in memory and never written), the server configuration
//! (TLS 1.2 and 1.3, ALPN `http/1.1`, the ring provider), the handshake the
//! front runs on each connection, and the errors that name the file and what
//! is wrong with it.
//!
//! Owns: everything rustls on the server side. Must not: be reached from
//! the init's own binary (only `modelarts-init-tls` and the mnist server
//! call [`super::attach`]), or accept connections (`server` does, and runs
//! the handshake under its timeout).

use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use rustls::crypto::ring as provider;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;

use super::{Handshake, Source, Stream};
use crate::error::Error;

/// The handshake of the front's connections.
pub(crate) struct Acceptor(tokio_rustls::TlsAcceptor);

impl Handshake for Acceptor {
    fn handshake(&self, stream: TcpStream) -> BoxFuture<'static, std::io::Result<Box<dyn Stream>>> {
        let accept = self.0.accept(stream);
        Box::pin(async move { Ok(Box::new(accept.await?) as Box<dyn Stream>) })
    }
}

impl Acceptor {
    /// Loads or makes the certificate and builds the configuration; any
    /// problem is a configuration error (exit 2) naming the file. Returns
    /// the acceptor and what it serves, for the log: the file or
    /// "self-signed for ...", and the leaf certificate's SHA-256.
    pub(crate) fn new(source: &Source) -> Result<(Acceptor, String), Error> {
        let (chain, key, what) = match source {
            Source::Files { cert, key } => {
                let chain = read_chain(cert)?;
                let key = read_key(key)?;
                let what = format!(
                    "the certificate of {} ({} in the chain)",
                    cert.display(),
                    chain.len()
                );
                (chain, key, what)
            }
            Source::SelfSigned { names } => {
                let made = rcgen::generate_simple_self_signed(names.clone()).map_err(|e| {
                    Error::Config(format!("cannot make a self-signed certificate: {e}"))
                })?;
                let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
                let what = format!(
                    "a self-signed certificate for {} (made at start, in memory only)",
                    names.join(", ")
                );
                (vec![made.cert.der().clone()], key.into(), what)
            }
        };
        let fingerprint = sha256_hex(&chain[0]);
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| Error::Config(format!("TLS: {e}")))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| match source {
                    Source::Files { cert, key } => Error::Config(format!(
                        "--tls-cert {} and --tls-key {}: {}",
                        cert.display(),
                        key.display(),
                        explain(&e)
                    )),
                    Source::SelfSigned { .. } => Error::Config(format!("TLS: {e}")),
                })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = Acceptor(tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        Ok((acceptor, format!("{what}, sha256 {fingerprint}")))
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    read_chain_as("--tls-cert", path)
}

/// The PEM certificates of `path`, given with `flag`.
pub(super) fn read_chain_as(
    flag: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bad = |what: String| Error::Config(format!("{flag} {}: {what}", path.display()));
    std::fs::metadata(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(pem_error(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(pem_error(&e)))?;
    if chain.is_empty() {
        return Err(bad(
            "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let bad = |what: String| Error::Config(format!("--tls-key {}: {what}", path.display()));
    std::fs::metadata(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => bad(
            "no PEM private key in it (expected PKCS#8, PKCS#1 or SEC1: -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)".into(),
        ),
        other => bad(pem_error(&other)),
    })
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => format!("cannot read it: {e}"),
        other => format!("not valid PEM: {other}"),
    }
}

/// rustls's errors about a certificate and its key, in words.
fn explain(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "the private key does not match the certificate".into()
        }
        rustls::Error::General(text) => format!("unusable key or certificate: {text}"),
        other => format!("unusable key or certificate: {other}"),
    }
}

/// Hex SHA-256 of a certificate, as `openssl x509 -fingerprint -sha256`
/// prints it (without the colons).
fn sha256_hex(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tmp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mi-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn self_signed_is_made_for_the_loopback_names() {
        let names = super::super::self_signed_names();
        assert!(names.contains(&"localhost".to_owned()));
        let (_, served) = Acceptor::new(&Source::SelfSigned { names }).unwrap();
        assert!(served.contains("self-signed"), "{served}");
        assert!(served.contains("sha256 "), "{served}");
    }

    #[test]
    fn bad_files_name_the_file_and_the_problem() {
        let made = rcgen::generate_simple_self_signed(vec!["a".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["b".to_owned()]).unwrap();
        let cert = tmp("cert.pem", &made.cert.pem());
        let key = tmp("key.pem", &made.signing_key.serialize_pem());
        let wrong_key = tmp("other.pem", &other.signing_key.serialize_pem());
        let text = tmp("text.pem", "hello\n");
        let gone = PathBuf::from("/nonexistent/cert.pem");
        let files = |cert: &Path, key: &Path| Source::Files {
            cert: cert.to_owned(),
            key: key.to_owned(),
        };
        assert!(Acceptor::new(&files(&cert, &key)).is_ok());
        for (source, want) in [
            (files(&gone, &key), "cannot read it"),
            (files(&text, &key), "no PEM certificate"),
            (files(&cert, &text), "no PEM private key"),
            (files(&cert, &wrong_key), "does not match"),
        ] {
            let e = Acceptor::new(&source).err().unwrap().to_string();
            assert!(e.contains(want), "{e}");
            assert!(e.starts_with("--tls-"), "names the flag and file: {e}");
        }
    }
}
