//! The gateway's TLS: rustls server config from the seeds' PEM files, and, in `mtls` mode, a
//! client-certificate verifier that admits a handshake without a certificate (kubelet probes
//! send none) while every proxied route then requires one.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
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

/// The acceptor for the gateway listener, or `None` when TLS is off.
pub fn acceptor(config: &GatewayConfig) -> Result<Option<TlsAcceptor>, TlsError> {
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
            builder.with_client_cert_verifier(verifier)
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
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}
