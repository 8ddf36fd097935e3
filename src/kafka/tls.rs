//! TLS for the admin connection: rustls on ring, the CA from a PEM or PKCS#12 file (or the
//! webpki roots), an optional client certificate (PEM or PKCS#12). Recognises a Java keystore
//! and says how to convert it.
//! Reads the certificate files; knows nothing of Kafka requests.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::settings::{StoreFile, TlsFiles};
use super::KafkaError;

/// What a certificate store file holds, by its first bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreKind {
    Pem,
    /// DER: a PKCS#12 archive.
    Pkcs12,
    /// A Java keystore (JKS or JCEKS): rustls cannot read it.
    JavaKeystore,
}

/// Sniffs `bytes`: JKS starts 0xFEEDFEED, JCEKS 0xCECECECE, PEM with `-----BEGIN`.
pub fn store_kind(bytes: &[u8]) -> StoreKind {
    match bytes.get(..4) {
        Some([0xFE, 0xED, 0xFE, 0xED]) | Some([0xCE, 0xCE, 0xCE, 0xCE]) => StoreKind::JavaKeystore,
        _ if bytes.trim_ascii_start().starts_with(b"-----BEGIN") => StoreKind::Pem,
        _ => StoreKind::Pkcs12,
    }
}

/// The handshake over `tcp` to `broker` (`host:port`; the host is the name checked).
pub async fn connect(
    broker: &str,
    tcp: TcpStream,
    files: &TlsFiles,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, KafkaError> {
    let fail = |cause: String| KafkaError::Tls {
        broker: broker.to_owned(),
        cause,
    };
    let config = client_config(files).map_err(fail)?;
    let host = broker.rsplit_once(':').map_or(broker, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| fail(format!("{host:?} is not a host name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Err(_) => Err(fail(format!(
            "no TLS handshake within {} ms",
            timeout.as_millis()
        ))),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Ok(Ok(stream)) => Ok(stream),
    }
}

fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match &files.trust {
        Some(store) => {
            for cert in trusted_certs(store)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", store.path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let identity = match (&files.identity, &files.cert_and_key) {
        (Some(store), _) => Some(identity(store)?),
        (None, Some((cert, key))) => Some((pem_certs(cert)?, pem_key(key)?)),
        (None, None) => None,
    };
    match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("client certificate: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

fn read(store: &StoreFile) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(&store.path).map_err(|e| format!("{}: {e}", store.path.display()))?;
    match store_kind(&bytes) {
        StoreKind::JavaKeystore => Err(format!(
            "{} is a Java keystore (JKS), which Caracal cannot read: convert it with `keytool \
             -importkeystore -srckeystore {} -destkeystore store.p12 -deststoretype PKCS12` and \
             give the .p12 file (or PEM files) instead",
            store.path.display(),
            store.path.display()
        )),
        _ => Ok(bytes),
    }
}

fn trusted_certs(store: &StoreFile) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(store)?;
    match store_kind(&bytes) {
        StoreKind::Pem => pem_certs_from(&store.path, &bytes),
        _ => super::pkcs12::certificates(store, &bytes),
    }
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn identity(store: &StoreFile) -> Result<Identity, String> {
    let bytes = read(store)?;
    match store_kind(&bytes) {
        StoreKind::Pem => {
            let key = PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| format!("{}: no private key: {e}", store.path.display()))?;
            Ok((pem_certs_from(&store.path, &bytes)?, key))
        }
        _ => super::pkcs12::identity(store, &bytes),
    }
}

fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    pem_certs_from(path, &bytes)
}

fn pem_certs_from(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

fn pem_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stores_are_told_apart_by_their_first_bytes() {
        assert_eq!(
            store_kind(b"\xFE\xED\xFE\xED\0\0\0\x02"),
            StoreKind::JavaKeystore
        );
        assert_eq!(store_kind(b"\xCE\xCE\xCE\xCE"), StoreKind::JavaKeystore);
        assert_eq!(store_kind(b"\n-----BEGIN CERTIFICATE-----"), StoreKind::Pem);
        assert_eq!(store_kind(b"\x30\x82\x0a\x1b"), StoreKind::Pkcs12);
    }

    #[test]
    fn a_java_keystore_is_refused_with_the_keytool_conversion() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.truststore.jks");
        std::fs::write(&path, b"\xFE\xED\xFE\xED\0\0\0\x02").unwrap();
        let store = StoreFile {
            path,
            password: None,
        };
        let message = read(&store).err().unwrap_or_default();
        assert!(message.contains("keytool -importkeystore"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}
