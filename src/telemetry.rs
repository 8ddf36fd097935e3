//! Logs, metrics and the per-process telemetry listener (`/metrics`, `/health`, `/ready`).
//! One listener per process whatever roles it runs; roles register readiness checks here and
//! never bind a telemetry port of their own.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::http::{self, Body, Shutdown};

/// Latency buckets in seconds, from 50 µs to 30 s, so histograms stay histograms.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];
/// Rows per sealed Merkle batch.
const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];
/// How often the recorder's histograms are compacted.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Deadline of each readiness check.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Installs the tracing subscriber: JSON lines or human text, filtered by `RUST_LOG`
/// (default `info`). Colours only when stderr is a terminal, so log files stay plain text.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Installs the global Prometheus recorder and returns the handle that renders it.
pub fn init_metrics() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS_SECONDS)
        .map_err(|e| e.to_string())?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("caracal_merkle_batch_size".into()),
            BATCH_SIZE_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    let _ = GLOBAL_HANDLE.set(handle.clone());
    Ok(handle)
}

/// Warnings about this process's configuration, shown in every `/ready` body (set once at start).
static WARNINGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Sets the warnings every `/ready` body shows as `warnings` (they do not make it fail). Only
/// the first call counts: a process has one configuration.
pub fn set_warnings(warnings: Vec<String>) {
    let _ = WARNINGS.set(warnings);
}

/// The recorder installed by `init_metrics`, for listeners that also answer `/metrics` (the
/// MCP adapter's port, as the seeds expect).
static GLOBAL_HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// The process's metrics in Prometheus text; empty before `init_metrics`.
pub fn render_metrics() -> String {
    GLOBAL_HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// A named readiness check; `Err` carries a message safe to show (no secrets).
pub type ReadyCheck = (&'static str, Arc<dyn Fn() -> CheckFuture + Send + Sync>);

/// Builds a readiness check from an async closure.
pub fn ready_check<F, Fut>(name: &'static str, f: F) -> ReadyCheck
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    (name, Arc::new(move || Box::pin(f()) as CheckFuture))
}

/// Runs every check with a deadline; returns the JSON body and whether all passed. Each
/// outcome also sets `caracal_dependency_up{dependency}` (1 passed, 0 failed), which the
/// listener refreshes every `UPKEEP_INTERVAL` so alerts see a dependency go away unprobed.
pub async fn run_checks(checks: &[ReadyCheck]) -> (serde_json::Value, bool) {
    let mut results = serde_json::Map::new();
    let mut ok = true;
    for (name, check) in checks {
        let outcome = match tokio::time::timeout(READY_CHECK_TIMEOUT, check()).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(e)) => e,
            Err(_) => "timed out".to_owned(),
        };
        let up = if outcome == "ok" { 1.0 } else { 0.0 };
        metrics::gauge!("caracal_dependency_up", "dependency" => *name).set(up);
        ok &= outcome == "ok";
        results.insert((*name).to_owned(), serde_json::Value::String(outcome));
    }
    let status = if ok { "ready" } else { "not_ready" };
    let mut body = serde_json::json!({ "status": status, "checks": results });
    if let Some(warnings) = WARNINGS.get().filter(|w| !w.is_empty()) {
        body["warnings"] = serde_json::json!(warnings);
    }
    (body, ok)
}

/// Serves `/metrics`, `/health` and `/ready` until shutdown.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    checks: Vec<ReadyCheck>,
    shutdown: Shutdown,
) -> Result<(), std::io::Error> {
    let listener = http::bind(addr).await?;
    tracing::info!(address = %addr, "telemetry listening (/metrics, /health, /ready)");
    let checks = Arc::new(checks);
    let upkeep = handle.clone();
    let upkeep_checks = Arc::clone(&checks);
    let mut upkeep_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    upkeep.run_upkeep();
                    run_checks(&upkeep_checks).await;
                }
                () = upkeep_shutdown.wait() => break,
            }
        }
    });
    http::serve(
        listener,
        None,
        move |req, _conn| {
            let handle = handle.clone();
            let checks = Arc::clone(&checks);
            async move { route(req.method(), req.uri().path(), &handle, &checks).await }
        },
        shutdown,
    )
    .await;
    Ok(())
}

async fn route(
    method: &Method,
    path: &str,
    handle: &PrometheusHandle,
    checks: &[ReadyCheck],
) -> hyper::Response<Body> {
    if method != Method::GET {
        return http::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET",
        );
    }
    match path {
        "/metrics" => http::text(StatusCode::OK, "text/plain; version=0.0.4", handle.render()),
        "/health" => http::json(StatusCode::OK, &crate::version::health_body()),
        "/ready" => {
            let (body, ok) = run_checks(checks).await;
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            http::json(status, &body)
        }
        _ => http::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}
