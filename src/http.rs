//! Small HTTP plumbing shared by every listener: the accept loop with graceful shutdown, JSON
//! responses, bounded body reads, and reading credentials off request headers. No routing and
//! no business rules.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Response body of every Caracal-generated response.
pub type Body = Full<Bytes>;

/// How long in-flight connections get to finish after shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A shutdown signal that every listener and loop watches.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Whether shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has been requested (or the sender is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Longest a TLS handshake may take before the connection is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a handler knows about the connection a request came on.
pub struct Conn {
    pub peer: SocketAddr,
    /// The client's certificate chain, if it sent one. The handshake proved the client holds
    /// its key; whether the chain is trusted is the role's check (`client_chain_trusted`).
    pub peer_certificates: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
    /// The role's verdict on `peer_certificates`, computed once per connection, not per request.
    pub client_chain_trusted: std::sync::OnceLock<bool>,
}

/// Serves `handler` on `listener` (over TLS when `tls` is given) until shutdown, then lets
/// open connections finish for up to `SHUTDOWN_GRACE`.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: H,
    mut shutdown: Shutdown,
) where
    H: Fn(Request<Incoming>, Arc<Conn>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handler = Arc::new(handler);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        let conn_shutdown = shutdown.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => {
                    let conn = Arc::new(Conn {
                        peer,
                        peer_certificates: None,
                        client_chain_trusted: std::sync::OnceLock::new(),
                    });
                    serve_connection(TokioIo::new(stream), conn, handler, conn_shutdown).await;
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    let Ok(Ok(tls_stream)) = handshake else {
                        tracing::debug!(%peer, "TLS handshake failed or timed out");
                        return;
                    };
                    let peer_certificates = tls_stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect());
                    let conn = Arc::new(Conn {
                        peer,
                        peer_certificates,
                        client_chain_trusted: std::sync::OnceLock::new(),
                    });
                    serve_connection(TokioIo::new(tls_stream), conn, handler, conn_shutdown).await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

async fn serve_connection<I, H, F, B>(
    io: I,
    conn: Arc<Conn>,
    handler: Arc<H>,
    mut shutdown: Shutdown,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, Arc<Conn>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = hyper::service::service_fn(move |req| {
        let handler = Arc::clone(&handler);
        let conn = Arc::clone(&conn);
        async move { Ok::<_, Infallible>(handler(req, conn).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = shutdown.wait() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// A JSON response with the given status.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Serializes `value` as a JSON response.
pub fn json_of<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_value(value) {
        Ok(v) => json(status, &v),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}

/// The one shape of every error Caracal answers itself:
/// `{"error": {"type", "code", "message"}}` (OpenAI-style, so SDKs surface it).
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    json(
        status,
        &serde_json::json!({ "error": { "type": kind, "code": code, "message": message } }),
    )
}

/// A plain-text response.
pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("cannot read request body: {0}")]
    Read(String),
}

/// Reads a request body of at most `bytes_max` bytes.
pub async fn read_body(body: Incoming, bytes_max: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, bytes_max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge(bytes_max))
        }
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// Binds a TCP listener, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// The credentials a request presents, as admission reads them: `Authorization: Bearer` (the
/// OpenAI SDK, JWTs), `X-API-Key` (the Anthropic SDK, v0.3 clients), and what the connection's
/// verified client certificate names (never a header).
pub fn credentials(
    headers: &hyper::HeaderMap,
    client: crate::admission::ClientIdentity,
) -> crate::admission::Credentials<'_> {
    let text = |name: hyper::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    crate::admission::Credentials {
        bearer: text(hyper::header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer ")),
        api_key: text(hyper::header::HeaderName::from_static("x-api-key")),
        client,
    }
}
