//! The gateway role: the HTTP front door of admission for LLM APIs. Owns only HTTP: the
//! listener and TLS, routes, proxying, the client certificate's identity, the metered body and
//! the mapping of refusals to responses. Authentication, budgets, settlement and expiry are the
//! admission core's (`crate::admission`); the request path is in `proxy.rs`.

mod error;
mod identity;
mod meter;
mod proxy;
pub(super) mod tls;
mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use self::error::GatewayError;
use self::proxy::{full, GatewayBody};
use self::upstream::{RouteTable, UpstreamClient};
use super::ServeError;
use crate::admission::{Admission, ClientIdentity};
use crate::config::Config;
use crate::http::{self, Conn, Shutdown};

/// Upstream TCP connect deadline.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits of the HTTP request path, from `gateway.*` configuration.
pub struct Limits {
    pub body_bytes_max: usize,
    /// To the upstream's response headers, and between two body chunks.
    pub request_timeout: Duration,
}

pub struct GatewayState {
    /// The client CA check of `mtls` mode (the handshake defers it to the request).
    client_trust: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    admission: Arc<Admission>,
    routes: RouteTable,
    client: UpstreamClient,
    in_flight: Arc<Semaphore>,
    limits: Limits,
}

pub struct GatewayServer {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<GatewayState>,
}

impl GatewayServer {
    pub async fn prepare(
        config: &Config,
        admission: Arc<Admission>,
    ) -> Result<GatewayServer, ServeError> {
        let gateway = &config.gateway;
        let tuning = &gateway.config;
        let (tls, client_trust) =
            match tls::acceptor(gateway).map_err(|e| ServeError::Config(e.to_string()))? {
                Some(t) => (Some(t.acceptor), t.client_trust),
                None => (None, None),
            };
        let state = GatewayState {
            client_trust,
            admission,
            routes: RouteTable::new(&gateway.routes),
            client: upstream::client(UPSTREAM_CONNECT_TIMEOUT),
            in_flight: Arc::new(Semaphore::new(
                usize::try_from(tuning.max_concurrent_requests).unwrap_or(1),
            )),
            limits: Limits {
                body_bytes_max: gateway.body_bytes_max,
                request_timeout: Duration::from_secs(tuning.request_timeout),
            },
        };
        let addr = config.gateway_addr();
        let listener = http::bind(addr).await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        if tls.is_none() {
            tracing::warn!(address = %addr, "gateway serving plain HTTP (no TLS certificate configured)");
        }
        tracing::info!(address = %addr, scheme, routes = gateway.routes.len(), auth = ?gateway.auth_mode, "gateway listening");
        Ok(GatewayServer {
            listener,
            tls,
            state: Arc::new(state),
        })
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<(), std::io::Error> {
        let state = self.state;
        http::serve(
            self.listener,
            self.tls,
            move |req, conn| {
                let state = Arc::clone(&state);
                async move { handle(state, req, conn).await }
            },
            shutdown,
        )
        .await;
        Ok(())
    }
}

async fn handle(
    state: Arc<GatewayState>,
    req: Request<Incoming>,
    conn: Arc<Conn>,
) -> Response<GatewayBody> {
    let started = Instant::now();
    match req.uri().path() {
        "/health" => return full(http::json(StatusCode::OK, &crate::version::health_body())),
        "/ready" => {
            let (body, ok) = crate::telemetry::run_checks(&state.admission.ready_checks()).await;
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            return full(http::json(status, &body));
        }
        _ => {}
    }
    let route_label = state
        .routes
        .resolve(req.uri().path())
        .map_or(metrics::SharedString::const_str("none"), |(r, _)| {
            metrics::SharedString::from_shared(Arc::clone(&r.label))
        });
    let identity = client_identity(state.client_trust.as_deref(), &conn);
    let result = proxy::handle(Arc::clone(&state), req, identity).await;
    let (response, status, decision) = match result {
        Ok(response) => {
            let status = if response.status().is_server_error() {
                "error"
            } else {
                "ok"
            };
            (response, status, "allow")
        }
        Err(e) => refused(e),
    };
    metrics::counter!("caracal_requests_total", "status" => status, "route" => route_label, "decision" => decision)
        .increment(1);
    metrics::histogram!("caracal_gateway_response_header_seconds")
        .record(started.elapsed().as_secs_f64());
    response
}

/// What the connection's client certificate says (checked against the client CA once per
/// connection). Shared with the MCP role's listener.
pub(super) fn client_identity(
    trust: Option<&dyn rustls::server::danger::ClientCertVerifier>,
    conn: &Conn,
) -> ClientIdentity {
    match (conn.peer_certificates.as_deref(), trust) {
        (None, _) | (Some([]), _) => ClientIdentity::Absent,
        (Some(chain), Some(trust))
            if *conn
                .client_chain_trusted
                .get_or_init(|| tls::client_trusted(trust, chain)) =>
        {
            identity::agent_of(chain).map_or(ClientIdentity::Unnamed, ClientIdentity::Named)
        }
        (Some(_), _) => ClientIdentity::Untrusted,
    }
}

/// The response of a refused or failed request, with its `status` and `decision` labels; a
/// failure of ours is logged here, once.
fn refused(e: GatewayError) -> (Response<GatewayBody>, &'static str, &'static str) {
    let decision = if matches!(e, GatewayError::Denied { .. }) {
        "deny"
    } else {
        "none"
    };
    let status = if e.status().is_server_error() {
        tracing::warn!(error = %e, code = e.code(), "request failed");
        "error"
    } else {
        "ok"
    };
    metrics::counter!("caracal_gateway_errors_total", "code" => e.code()).increment(1);
    (full(e.into_response()), status, decision)
}
