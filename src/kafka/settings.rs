//! `ClientSettings`: where the admin connection goes and how it authenticates, built from the
//! `kafka` config section or from a Java client `.properties` file (`properties.rs`).
//! Settings only: no I/O but reading nothing; files are opened by `tls.rs` when connecting.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{KafkaConfig, KafkaProtocol, SaslMechanism, Secret};

use super::KafkaError;

/// A SASL login.
#[derive(Clone, Debug)]
pub struct SaslLogin {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

/// A store of certificates or keys on disk: PEM, PKCS#12, or a Java keystore (refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreFile {
    pub path: PathBuf,
    /// Password of a PKCS#12 file.
    pub password: Option<Secret>,
}

/// The TLS files: a CA to verify brokers (none: the system roots) and a client identity.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// CA certificates: PEM or PKCS#12.
    pub trust: Option<StoreFile>,
    /// Client certificate and key in one file: PEM or PKCS#12.
    pub identity: Option<StoreFile>,
    /// Separate PEM certificate and key files (`kafka.ssl.certFile`/`keyFile`).
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
}

/// Everything the admin connection needs.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    pub protocol: KafkaProtocol,
    /// Present exactly when `protocol` uses SASL.
    pub sasl: Option<SaslLogin>,
    pub tls: TlsFiles,
    /// Deadline of each connect and each request.
    pub timeout: Duration,
}

impl ClientSettings {
    /// The settings of the `kafka` config section (already validated by `config::validate`).
    pub fn from_config(k: &KafkaConfig, timeout: Duration) -> Result<Self, KafkaError> {
        if k.brokers.is_empty() {
            return Err(KafkaError::Settings(
                "no Kafka brokers: set kafka.brokers (or KAFKA_BROKERS), or give --config-file \
                 with bootstrap.servers"
                    .into(),
            ));
        }
        let s = &k.security;
        let sasl = match (s.protocol.uses_sasl(), s.sasl_mechanism, &s.sasl_username) {
            (true, Some(mechanism), Some(username)) => Some(SaslLogin {
                mechanism,
                username: username.clone(),
                password: s.sasl_password.clone().unwrap_or_default(),
            }),
            (true, _, _) => {
                return Err(KafkaError::Settings(
                    "kafka.security: a SASL protocol needs saslMechanism, saslUsername and \
                     saslPassword"
                        .into(),
                ))
            }
            (false, _, _) => None,
        };
        let store = |path: &Option<PathBuf>| {
            path.clone().map(|path| StoreFile {
                path,
                password: None,
            })
        };
        let tls = TlsFiles {
            trust: store(&k.ssl.ca_file).or_else(|| store(&k.ssl.truststore_location)),
            identity: store(&k.ssl.keystore_location),
            cert_and_key: k.ssl.cert_file.clone().zip(k.ssl.key_file.clone()),
        };
        Ok(ClientSettings {
            brokers: k.brokers.clone(),
            protocol: s.protocol,
            sasl,
            tls,
            timeout,
        })
    }
}

/// The name Kafka gives a SASL mechanism.
pub fn mechanism_name(m: SaslMechanism) -> &'static str {
    match m {
        SaslMechanism::Plain => "PLAIN",
        SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
        SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
    }
}
