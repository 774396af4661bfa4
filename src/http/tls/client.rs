//! The rustls side of the `health` verb's https:// client: trust any
//! certificate (`--insecure`, e.g. our self-signed one), or only those
//! issued by the root of `--cacert`; for a loopback address, the
//! certificate's names are not checked (the container's certificate names
//! its public host, and the check runs inside the container).
//!
//! Owns: the client configuration and its verifiers. Must not: be reached
//! from the init's own binary (see [`super::attach`]).

use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::ring as provider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use super::{Connect, Stream};
use crate::error::Error;

/// The health verb's TLS connector.
pub(crate) struct Connector(tokio_rustls::TlsConnector);

impl Connect for Connector {
    fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> BoxFuture<'static, std::io::Result<Box<dyn Stream>>> {
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned());
        let connector = self.0.clone();
        Box::pin(async move {
            let name =
                name.map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            Ok(Box::new(connector.connect(name, stream).await?) as Box<dyn Stream>)
        })
    }
}

impl Connector {
    /// The connector for `--insecure` or `--cacert`; a bad root file (or
    /// neither flag) is a usage error.
    pub(crate) fn new(insecure: bool, cacert: Option<&Path>) -> Result<Connector, Error> {
        let provider = Arc::new(provider::default_provider());
        let roots = match (insecure, cacert) {
            (true, _) => None,
            (false, Some(path)) => Some(roots(path, &provider)?),
            (false, None) => return Err(Error::Config(NO_TRUST.into())),
        };
        let verifier = Arc::new(Verifier {
            roots,
            provider: provider.clone(),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Connector(tokio_rustls::TlsConnector::from(Arc::new(
            config,
        ))))
    }
}

const NO_TRUST: &str = "an https:// URL needs --insecure (any certificate, e.g. the self-signed one) or --cacert PATH (the root to verify against)";

/// The chain verifier for the roots in the `--cacert` file.
fn roots(
    path: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<rustls::client::WebPkiServerVerifier>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in super::server::read_chain_as("--cacert", path)? {
        roots.add(cert).map_err(|e| {
            Error::Config(format!(
                "--cacert {}: not a usable root: {e}",
                path.display()
            ))
        })?;
    }
    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Config(format!("--cacert {}: {e}", path.display())))
}

/// Without `roots` (`--insecure`): any certificate. With them
/// (`--cacert`): the chain must lead to a root; the name need not match
/// when the address is a loopback one. Either way the handshake's
/// signatures are checked, so the connection is at least to the holder of
/// the certificate's key.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let loopback = matches!(server_name, ServerName::IpAddress(ip) if std::net::IpAddr::from(*ip).is_loopback());
        match roots.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
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
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
