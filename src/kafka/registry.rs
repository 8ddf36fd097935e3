//! A Confluent Schema Registry client for `kafka register-schemas` and for every role at start:
//! each event's value schema under `<topic>-value`, compatibility BACKWARD, basic auth from
//! `kafka.schemaRegistry`, and the process's `WireFormat` made of the ids it answered.
//! REST only; framing messages with the registered ids is `bus::avro`'s, not this file's.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::bus::avro::{schema_json, WireFormat};
use crate::config::SchemaRegistry;
use crate::core::events::EventKind;

/// Largest registry answer read.
const ANSWER_BYTES_MAX: usize = 1024 * 1024;
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("kafka.schemaRegistry.url is not set: there is no Schema Registry to register in")]
    NotConfigured,
    #[error("Schema Registry {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("Schema Registry refused the schema of subject {subject}: it is not BACKWARD compatible with the registered versions ({message})")]
    Incompatible { subject: String, message: String },
    #[error("Schema Registry answered {status} for subject {subject}: {message}")]
    Status {
        subject: String,
        status: u16,
        message: String,
    },
}

/// One registered subject.
#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    pub subject: String,
    pub id: i64,
    pub compatibility: &'static str,
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The registry of `kafka.schemaRegistry`.
pub struct Registry {
    url: String,
    authorization: Option<String>,
    client: HttpClient,
    timeout: Duration,
}

impl Registry {
    pub fn new(config: &SchemaRegistry, timeout: Duration) -> Result<Self, RegistryError> {
        let url = config.url.clone().ok_or(RegistryError::NotConfigured)?;
        let authorization = config.username.as_ref().map(|user| {
            let password = config.password.as_ref().map_or("", |p| p.expose());
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {token}")
        });
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Registry {
            url: url.trim_end_matches('/').to_owned(),
            authorization,
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
        })
    }

    /// Sets BACKWARD and registers the value schema of every event (idempotent: the registry
    /// answers an already registered schema with its existing id).
    pub async fn register_all(&self) -> Result<Vec<Registered>, RegistryError> {
        let mut out = Vec::new();
        for kind in EventKind::ALL {
            let subject = format!("{}-value", kind.topic());
            let compatibility = serde_json::json!({"compatibility": "BACKWARD"});
            self.call(
                Method::PUT,
                &format!("/config/{subject}"),
                &subject,
                &compatibility,
            )
            .await?;
            let body = serde_json::json!({"schema": schema_json(kind)});
            let path = format!("/subjects/{subject}/versions");
            let answer = self.call(Method::POST, &path, &subject, &body).await?;
            let id = answer["id"].as_i64().ok_or_else(|| RegistryError::Status {
                subject: subject.clone(),
                status: 200,
                message: "the answer has no schema id".into(),
            })?;
            out.push(Registered {
                subject,
                id,
                compatibility: "BACKWARD",
            });
        }
        Ok(out)
    }

    /// Registers every schema (as `register_all`) and returns the Confluent wire format made
    /// of the ids the registry gave them, in `EventKind::ALL` order.
    pub async fn wire_format(&self) -> Result<WireFormat, RegistryError> {
        let mut ids = [0u32; 4];
        for (slot, registered) in ids.iter_mut().zip(self.register_all().await?) {
            *slot = u32::try_from(registered.id).map_err(|_| RegistryError::Status {
                subject: registered.subject.clone(),
                status: 200,
                message: format!("schema id {} is not a 32-bit id", registered.id),
            })?;
        }
        Ok(WireFormat::Confluent { ids })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        subject: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, RegistryError> {
        let unreachable = |cause: String| RegistryError::Unreachable {
            url: self.url.clone(),
            cause,
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("content-type", CONTENT_TYPE)
            .header("accept", CONTENT_TYPE);
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| with_causes(&e))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), ANSWER_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {} ms", self.timeout.as_millis())))?
            .map_err(unreachable)?;
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let message = answer["message"].as_str().unwrap_or("").to_owned();
        match status {
            s if s.is_success() => Ok(answer),
            StatusCode::CONFLICT => Err(RegistryError::Incompatible {
                subject: subject.to_owned(),
                message,
            }),
            s => Err(RegistryError::Status {
                subject: subject.to_owned(),
                status: s.as_u16(),
                message,
            }),
        }
    }
}

/// `error` and each of its sources, so "client error (Connect)" says why it could not connect.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
