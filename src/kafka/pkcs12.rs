//! PKCS#12 archives (`.p12`) as the seeds' `ssl.truststore.location` (every certificate in it
//! is a trusted CA) and `ssl.keystore.location` (one private key with its certificate chain),
//! opened with `ssl.truststore.password` / `ssl.keystore.password`. Knows nothing of Kafka.

use p12_keystore::{KeyStore, Pkcs12Archive, Pkcs12ImportPolicy};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::settings::StoreFile;

fn password(store: &StoreFile) -> &str {
    store.password.as_ref().map_or("", |p| p.expose())
}

fn unreadable(store: &StoreFile, e: impl std::fmt::Display) -> String {
    format!(
        "{}: not a PKCS#12 file this client can open ({e}); check its password \
         (ssl.truststore.password / ssl.keystore.password) or give PEM files",
        store.path.display()
    )
}

/// The CA certificates of a PKCS#12 truststore.
pub fn certificates(
    store: &StoreFile,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, String> {
    let archive =
        Pkcs12Archive::from_pkcs12(bytes, password(store)).map_err(|e| unreadable(store, e))?;
    let certs: Vec<CertificateDer<'static>> = archive
        .certs
        .iter()
        .map(|bag| CertificateDer::from(bag.cert.as_der().to_vec()))
        .collect();
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", store.path.display()));
    }
    Ok(certs)
}

/// The certificate chain and key of a PKCS#12 keystore.
pub fn identity(
    store: &StoreFile,
    bytes: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let keystore = KeyStore::from_pkcs12(bytes, password(store), Pkcs12ImportPolicy::Strict)
        .map_err(|e| unreadable(store, e))?;
    let (_, chain) = keystore.private_key_chain().ok_or_else(|| {
        format!(
            "{}: no private key with its certificate in it",
            store.path.display()
        )
    })?;
    let certs = chain
        .certs()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    let key = PrivatePkcs8KeyDer::from(chain.key().as_der().to_vec());
    Ok((certs, PrivateKeyDer::Pkcs8(key)))
}
