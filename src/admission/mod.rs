//! The admission core every entry point shares (the gateway's HTTP proxy, the MCP adapter):
//! authenticate → load the chain → price → reserve (a `PendingCharge` that settles itself) →
//! settle or expire → events, plus hold extension, expiry and cache invalidation.
//! Knows nothing of HTTP or JSON-RPC: callers hand it credentials and call facts, and map a
//! `Refusal` to their own protocol.

pub mod auth;
mod background;
pub mod cache;
mod charge;
mod error;
mod events;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use uuid::Uuid;

use self::auth::Authenticator;
pub use self::auth::{AuthSetupError, ClientIdentity, Credentials};
use self::cache::TtlCache;
pub use self::charge::{Finished, PendingCharge};
pub use self::error::Refusal;
pub use self::events::expired_event;
use crate::bus::{avro, event_message, BusError, EventBus};
use crate::config::{GatewayConfig, UnknownPrice};
use crate::core::agent::AgentId;
use crate::core::decision::{Decision, DenyReason};
use crate::core::events::{Event, Source};
use crate::core::money::{Currency, Micros, Money};
use crate::core::pricing::{Price, Pricebook};
use crate::spend::{HoldId, HoldInfo, ReserveOutcome, ReserveRequest, SpendCache};
use crate::store::{ChainPolicies, Store};

pub use self::background::Swept;

/// The limits and switches of admission, from `gateway.*` configuration.
#[derive(Debug, Clone)]
pub struct AdmissionLimits {
    /// Seconds a hold lives before the sweeper may charge it (`provisionalChargeExpiration`).
    pub hold_seconds: i64,
    /// How often live holds are extended and expired ones charged
    /// (`provisionalChargeCleanupInterval`).
    pub cleanup_interval: Duration,
    /// `Some(window)` when replay protection is on.
    pub replay_window: Option<Duration>,
    /// `policyCacheTTL` and `policyCacheMaxSize`, for agent chains and API keys alike.
    pub cache_ttl: Duration,
    pub cache_entries_max: usize,
    /// Expired holds charged per shard and sweep.
    pub expired_per_sweep_max: usize,
    /// `gateway.unknownPrice: allow` lets an unpriced call through at price zero.
    pub allow_unknown_price: bool,
}

impl AdmissionLimits {
    pub fn from_config(gateway: &GatewayConfig) -> AdmissionLimits {
        let tuning = &gateway.config;
        AdmissionLimits {
            hold_seconds: i64::try_from(tuning.provisional_charge_expiration).unwrap_or(300),
            cleanup_interval: Duration::from_secs(
                tuning.provisional_charge_cleanup_interval.max(1),
            ),
            replay_window: gateway
                .replay_protection
                .enabled
                .then(|| Duration::from_secs(gateway.replay_protection.window_seconds)),
            cache_ttl: Duration::from_secs(tuning.policy_cache_ttl),
            cache_entries_max: usize::try_from(tuning.policy_cache_max_size).unwrap_or(usize::MAX),
            expired_per_sweep_max: 10_000,
            allow_unknown_price: gateway.unknown_price == UnknownPrice::Allow,
        }
    }
}

/// What one call is, as the entry point describes it before pricing.
#[derive(Debug, Clone)]
pub struct CallFacts {
    pub request_id: Uuid,
    pub correlation_id: String,
    pub chain: Arc<ChainPolicies>,
    pub source: Source,
    /// `openai`, `anthropic`, `mcp`, ...
    pub provider: String,
    /// The model, or `server/tool` for MCP.
    pub resource: String,
    /// `chat.completions`, `messages`, `tools/call`, ...
    pub operation: String,
    /// Priced per call (a tool, a generic upstream): a success without usage is one call.
    pub per_call: bool,
}

/// The price a call is admitted at, and the pricebook version it came from.
#[derive(Debug, Clone)]
pub struct Priced {
    pub price: Price,
    pub pricebook_version: i64,
}

/// The shared admission state of one process: opened once, used by every entry point.
pub struct Admission {
    auth: Authenticator,
    store: Arc<dyn Store>,
    spend: Arc<dyn SpendCache>,
    bus: Arc<dyn EventBus>,
    chains: TtlCache<AgentId, Arc<ChainPolicies>>,
    pricebook: RwLock<Arc<Pricebook>>,
    limits: AdmissionLimits,
    instance: String,
    /// Holds whose call is still running here: extended by the sweeper, never expired.
    /// Each is re-asserted if the spend cache lost its data.
    live_holds: Mutex<HashMap<HoldId, HoldInfo>>,
}

impl Admission {
    pub async fn open(
        gateway: &GatewayConfig,
        store: Arc<dyn Store>,
        spend: Arc<dyn SpendCache>,
        bus: Arc<dyn EventBus>,
    ) -> Result<Arc<Admission>, OpenError> {
        let limits = AdmissionLimits::from_config(gateway);
        let auth = Authenticator::new(gateway, Arc::clone(&store), &limits)?;
        let pricebook = store.pricebook().await?;
        Ok(Arc::new(Admission {
            auth,
            chains: TtlCache::new(limits.cache_ttl, limits.cache_entries_max),
            store,
            spend,
            bus,
            pricebook: RwLock::new(Arc::new(pricebook)),
            limits,
            instance: std::env::var("HOSTNAME").unwrap_or_else(|_| "caracal".into()),
            live_holds: Mutex::new(HashMap::new()),
        }))
    }

    pub fn limits(&self) -> &AdmissionLimits {
        &self.limits
    }

    /// The calling agent, by the configured mode.
    pub async fn authenticate(&self, credentials: &Credentials<'_>) -> Result<AgentId, Refusal> {
        self.auth.authenticate(credentials).await
    }

    /// Replay protection (when enabled): a fresh timestamp (Unix seconds, within the window)
    /// and a nonce this agent has not used within it, remembered in the spend cache so every
    /// replica sees it.
    pub async fn check_replay(
        &self,
        agent: AgentId,
        nonce: Option<&str>,
        timestamp: Option<&str>,
    ) -> Result<(), Refusal> {
        let Some(window) = self.limits.replay_window else {
            return Ok(());
        };
        use crate::spend::nonces::{NONCE_BYTES_MAX, NONCE_BYTES_MIN};
        let nonce = nonce
            .map(str::trim)
            .filter(|n| (NONCE_BYTES_MIN..=NONCE_BYTES_MAX).contains(&n.len()))
            .ok_or(Refusal::Unauthenticated(
                "replay protection: send X-Caracal-Nonce (16 to 128 characters)",
            ))?;
        let timestamp: i64 =
            timestamp
                .and_then(|t| t.trim().parse().ok())
                .ok_or(Refusal::Unauthenticated(
                    "replay protection: send X-Caracal-Timestamp (Unix seconds)",
                ))?;
        let now = Utc::now();
        let window_seconds = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        if (now.timestamp() - timestamp).abs() > window_seconds {
            return Err(Refusal::Unauthenticated(
                "replay protection: X-Caracal-Timestamp is outside the accepted window",
            ));
        }
        let expires = now + ChronoDuration::seconds(window_seconds.saturating_mul(2));
        let fresh = self
            .spend
            .remember_nonce(&format!("{agent}:{nonce}"), expires, now)
            .await
            .map_err(|e| Refusal::unavailable("spend cache", e))?;
        if fresh {
            Ok(())
        } else {
            Err(Refusal::Unauthenticated(
                "replay protection: this nonce was already used",
            ))
        }
    }

    /// The agent's chain and policies, cached for `policyCacheTTL`.
    pub async fn chain(&self, agent: AgentId) -> Result<Arc<ChainPolicies>, Refusal> {
        if let Some(chain) = self.chains.get(&agent) {
            return Ok(chain);
        }
        let loaded = self
            .store
            .load_chain(agent)
            .await
            .map_err(|e| Refusal::unavailable("store", e))?
            .ok_or(Refusal::Unauthenticated(
                "the credential names an unknown agent",
            ))?;
        let loaded = Arc::new(loaded);
        self.chains.insert(agent, Arc::clone(&loaded));
        Ok(loaded)
    }

    /// The price of the call's resource. No price: a denial (`unknown_price`, recorded as a
    /// PolicyDecision) unless `unknownPrice: allow`, which admits it at zero.
    pub fn price(&self, call: &CallFacts) -> Result<Priced, Refusal> {
        let book = self.current_pricebook()?;
        if let Some(price) = book.get(&call.provider, &call.resource) {
            return Ok(Priced {
                price: price.clone(),
                pricebook_version: book.version,
            });
        }
        if self.limits.allow_unknown_price {
            return Ok(Priced {
                price: Price::free(chain_currency(&call.chain)),
                pricebook_version: book.version,
            });
        }
        let decision = Decision {
            allowed: false,
            reason: Some(DenyReason::UnknownPrice),
            policy_id: None,
            remaining: None,
            evaluations: Vec::new(),
            allowlist_match: None,
        };
        let currency = chain_currency(&call.chain);
        let event = events::decision(call, Micros::ZERO, currency, &decision, Duration::ZERO);
        self.emit(event)?;
        Err(Refusal::denied(&decision))
    }

    /// The atomic check-and-hold over every window of every policy of the chain. Allowed: a
    /// `PendingCharge` that owns the hold from now on (dropping it settles it). Denied: the
    /// reason, and nothing is held. Both outcomes are recorded as a PolicyDecision.
    pub async fn admit(
        self: &Arc<Self>,
        call: CallFacts,
        priced: Priced,
        estimate: Micros,
    ) -> Result<PendingCharge, Refusal> {
        let now = Utc::now();
        let hold_id = HoldId(Uuid::now_v7());
        let started = Instant::now();
        let outcome = self
            .spend
            .reserve(ReserveRequest {
                hold_id,
                chain: call.chain.chain.clone(),
                policies: call.chain.policies.clone(),
                resource: format!("{}:{}", call.provider, call.resource),
                source: call.source,
                operation: call.operation.clone(),
                estimate: Money {
                    micros: estimate,
                    currency: priced.price.currency,
                },
                now,
                expires_at: now + ChronoDuration::seconds(self.limits.hold_seconds),
            })
            .await
            .map_err(|e| Refusal::unavailable("spend cache", e))?;
        let evaluation = started.elapsed();
        metrics::histogram!("caracal_policy_evaluation_seconds").record(evaluation.as_secs_f64());
        let currency = priced.price.currency;
        let reservation = match outcome {
            ReserveOutcome::Denied(decision) => {
                self.emit(events::decision(
                    &call, estimate, currency, &decision, evaluation,
                ))?;
                return Err(Refusal::denied(&decision));
            }
            ReserveOutcome::Reserved(reservation) => reservation,
        };
        let event = events::decision(&call, estimate, currency, &reservation.decision, evaluation);
        let pending = PendingCharge::new(Arc::clone(self), call, priced, estimate, &reservation);
        // A decision that cannot be recorded refuses the call; the hold is voided on drop.
        self.emit(event)?;
        Ok(pending)
    }

    /// Readiness of every dependency admission needs.
    pub fn ready_checks(self: &Arc<Self>) -> Vec<crate::telemetry::ReadyCheck> {
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

    /// The pricebook in force. A poisoned lock is an error, never an empty pricebook (with
    /// `unknownPrice: allow` that would make every call free).
    fn current_pricebook(&self) -> Result<Arc<Pricebook>, Refusal> {
        self.pricebook
            .read()
            .map(|book| Arc::clone(&book))
            .map_err(|_| Refusal::Unavailable {
                what: "pricebook",
                detail: "the pricebook lock was poisoned by an earlier panic".into(),
            })
    }

    /// Queues an event without waiting; a full buffer refuses the call (fail closed).
    fn emit(&self, event: Event) -> Result<(), Refusal> {
        let message = event_message(&event, avro::wire::current().framing(event.kind()))
            .map_err(|e| Refusal::unavailable("event bus", e))?;
        self.bus
            .enqueue(vec![message])
            .map_err(|e| Refusal::unavailable("event bus", e))
    }

    /// Publishes an event and waits until it is durable.
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let message = event_message(event, avro::wire::current().framing(event.kind()))?;
        self.bus.publish(vec![message]).await.map(|_| ())
    }

    /// The live holds. Every change under the lock is one insert or remove, so a poisoned lock
    /// still guards a consistent map: it is used, not skipped (a hold left out would not be
    /// extended, and would expire under a live stream).
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<HoldId, HoldInfo>> {
        self.live_holds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn track_hold(&self, hold: HoldInfo) {
        if self.live().insert(hold.hold_id, hold).is_none() {
            metrics::gauge!("caracal_reservations_open").increment(1.0);
        }
    }

    fn untrack_hold(&self, hold: HoldId) {
        if self.live().remove(&hold).is_some() {
            metrics::gauge!("caracal_reservations_open").decrement(1.0);
        }
    }
}

/// Why admission could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn chain_currency(chain: &ChainPolicies) -> Currency {
    chain
        .policies
        .first()
        .map_or(Currency::USD, |p| p.spec.currency)
}
