//! One admin connection to one broker: TCP (TLS when the protocol says so), the version
//! handshake (ApiVersions), SASL (PLAIN, SCRAM), then typed requests, each with a deadline.
//! Requests are encoded by kafka-protocol; this file only frames them. No admin logic here.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::error_code;
use super::scram::{ScramClient, ScramHash};
use super::settings::{mechanism_name, SaslLogin};
use super::{ClientSettings, KafkaError};
use crate::config::SaslMechanism;

/// Largest response frame read (the seeds' `socket.request.max.bytes`, 100 MiB).
pub const RESPONSE_BYTES_MAX: usize = 100 * 1024 * 1024;
const CLIENT_ID: &str = "caracal-admin";

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open, authenticated connection.
pub struct BrokerConn {
    broker: String,
    stream: Box<dyn Stream>,
    correlation_id: i32,
    timeout: Duration,
    /// API key → (lowest, highest) version the broker speaks.
    versions: HashMap<i16, (i16, i16)>,
    /// Whether this connection uses neither TLS nor SASL (a closed connection then says so).
    plaintext: bool,
}

impl BrokerConn {
    /// Connects to `broker` (`host:port`), negotiates versions and authenticates.
    pub async fn open(broker: &str, settings: &ClientSettings) -> Result<Self, KafkaError> {
        let timeout = settings.timeout;
        let connect = tokio::time::timeout(timeout, TcpStream::connect(broker)).await;
        let tcp = match connect {
            Err(_) => return Err(timed_out(broker, "the TCP connection", timeout)),
            Ok(Err(e)) => {
                return Err(KafkaError::Connect {
                    broker: broker.to_owned(),
                    cause: e.to_string(),
                })
            }
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = if settings.protocol.uses_tls() {
            Box::new(super::tls::connect(broker, tcp, &settings.tls, timeout).await?)
        } else {
            Box::new(tcp)
        };
        let mut conn = BrokerConn {
            broker: broker.to_owned(),
            stream,
            correlation_id: 0,
            timeout,
            versions: HashMap::new(),
            plaintext: !settings.protocol.uses_tls() && settings.sasl.is_none(),
        };
        conn.negotiate_versions().await?;
        if let Some(login) = &settings.sasl {
            conn.authenticate(login).await?;
        }
        Ok(conn)
    }

    /// The broker this connection talks to.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// Sends `request` in the highest version both sides speak, at most `version_max`.
    pub async fn send<R: Request>(
        &mut self,
        request: &R,
        version_max: i16,
    ) -> Result<R::Response, KafkaError> {
        let version = self.version::<R>(version_max)?;
        self.send_version(request, version).await
    }

    fn version<R: Request>(&self, version_max: i16) -> Result<i16, KafkaError> {
        let name = api_name(R::KEY);
        let (broker_min, broker_max) = self.versions.get(&R::KEY).copied().ok_or_else(|| {
            KafkaError::protocol(&self.broker, name, "the broker does not offer this API")
        })?;
        let high = version_max.min(R::VERSIONS.max).min(broker_max);
        if high < broker_min.max(R::VERSIONS.min) {
            return Err(KafkaError::protocol(
                &self.broker,
                name,
                format!(
                    "the broker speaks versions {broker_min}-{broker_max}, this client {}-{}",
                    R::VERSIONS.min,
                    version_max.min(R::VERSIONS.max)
                ),
            ));
        }
        Ok(high)
    }

    async fn send_version<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, KafkaError> {
        let what = api_name(R::KEY);
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let frame = encode(request, version, self.correlation_id)
            .map_err(|e| KafkaError::protocol(&self.broker, what, e))?;
        let deadline = self.timeout;
        let exchange = async {
            self.stream.write_all(&frame).await?;
            self.stream.flush().await?;
            read_frame(&mut *self.stream).await
        };
        let mut body = match tokio::time::timeout(deadline, exchange).await {
            Err(_) => return Err(timed_out(&self.broker, what, deadline)),
            Ok(Err(e)) => {
                return Err(KafkaError::protocol(
                    &self.broker,
                    what,
                    io_cause(&e, self.plaintext),
                ))
            }
            Ok(Ok(body)) => body,
        };
        let header_version = R::Response::header_version(version);
        let header = ResponseHeader::decode(&mut body, header_version)
            .map_err(|e| KafkaError::protocol(&self.broker, what, e))?;
        if header.correlation_id != self.correlation_id {
            return Err(KafkaError::protocol(
                &self.broker,
                what,
                "answer to another request",
            ));
        }
        R::Response::decode(&mut body, version)
            .map_err(|e| KafkaError::protocol(&self.broker, what, e))
    }

    async fn negotiate_versions(&mut self) -> Result<(), KafkaError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("caracal"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response = self.send_version(&request, 3).await?;
        if response.error_code == 35 {
            // UNSUPPORTED_VERSION: an older broker answers with what it speaks, in v0.
            response = self.send_version(&request, 0).await?;
        }
        if let Some(cause) = error_code(response.error_code) {
            return Err(refused(&self.broker, "ApiVersions", cause));
        }
        self.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    async fn authenticate(&mut self, login: &SaslLogin) -> Result<(), KafkaError> {
        let mechanism = mechanism_name(login.mechanism);
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
        let answer = self.send(&handshake, 1).await?;
        if let Some(cause) = error_code(answer.error_code) {
            let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(self.auth_error(login, format!("{cause}; it offers {offered:?}")));
        }
        let result = match login.mechanism {
            SaslMechanism::Plain => self.plain(login).await,
            SaslMechanism::ScramSha256 => self.scram(login, ScramHash::Sha256).await,
            SaslMechanism::ScramSha512 => self.scram(login, ScramHash::Sha512).await,
        };
        result.map_err(|e| match e {
            KafkaError::Protocol { cause, .. } => self.auth_error(
                login,
                format!("{cause} (the broker closes the connection on a wrong user or password)"),
            ),
            other => other,
        })
    }

    async fn plain(&mut self, login: &SaslLogin) -> Result<(), KafkaError> {
        let token = format!("\0{}\0{}", login.username, login.password.expose());
        self.sasl_step(login, token.into_bytes()).await.map(drop)
    }

    async fn scram(&mut self, login: &SaslLogin, hash: ScramHash) -> Result<(), KafkaError> {
        let nonce = nonce().ok_or_else(|| self.auth_error(login, "no random source".into()))?;
        let client = ScramClient::new(hash, &login.username, login.password.expose(), &nonce);
        let server_first = self
            .sasl_step(login, client.client_first().into_bytes())
            .await?;
        let server_first = String::from_utf8_lossy(&server_first).into_owned();
        let (client_final, last) = client
            .client_final(&server_first)
            .map_err(|e| self.auth_error(login, e.to_string()))?;
        let server_final = self.sasl_step(login, client_final.into_bytes()).await?;
        last.verify(&String::from_utf8_lossy(&server_final))
            .map_err(|e| self.auth_error(login, e.to_string()))
    }

    /// One SaslAuthenticate round trip; the broker's answer bytes.
    async fn sasl_step(&mut self, login: &SaslLogin, bytes: Vec<u8>) -> Result<Bytes, KafkaError> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
        let answer = self.send(&request, 2).await?;
        if let Some(cause) = error_code(answer.error_code) {
            let message = answer.error_message.as_ref().map(|m| m.as_str().to_owned());
            let detail = message.map_or(cause.clone(), |m| format!("{m} ({cause})"));
            return Err(self.auth_error(login, detail));
        }
        Ok(answer.auth_bytes)
    }

    fn auth_error(&self, login: &SaslLogin, cause: String) -> KafkaError {
        KafkaError::Auth {
            broker: self.broker.clone(),
            mechanism: mechanism_name(login.mechanism).to_owned(),
            user: login.username.clone(),
            cause,
        }
    }
}

/// A request frame: length, header, body.
fn encode<R: Request>(request: &R, version: i16, correlation_id: i32) -> Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, R::header_version(version))
        .map_err(|e| e.to_string())?;
    request
        .encode(&mut body, version)
        .map_err(|e| e.to_string())?;
    let size = i32::try_from(body.len()).map_err(|e| e.to_string())?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(size);
    frame.put(body);
    Ok(frame.freeze())
}

async fn read_frame(stream: &mut dyn Stream) -> std::io::Result<Bytes> {
    let size = stream.read_i32().await?;
    let size = usize::try_from(size)
        .ok()
        .filter(|s| *s <= RESPONSE_BYTES_MAX)
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "a response of {size} bytes (at most {RESPONSE_BYTES_MAX} read)"
            ))
        })?;
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body).await?;
    Ok(Bytes::from(body))
}

fn io_cause(e: &std::io::Error, plaintext: bool) -> String {
    match (e.kind(), plaintext) {
        (std::io::ErrorKind::UnexpectedEof, true) => "the broker closed the connection (does it \
            require TLS or SASL? set security.protocol / kafka.security.protocol)"
            .to_owned(),
        (std::io::ErrorKind::UnexpectedEof, false) => "the broker closed the connection".to_owned(),
        _ => e.to_string(),
    }
}

/// 24 random bytes, base64: the client's SCRAM nonce.
fn nonce() -> Option<String> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::CreateTopics) => "CreateTopics",
        Ok(ApiKey::DescribeConfigs) => "DescribeConfigs",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        Ok(ApiKey::SaslHandshake) => "SaslHandshake",
        Ok(ApiKey::SaslAuthenticate) => "SaslAuthenticate",
        _ => "a request",
    }
}

fn timed_out(broker: &str, what: &str, timeout: Duration) -> KafkaError {
    KafkaError::Timeout {
        broker: broker.to_owned(),
        what: what.to_owned(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    }
}

pub(crate) fn refused(broker: &str, what: &str, cause: String) -> KafkaError {
    KafkaError::Refused {
        broker: broker.to_owned(),
        what: what.to_owned(),
        cause,
    }
}
