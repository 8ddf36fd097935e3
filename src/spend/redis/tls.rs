//! The TLS connector of the Redis connection: rustls on ring, the configured CA (or the
//! system's roots), an optional client certificate. Reads the PEM files; knows no Redis.

use std::sync::Arc;

use fred::prelude::TlsConnector;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::RedisTlsFiles;
use crate::spend::SpendError;

fn invalid(path: &std::path::Path, e: impl std::fmt::Display) -> SpendError {
    SpendError::Invalid(format!("redis tls: {}: {e}", path.display()))
}

/// The connector for `files`.
pub(crate) fn connector(files: &RedisTlsFiles) -> Result<TlsConnector, SpendError> {
    let Some(ca) = &files.ca_cert_file else {
        if files.cert_file.is_some() {
            return Err(SpendError::Invalid(
                "redis tls: a client certificate needs redis.tls.caCertFile too".into(),
            ));
        }
        return TlsConnector::default_rustls()
            .map_err(|e| SpendError::Invalid(format!("redis tls: system roots: {e}")));
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| invalid(ca, e))? {
        roots
            .add(cert.map_err(|e| invalid(ca, e))?)
            .map_err(|e| invalid(ca, e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SpendError::Invalid(format!("redis tls: {e}")))?
        .with_root_certificates(roots);
    let config = match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| invalid(cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(cert, e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| invalid(cert, e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(SpendError::Invalid(
                "redis tls: certFile and keyFile go together".into(),
            ))
        }
    };
    Ok(TlsConnector::from(config))
}
