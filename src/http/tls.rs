//! TLS on port 8080: HTTPS and WSS terminated here, so that the app behind
//! stays plain HTTP (ModelArts lets a service pick HTTPS or WSS; its
//! config.json says so in `health.protocol` and `apis[].protocol`).
//!
//! Owns: the server certificate (PEM files: a chain and a PKCS#8, PKCS#1 or
//! SEC1 key, RSA or EC; or a self-signed one made at start, in memory and
//! never written), the rustls configurations (TLS 1.2 and 1.3, ALPN
//! `http/1.1`, the ring provider) of the server and of the `health` verb's
//! client (`--insecure`, or `--cacert` with no host-name check for a
//! loopback address), and the errors that name the file and what is wrong
//! with it. Must not: accept or serve connections (`server` does the
//! handshake, under its timeout), or run at all when TLS is off: the init
//! that does not use TLS never touches this code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring as provider;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::Error;

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--tls-cert` and `--tls-key`.
    Files { cert: PathBuf, key: PathBuf },
    /// Made at start for these names (the platform does not verify the
    /// container's certificate).
    SelfSigned { names: Vec<String> },
}

/// TLS for a front: what its connections are accepted with.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// A handshake not done by then is cut.
    pub handshake_timeout: Duration,
    /// What is served, for the log: the file or "self-signed for ...", and
    /// the leaf certificate's SHA-256.
    pub served: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("served", &self.served)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl Tls {
    /// Loads or makes the certificate and builds the configuration; any
    /// problem is a configuration error (exit 2) naming the file.
    pub fn new(source: &Source, handshake_timeout: Duration) -> Result<Tls, Error> {
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
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            handshake_timeout,
            served: format!("{what}, sha256 {fingerprint}"),
        })
    }
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

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    read_chain_as("--tls-cert", path)
}

/// The PEM certificates of `path`, given with `flag`.
fn read_chain_as(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
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
        other => format!("not valid PEM: {other:?}"),
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

/// The `health` verb's client configuration: trust any certificate
/// (`insecure`, e.g. our self-signed one), or only those issued by the root
/// in `cacert`; for a loopback address, the certificate's names are not
/// checked (the container's certificate names its public host, and the
/// check runs inside the container).
pub fn client_config(insecure: bool, cacert: Option<&Path>) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(provider::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (insecure, cacert) {
        (true, _) => Arc::new(AnyCertificate(provider.clone())),
        (false, Some(path)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_chain_as("--cacert", path)? {
                roots.add(cert).map_err(|e| {
                    Error::Config(format!("--cacert {}: not a usable root: {e}", path.display()))
                })?;
            }
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| Error::Config(format!("--cacert {}: {e}", path.display())))?;
            Arc::new(LoopbackNames(inner))
        }
        (false, None) => {
            return Err(Error::Config(
                "an https:// URL needs --insecure (any certificate, e.g. the self-signed one) or --cacert PATH (the root to verify against)".into(),
            ))
        }
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// `--insecure`: any certificate; the handshake's signatures are still
/// checked, so the connection is at least to the holder of that key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `--cacert`: the chain must lead to the root; the name need not match
/// when the address is a loopback one.
#[derive(Debug)]
struct LoopbackNames(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for LoopbackNames {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let loopback = matches!(server_name, ServerName::IpAddress(ip) if std::net::IpAddr::from(*ip).is_loopback());
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) if loopback => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mi-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn self_signed_is_made_for_the_loopback_names() {
        let names = self_signed_names();
        assert!(names.contains(&"localhost".to_owned()));
        let tls = Tls::new(&Source::SelfSigned { names }, Duration::from_secs(10)).unwrap();
        assert!(tls.served.contains("self-signed"), "{}", tls.served);
        assert!(tls.served.contains("sha256 "), "{}", tls.served);
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
        let t = Duration::from_secs(10);
        let files = |cert: &Path, key: &Path| Source::Files {
            cert: cert.to_owned(),
            key: key.to_owned(),
        };
        assert!(Tls::new(&files(&cert, &key), t).is_ok());
        for (source, want) in [
            (files(&gone, &key), "cannot read it"),
            (files(&text, &key), "no PEM certificate"),
            (files(&cert, &text), "no PEM private key"),
            (files(&cert, &wrong_key), "does not match"),
        ] {
            let e = Tls::new(&source, t).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(e.starts_with("--tls-"), "names the flag and file: {e}");
        }
    }
}
