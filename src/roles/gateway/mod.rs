//! The gateway role: an authenticating, budget-enforcing, metering reverse proxy for LLM APIs.
//! This file owns the shared state, the listener and the background loops (hold extension and
//! expiry, pricebook refresh, cache invalidation); the request path is in `proxy.rs`.

mod auth;
mod cache;
mod error;
mod identity;
mod meter;
mod proxy;
mod settle;
mod tls;
mod upstream;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use self::auth::Authenticator;
use self::cache::TtlCache;
use self::error::GatewayError;
use self::proxy::{full, GatewayBody, RequestCtx};
use self::upstream::{RouteTable, UpstreamClient};
use super::ServeError;
use crate::bus::avro::Framing;
use crate::bus::{event_message, EventBus};
use crate::config::{Config, UnknownPrice};
use crate::core::agent::AgentId;
use crate::core::decision::{Decision, DenyReason};
use crate::core::events::Event;
use crate::core::pricing::Pricebook;
use crate::http::{self, Conn, Shutdown};
use crate::spend::{HoldId, SpendCache};
use crate::store::{ChainPolicies, Store};

/// How often the pricebook is re-read from the store.
const PRICEBOOK_REFRESH: Duration = Duration::from_secs(10);
/// How often the admin topics are polled for cache invalidations.
const INVALIDATION_POLL: Duration = Duration::from_millis(100);
/// Most admin events read per poll and partition.
const INVALIDATION_BATCH_MAX: usize = 500;
/// Upstream TCP connect deadline.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most expired holds posted per sweep.
const EXPIRED_PER_SWEEP_MAX: usize = 10_000;

/// Limits of the request path, from `gateway.*` configuration.
pub struct Limits {
    pub body_bytes_max: usize,
    pub request_timeout: Duration,
    pub hold_seconds: i64,
    pub cleanup_interval: Duration,
    /// `Some(window)` when replay protection is on.
    pub replay_window: Option<Duration>,
}

pub struct GatewayState {
    /// The client CA check of `mtls` mode (the handshake defers it to the request).
    client_trust: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    auth: Authenticator,
    routes: RouteTable,
    store: Arc<dyn Store>,
    spend: Arc<dyn SpendCache>,
    bus: Arc<dyn EventBus>,
    client: UpstreamClient,
    chains: TtlCache<AgentId, Arc<ChainPolicies>>,
    pricebook: RwLock<Arc<Pricebook>>,
    in_flight: Arc<Semaphore>,
    limits: Limits,
    allow_unknown_price: bool,
    instance: String,
    live_holds: Mutex<HashSet<HoldId>>,
}

impl GatewayState {
    /// The agent's chain and policies, cached for `policyCacheTTL`.
    async fn chain(&self, agent: AgentId) -> Result<Arc<ChainPolicies>, GatewayError> {
        if let Some(chain) = self.chains.get(&agent) {
            return Ok(chain);
        }
        let loaded = self
            .store
            .load_chain(agent)
            .await
            .map_err(|e| GatewayError::DependencyUnavailable {
                what: "store",
                detail: e.to_string(),
            })?
            .ok_or(GatewayError::Unauthenticated(
                "the credential names an unknown agent",
            ))?;
        let loaded = Arc::new(loaded);
        self.chains.insert(agent, Arc::clone(&loaded));
        Ok(loaded)
    }

    fn pricebook(&self) -> Arc<Pricebook> {
        self.pricebook
            .read()
            .map(|b| Arc::clone(&b))
            .unwrap_or_default()
    }

    /// Queues an event without waiting; a full buffer fails the request closed.
    fn emit(&self, event: Event) -> Result<(), GatewayError> {
        let message = event_message(&event, Framing::SingleObject).map_err(|e| {
            GatewayError::DependencyUnavailable {
                what: "event bus",
                detail: e.to_string(),
            }
        })?;
        self.bus
            .enqueue(vec![message])
            .map_err(|e| GatewayError::DependencyUnavailable {
                what: "event bus",
                detail: e.to_string(),
            })
    }

    /// Publishes an event and waits until it is durable.
    async fn publish(&self, event: Event) -> Result<(), crate::bus::BusError> {
        let message = event_message(&event, Framing::SingleObject)?;
        self.bus.publish(vec![message]).await.map(|_| ())
    }

    /// Records a denial decided before any reservation (no price known).
    fn emit_denied(
        &self,
        ctx: &RequestCtx,
        chain: &ChainPolicies,
        provider: &str,
        resource: &str,
        reason: DenyReason,
    ) -> Result<(), GatewayError> {
        let decision = Decision {
            allowed: false,
            reason: Some(reason),
            policy_id: None,
            remaining: None,
            evaluations: Vec::new(),
            allowlist_match: None,
        };
        let currency = chain
            .policies
            .first()
            .map_or(crate::core::money::Currency::USD, |p| p.spec.currency);
        self.emit(settle::decision_event(
            ctx,
            chain,
            provider,
            resource,
            Default::default(),
            currency,
            &decision,
            Duration::ZERO,
        ))
    }

    fn track_hold(&self, hold: HoldId) {
        if let Ok(mut live) = self.live_holds.lock() {
            live.insert(hold);
        }
        metrics::gauge!("caracal_reservations_open").increment(1.0);
    }

    fn untrack_hold(&self, hold: HoldId) {
        if let Ok(mut live) = self.live_holds.lock() {
            if live.remove(&hold) {
                metrics::gauge!("caracal_reservations_open").decrement(1.0);
            }
        }
    }
}

pub struct GatewayServer {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<GatewayState>,
}

impl GatewayServer {
    pub async fn prepare(
        config: &Config,
        store: Arc<dyn Store>,
        spend: Arc<dyn SpendCache>,
        bus: Arc<dyn EventBus>,
    ) -> Result<GatewayServer, ServeError> {
        let gateway = &config.gateway;
        let tuning = &gateway.config;
        let (tls, client_trust) =
            match tls::acceptor(gateway).map_err(|e| ServeError::Config(e.to_string()))? {
                Some(t) => (Some(t.acceptor), t.client_trust),
                None => (None, None),
            };
        let auth = Authenticator::new(gateway, Arc::clone(&store))
            .map_err(|e| ServeError::Config(e.to_string()))?;
        let pricebook = store.pricebook().await?;
        let state = GatewayState {
            client_trust,
            auth,
            routes: RouteTable::new(&gateway.routes),
            store,
            spend,
            bus,
            client: upstream::client(UPSTREAM_CONNECT_TIMEOUT),
            chains: TtlCache::new(
                Duration::from_secs(tuning.policy_cache_ttl),
                usize::try_from(tuning.policy_cache_max_size).unwrap_or(usize::MAX),
            ),
            pricebook: RwLock::new(Arc::new(pricebook)),
            in_flight: Arc::new(Semaphore::new(
                usize::try_from(tuning.max_concurrent_requests).unwrap_or(1),
            )),
            limits: Limits {
                body_bytes_max: gateway.body_bytes_max,
                request_timeout: Duration::from_secs(tuning.request_timeout),
                hold_seconds: i64::try_from(tuning.provisional_charge_expiration).unwrap_or(300),
                cleanup_interval: Duration::from_secs(
                    tuning.provisional_charge_cleanup_interval.max(1),
                ),
                replay_window: gateway
                    .replay_protection
                    .enabled
                    .then(|| Duration::from_secs(gateway.replay_protection.window_seconds)),
            },
            allow_unknown_price: gateway.unknown_price == UnknownPrice::Allow,
            instance: std::env::var("HOSTNAME").unwrap_or_else(|_| "caracal".into()),
            live_holds: Mutex::new(HashSet::new()),
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
        tokio::spawn(sweep_loop(Arc::clone(&state), shutdown.clone()));
        tokio::spawn(pricebook_loop(Arc::clone(&state), shutdown.clone()));
        tokio::spawn(invalidation_loop(Arc::clone(&state), shutdown.clone()));
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
        "/health" => {
            return full(http::json(
                StatusCode::OK,
                &serde_json::json!({ "status": "ok" }),
            ))
        }
        "/ready" => {
            let (body, ok) = crate::telemetry::run_checks(&state.ready_checks()).await;
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
        .map_or_else(|| "none".to_owned(), |(r, _)| r.prefix.clone());
    let identity = match (conn.peer_certificates.as_deref(), &state.client_trust) {
        (None, _) | (Some([]), _) => identity::ClientIdentity::Absent,
        (Some(chain), Some(trust))
            if *conn
                .client_chain_trusted
                .get_or_init(|| tls::client_trusted(trust.as_ref(), chain)) =>
        {
            identity::agent_of(chain).map_or(
                identity::ClientIdentity::Unnamed,
                identity::ClientIdentity::Named,
            )
        }
        (Some(_), _) => identity::ClientIdentity::Untrusted,
    };
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
        Err(e) => {
            let decision = if matches!(e, GatewayError::Denied { .. }) {
                "deny"
            } else {
                "none"
            };
            let status = if e.status().is_server_error() {
                "error"
            } else {
                "ok"
            };
            if e.status().is_server_error() {
                tracing::warn!(error = %e, code = e.code(), "request failed");
            }
            metrics::counter!("caracal_gateway_errors_total", "code" => e.code()).increment(1);
            (full(e.into_response()), status, decision)
        }
    };
    metrics::counter!("caracal_requests_total", "status" => status, "route" => route_label, "decision" => decision)
        .increment(1);
    metrics::histogram!("caracal_gateway_response_header_seconds")
        .record(started.elapsed().as_secs_f64());
    response
}

impl GatewayState {
    fn ready_checks(self: &Arc<Self>) -> Vec<crate::telemetry::ReadyCheck> {
        let (store, spend, bus) = (
            Arc::clone(&self.store),
            Arc::clone(&self.spend),
            Arc::clone(&self.bus),
        );
        vec![
            crate::telemetry::ready_check("store", move || {
                let store = Arc::clone(&store);
                async move { store.ping().await.map_err(|e| e.to_string()) }
            }),
            crate::telemetry::ready_check("spend_cache", move || {
                let spend = Arc::clone(&spend);
                async move { spend.ping().await.map_err(|e| e.to_string()) }
            }),
            crate::telemetry::ready_check("event_bus", move || {
                let bus = Arc::clone(&bus);
                async move { bus.ping().await.map_err(|e| e.to_string()) }
            }),
        ]
    }
}

/// Extends the holds of live responses and posts expired holds as estimated charges.
async fn sweep_loop(state: Arc<GatewayState>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(state.limits.cleanup_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.wait() => return,
        }
        let live: Vec<HoldId> = state
            .live_holds
            .lock()
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default();
        let expires = chrono::Utc::now() + chrono::Duration::seconds(state.limits.hold_seconds);
        for hold in live {
            if let Err(e) = state.spend.extend(hold, expires).await {
                tracing::debug!(error = %e, "hold not extended (settled meanwhile?)");
            }
        }
        match state
            .spend
            .take_expired(chrono::Utc::now(), EXPIRED_PER_SWEEP_MAX)
            .await
        {
            Ok(expired) => {
                for hold in expired {
                    metrics::counter!("caracal_reservations_expired_total").increment(1);
                    if let Some(event) = settle::expired_event(&state, &hold) {
                        if let Err(e) = state.publish(event).await {
                            tracing::error!(error = %e, "could not publish an expired hold's charge");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "expired holds sweep failed"),
        }
    }
}

async fn pricebook_loop(state: Arc<GatewayState>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(PRICEBOOK_REFRESH);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.wait() => return,
        }
        match state.store.pricebook().await {
            Ok(book) => {
                if let Ok(mut current) = state.pricebook.write() {
                    *current = Arc::new(book);
                }
            }
            Err(e) => tracing::warn!(error = %e, "pricebook refresh failed; keeping the last one"),
        }
    }
}

/// Tails the admin topics from their current end and drops cached keys and chains that an
/// AgentLifecycle or PolicyChange event touches.
async fn invalidation_loop(state: Arc<GatewayState>, mut shutdown: Shutdown) {
    use crate::core::events::{TOPIC_AGENT_LIFECYCLE, TOPIC_POLICY_CHANGES};
    let mut cursors = Vec::new();
    for topic in [TOPIC_AGENT_LIFECYCLE, TOPIC_POLICY_CHANGES] {
        for partition in 0..crate::core::events::topic_partitions(topic).unwrap_or(1) {
            let start = state
                .bus
                .high_watermark(topic, partition)
                .await
                .unwrap_or(0);
            cursors.push((topic, partition, start));
        }
    }
    let mut tick = tokio::time::interval(INVALIDATION_POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.wait() => return,
        }
        for (topic, partition, offset) in cursors.iter_mut() {
            let Ok(messages) = state
                .bus
                .fetch(topic, *partition, *offset, INVALIDATION_BATCH_MAX)
                .await
            else {
                continue;
            };
            for message in messages {
                *offset = message.offset + 1;
                if let Some(agent) = admin_event_agent(&message.value) {
                    state.auth.invalidate_agent(agent);
                    state.chains.invalidate_where(|_, chain| {
                        chain.chain.members().iter().any(|a| a.id == agent)
                    });
                }
            }
        }
    }
}

/// The agent an admin event (AgentLifecycle or PolicyChange) is about.
fn admin_event_agent(value: &[u8]) -> Option<AgentId> {
    match crate::bus::avro::decode_framed(value, |_| None).ok()?.event {
        Event::Lifecycle(e) => Some(e.agent_id),
        Event::Change(e) => Some(e.agent_id),
        _ => None,
    }
}
