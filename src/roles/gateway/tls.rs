//! The gateway's TLS: rustls server config from the seeds' PEM files, and, in `mtls` mode, a
//! client-certificate verifier that admits a handshake without a certificate (kubelet probes
//! send none) and defers the chain check to the request, so a certificate from another CA is
//! answered with an HTTP 401 rather than a failed handshake. The handshake still proves that
//! the client holds the certificate's key.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::TlsAcceptor;

use crate::config::{AuthMode, GatewayConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("gateway.tls: {0}")]
    Config(String),
    #[error("cannot read {path}: {error}")]
    Pem { path: String, error: String },
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            error: e.to_string(),
        })?
        .collect();
    let certs = certs.map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        error: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            error: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// The gateway's TLS: the acceptor and, when a client CA is configured, the verifier that
/// decides at request time whether a presented client certificate chains to it.
pub struct GatewayTls {
    pub acceptor: TlsAcceptor,
    pub client_trust: Option<Arc<dyn ClientCertVerifier>>,
}

/// Admits any client certificate whose holder proves its key in the handshake; whether it
/// chains to the client CA is checked per request with `client_trusted`.
#[derive(Debug)]
struct DeferredChainCheck {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredChainCheck {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether a presented chain (end entity first) is valid under the client CA now.
pub fn client_trusted(trust: &dyn ClientCertVerifier, chain: &[CertificateDer<'static>]) -> bool {
    chain
        .split_first()
        .is_some_and(|(end_entity, intermediates)| {
            trust
                .verify_client_cert(end_entity, intermediates, UnixTime::now())
                .is_ok()
        })
}

/// The gateway listener's TLS, or `None` when TLS is off.
pub fn acceptor(config: &GatewayConfig) -> Result<Option<GatewayTls>, TlsError> {
    if !config.tls_enabled() {
        return Ok(None);
    }
    let cert_file = config
        .tls
        .cert_file
        .as_deref()
        .ok_or_else(|| TlsError::Config("certFile is required".into()))?;
    let key_file = config
        .tls
        .key_file
        .as_deref()
        .ok_or_else(|| TlsError::Config("keyFile is required".into()))?;
    let chain = certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Pem {
        path: key_file.display().to_string(),
        error: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut client_trust = None;
    let builder = match (&config.tls.client_ca_file, config.auth_mode) {
        (Some(ca_file), _) => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca_file)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Config(format!("clientCaFile: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(format!("clientCaFile: {e}")))?;
            client_trust = Some(Arc::clone(&verifier));
            builder.with_client_cert_verifier(Arc::new(DeferredChainCheck { inner: verifier }))
        }
        (None, AuthMode::Mtls) => {
            return Err(TlsError::Config("authMode mtls needs clientCaFile".into()))
        }
        (None, _) => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key do not match: {e}")))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(GatewayTls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        client_trust,
    }))
}
