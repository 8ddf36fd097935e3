//! Builds the rskafka client from `kafka.*`: bootstrap brokers, TLS (rustls on ring, the
//! configured CA or webpki's roots, an optional client certificate), SASL (PLAIN,
//! SCRAM-SHA-256/512) and a retry backoff that gives up at a deadline. Reads the PEM files;
//! sends nothing but the first metadata request.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::BackoffConfig;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::bus::BusError;
use crate::config::{KafkaConfig, SaslMechanism};

fn invalid(path: &std::path::Path, e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("kafka tls: {}: {e}", path.display()))
}

/// The backoff of every request: from `retry.backoff.ms`, doubling up to one second, and never
/// past `request.timeout.ms` (rskafka's default would retry forever).
pub(super) fn backoff(config: &KafkaConfig) -> BackoffConfig {
    let p = &config.producer;
    let init = Duration::from_millis(p.retry_backoff_ms);
    BackoffConfig {
        init_backoff: init,
        max_backoff: Duration::from_secs(1).max(init),
        base: 2.0,
        deadline: Some(Duration::from_millis(p.request_timeout_ms)),
    }
}

/// Connects to the bootstrap brokers and reads the cluster's metadata once, retrying within
/// `request.timeout.ms` (an attempt that hangs is cut at twice that): a wrong password, an unknown CA or a broker out of reach is one line
/// naming the brokers and the cause.
pub(super) async fn connect(config: &KafkaConfig) -> Result<Client, BusError> {
    let brokers = config.brokers.join(",");
    let mut builder = ClientBuilder::new(config.brokers.clone())
        .client_id("caracal")
        .backoff_config(backoff(config));
    if config.security.protocol.uses_tls() {
        builder = builder.tls_config(Arc::new(tls(config)?));
    }
    if let Some(sasl) = sasl(config)? {
        builder = builder.sasl_config(sasl);
    }
    // Twice the retry deadline: rskafka's own deadline (which names the cause, e.g. a refused
    // password) ends first; this one only bounds an attempt that hangs.
    let timeout = Duration::from_millis(config.producer.request_timeout_ms.saturating_mul(2));
    match tokio::time::timeout(timeout, builder.build()).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(BusError::Unavailable(format!(
            "kafka brokers {brokers}: {}",
            one_line(&e)
        ))),
        Err(_) => Err(BusError::Unavailable(format!(
            "kafka brokers {brokers}: no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// An error and its causes on one line.
pub(super) fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

fn sasl(config: &KafkaConfig) -> Result<Option<SaslConfig>, BusError> {
    let s = &config.security;
    if !s.protocol.uses_sasl() {
        return Ok(None);
    }
    let missing = |what: &str| BusError::Unavailable(format!("kafka sasl: {what} is not set"));
    let username = s
        .sasl_username
        .clone()
        .ok_or_else(|| missing("saslUsername"))?;
    let password = s
        .sasl_password
        .as_ref()
        .ok_or_else(|| missing("saslPassword"))?
        .expose()
        .to_owned();
    let credentials = Credentials::new(username, password);
    Ok(Some(
        match s.sasl_mechanism.ok_or_else(|| missing("saslMechanism"))? {
            SaslMechanism::Plain => SaslConfig::Plain(credentials),
            SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
            SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
        },
    ))
}

fn tls(config: &KafkaConfig) -> Result<rustls::ClientConfig, BusError> {
    let ssl = &config.ssl;
    let mut roots = RootCertStore::empty();
    match &ssl.ca_file {
        Some(ca) => {
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| invalid(ca, e))? {
                roots
                    .add(cert.map_err(|e| invalid(ca, e))?)
                    .map_err(|e| invalid(ca, e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BusError::Unavailable(format!("kafka tls: {e}")))?
        .with_root_certificates(roots);
    match (&ssl.cert_file, &ssl.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| invalid(cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(cert, e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| invalid(cert, e))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(BusError::Unavailable(
            "kafka tls: certFile and keyFile go together".into(),
        )),
    }
}
