//! PKCS#12 archives (`.p12`) as the seeds' `ssl.truststore.location`/`ssl.keystore.location`:
//! not read by this build yet; the error says to give PEM files instead.
//! Reads nothing else; knows nothing of Kafka.

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::settings::StoreFile;

fn unsupported(store: &StoreFile) -> String {
    format!(
        "{} is not PEM; this build reads PEM only: export it with `openssl pkcs12 -in {} -nodes \
         -out store.pem` and give the PEM file",
        store.path.display(),
        store.path.display()
    )
}

/// The CA certificates of a PKCS#12 truststore.
pub fn certificates(
    store: &StoreFile,
    _bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, String> {
    Err(unsupported(store))
}

/// The certificate chain and key of a PKCS#12 keystore.
pub fn identity(
    store: &StoreFile,
    _bytes: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    Err(unsupported(store))
}
