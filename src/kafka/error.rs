//! `KafkaError`: what the admin connection reports, one line naming the broker and the cause.
//! Never carries a password or a SASL payload.

/// An admin request that could not be made or that the broker refused.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The client settings (config or `.properties`) are unusable.
    #[error("{0}")]
    Settings(String),
    /// TLS could not be set up or the handshake failed.
    #[error("TLS to broker {broker}: {cause}")]
    Tls { broker: String, cause: String },
    /// No TCP connection.
    #[error("cannot reach broker {broker}: {cause}")]
    Connect { broker: String, cause: String },
    /// The broker took longer than the deadline.
    #[error("broker {broker} did not answer {what} within {timeout_ms} ms")]
    Timeout {
        broker: String,
        what: String,
        timeout_ms: u64,
    },
    /// The connection broke or a frame could not be read or decoded.
    #[error("broker {broker}: {what}: {cause}")]
    Protocol {
        broker: String,
        what: String,
        cause: String,
    },
    /// SASL authentication failed.
    #[error("broker {broker} refused SASL {mechanism} authentication as {user:?}: {cause}")]
    Auth {
        broker: String,
        mechanism: String,
        user: String,
        cause: String,
    },
    /// The broker answered with an error code.
    #[error("broker {broker} refused {what}: {cause}")]
    Refused {
        broker: String,
        what: String,
        cause: String,
    },
}

impl KafkaError {
    pub(crate) fn protocol(broker: &str, what: &str, cause: impl std::fmt::Display) -> Self {
        KafkaError::Protocol {
            broker: broker.to_owned(),
            what: what.to_owned(),
            cause: cause.to_string(),
        }
    }
}

/// A Kafka error code as its description and number, or `None` for 0.
pub fn error_code(code: i16) -> Option<String> {
    use kafka_protocol::error::ParseResponseErrorCode;
    code.err().map(|e| format!("{e} (error code {code})"))
}
