//! The admin role: a JSON HTTP API over `ops` (agents, keys, policies, prices, outbox) behind a
//! bearer admin token, plus `/health` and `/openapi.json`. Routing is in `routes.rs`; this file
//! owns the token, the listener and the request envelope (auth, body limit, metrics).

mod routes;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::ServeError;
use crate::bus::EventBus;
use crate::config::Config;
use crate::http::{self, Body, Shutdown};
use crate::ops::Ops;
use crate::store::Store;

/// Largest admin request body (a pricebook import is the biggest), in bytes.
pub const ADMIN_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// File (in the data dir) holding the generated admin token when none is configured.
pub const GENERATED_TOKEN_FILE: &str = "admin-token";
/// The OpenAPI document of this API.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub struct AdminServer {
    listener: TcpListener,
    state: Arc<State>,
}

struct State {
    ops: Ops,
    bus: Arc<dyn EventBus>,
    token: String,
}

impl AdminServer {
    /// Resolves the admin token and binds the listener, so errors surface before `serve` logs
    /// that it is up.
    pub async fn prepare(
        config: &Config,
        store: Arc<dyn Store>,
        bus: Arc<dyn EventBus>,
    ) -> Result<AdminServer, ServeError> {
        let token = match &config.admin.token {
            Some(token) => token.expose().to_owned(),
            None => generated_token(&config.data_dir)?,
        };
        let addr = config.admin_addr();
        let listener = http::bind(addr).await?;
        tracing::info!(address = %addr, "admin API listening (/v1/..., /openapi.json, /health)");
        Ok(AdminServer {
            listener,
            state: Arc::new(State {
                ops: Ops::new(store),
                bus,
                token,
            }),
        })
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<(), std::io::Error> {
        let state = self.state;
        http::serve(
            self.listener,
            None,
            move |req, _conn| {
                let state = Arc::clone(&state);
                async move { handle(&state, req).await }
            },
            shutdown,
        )
        .await;
        Ok(())
    }
}

/// Reads the generated token, or makes one (256 random bits, file mode 0600) on first start.
fn generated_token(data_dir: &Path) -> Result<String, ServeError> {
    let path = data_dir.join(GENERATED_TOKEN_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim().to_owned();
        if !token.is_empty() {
            tracing::info!(file = %path.display(), "admin token read from the data dir");
            return Ok(token);
        }
    }
    let mut random = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| ServeError::Config("no system randomness".into()))?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(data_dir)?;
    write_private(&path, &token)?;
    tracing::info!(file = %path.display(), "no admin token configured; generated one");
    Ok(token)
}

fn write_private(path: &Path, content: &str) -> Result<(), std::io::Error> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")
}

fn authorized(state: &State, req: &Request<Incoming>) -> bool {
    let presented = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = state.token.as_bytes();
    let given = presented.trim().as_bytes();
    // Constant time over the expected length; lengths are not secret.
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let response = match path.as_str() {
        "/health" => http::json(StatusCode::OK, &crate::version::health_body()),
        "/openapi.json" => http::text(StatusCode::OK, "application/json", OPENAPI_JSON.to_owned()),
        _ if !authorized(state, &req) => http::error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing or wrong admin token: send Authorization: Bearer <admin token>",
        ),
        _ => routes::route(&state.ops, &state.bus, req).await,
    };
    let status = response.status().as_u16().to_string();
    metrics::counter!("caracal_admin_requests_total", "status" => status).increment(1);
    metrics::histogram!("caracal_admin_request_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    response
}
