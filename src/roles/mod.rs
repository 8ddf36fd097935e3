//! Wiring: which roles a process runs, which adapters back them, and the `serve` lifecycle
//! (start, log where each listener is, stop gracefully on SIGTERM/SIGINT).
//! Architecture invariant: this is the only module that names a concrete adapter.

pub mod admin;
pub mod audit;
pub mod db;
pub mod gateway;
pub mod ledger;
pub mod mcp;
pub mod metrics;
pub mod wire;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::bus::kafka::KafkaBus;
use crate::bus::local::LocalBus;
use crate::bus::EventBus;
use crate::config::Config;
use crate::http::Shutdown;
use crate::ledger::recorded::LedgerRecord;
use crate::spend::local::LocalSpend;
use crate::spend::redis::{RedisLimits, RedisSpend, RedisTarget, RedisTlsFiles};
use crate::spend::SpendCache;
use crate::store::audit::AuditStore;
use crate::store::leases::LeaseStore;
use crate::store::ledger::LedgerStore;
use crate::store::postgres::{PgStore, PoolLimits};
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Gateway,
    Mcp,
    Ledger,
    Metrics,
    Audit,
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Gateway,
        Role::Mcp,
        Role::Ledger,
        Role::Metrics,
        Role::Audit,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Mcp => "mcp",
            Role::Ledger => "ledger",
            Role::Metrics => "metrics",
            Role::Audit => "audit",
            Role::Admin => "admin",
        }
    }

    /// Whether the role reserves budget, and so needs the spend cache.
    pub fn reserves_budget(self) -> bool {
        matches!(self, Role::Gateway | Role::Mcp)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}: expected one of gateway, mcp, ledger, metrics, audit, admin, all"))
    }
}

/// Resolves `--role` values: empty or `all` means every role (`serve` then leaves out the ones
/// the config cannot or does not want to run).
pub fn select_roles(requested: &[String]) -> Result<Vec<Role>, String> {
    if requested.is_empty() || requested.iter().any(|r| r == "all") {
        return Ok(Role::ALL.to_vec());
    }
    let mut roles = Vec::new();
    for text in requested {
        let role: Role = text.parse()?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles.sort();
    Ok(roles)
}

/// Why `serve` (or a backend it opens) failed, by cause, so an operator can tell a rejected
/// setting from a service that is down.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is missing, invalid, or names something this build cannot serve.
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The bus's own message (it names the bus and the brokers); transparent so the chain
    /// main prints does not say it twice.
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    #[error(transparent)]
    Spend(#[from] crate::spend::SpendError),
    /// A role's task stopped by itself or failed.
    #[error("role {role}: {cause}")]
    Task { role: &'static str, cause: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// `kafka.schemaRegistry` is set and registering the schemas failed: no message is
    /// framed any other way.
    #[error(transparent)]
    SchemaRegistry(#[from] crate::kafka::registry::RegistryError),
}

impl From<crate::admission::OpenError> for ServeError {
    fn from(e: crate::admission::OpenError) -> ServeError {
        match e {
            crate::admission::OpenError::Auth(e) => ServeError::Config(e.to_string()),
            crate::admission::OpenError::Store(e) => ServeError::Store(e),
        }
    }
}

/// The system of record behind each of its traits (one backend, one connection pool).
#[derive(Clone)]
pub struct Stores {
    pub store: Arc<dyn Store>,
    pub ledger: Arc<dyn LedgerStore>,
    pub leases: Arc<dyn LeaseStore>,
    pub audit: Arc<dyn AuditStore>,
}

/// Opens the configured system of record: the embedded SQLite file unless Postgres is set.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServeError> {
    Ok(open_stores(config).await?.store)
}

/// Opens the configured system of record behind every store trait: Postgres when
/// `postgresql` is configured (its schema must be current: `caracal db migrate up`), else the
/// embedded SQLite file (which migrates itself on open).
pub async fn open_stores(config: &Config) -> Result<Stores, ServeError> {
    if config.postgresql.is_configured() {
        let store = Arc::new(PgStore::open(&config.postgresql, pool_limits(config)).await?);
        return Ok(Stores {
            store: Arc::clone(&store) as Arc<dyn Store>,
            ledger: Arc::clone(&store) as Arc<dyn LedgerStore>,
            leases: Arc::clone(&store) as Arc<dyn LeaseStore>,
            audit: store,
        });
    }
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&data_dir))
        .await
        .map_err(|e| task_failed("store open", e))??;
    let store = Arc::new(store);
    Ok(Stores {
        store: Arc::clone(&store) as Arc<dyn Store>,
        ledger: Arc::clone(&store) as Arc<dyn LedgerStore>,
        leases: Arc::clone(&store) as Arc<dyn LeaseStore>,
        audit: store,
    })
}

/// The Postgres pool's limits from `gateway.config` (`dbPoolSize + dbMaxOverflow`,
/// `dbPoolTimeout`).
pub fn pool_limits(config: &Config) -> PoolLimits {
    PoolLimits::from_tuning(&config.gateway.config)
}

/// Opens the event bus: the embedded log unless Kafka is configured.
pub async fn open_bus(config: &Config) -> Result<Arc<dyn EventBus>, ServeError> {
    if config.kafka.is_configured() {
        let bus = KafkaBus::connect(&config.kafka).await?;
        return Ok(Arc::new(bus));
    }
    let data_dir = config.data_dir.clone();
    let limits = config.embedded.event_log.clone();
    let bus = tokio::task::spawn_blocking(move || LocalBus::open(&data_dir, limits))
        .await
        .map_err(|e| task_failed("event log open", e))??;
    Ok(Arc::new(bus))
}

/// Opens the spend cache: in-process (with its journal) unless Redis is configured. A Redis
/// that lost its data is rebuilt from the ledger and the metering events it has not applied.
pub async fn open_spend(
    config: &Config,
    stores: &Stores,
    bus: &Arc<dyn EventBus>,
) -> Result<Arc<dyn SpendCache>, ServeError> {
    if config.redis.is_configured() {
        let (target, limits) = redis_settings(&config.redis);
        let record = Arc::new(LedgerRecord {
            ledger: Arc::clone(&stores.ledger),
            leases: Arc::clone(&stores.leases),
            bus: Arc::clone(bus),
            consumer: ledger::CONSUMER.to_owned(),
        });
        let spend = RedisSpend::open(&target, limits, record).await?;
        return Ok(Arc::new(spend));
    }
    let data_dir = config.data_dir.clone();
    let limits = config.embedded.spend_cache.clone();
    let spend = tokio::task::spawn_blocking(move || LocalSpend::open(&data_dir, limits))
        .await
        .map_err(|e| task_failed("spend cache open", e))??;
    Ok(Arc::new(spend))
}

/// Where Redis is, how to reach it, and its limits, from `redis.*`.
pub(crate) fn redis_settings(redis: &crate::config::RedisConfig) -> (RedisTarget, RedisLimits) {
    let tls = redis.tls_enabled().then(|| RedisTlsFiles {
        ca_cert_file: redis.tls.ca_cert_file.clone(),
        cert_file: redis.tls.cert_file.clone(),
        key_file: redis.tls.key_file.clone(),
    });
    let target = RedisTarget {
        url: redis.url.as_ref().map(|u| u.expose().to_owned()),
        host: redis.host.clone().unwrap_or_else(|| "localhost".into()),
        port: redis.port,
        password: redis.password.as_ref().map(|p| p.expose().to_owned()),
        cluster: redis.cluster,
        tls,
    };
    let limits = RedisLimits {
        command_timeout_ms: redis.command_timeout_ms,
        connect_timeout_ms: redis.connect_timeout_ms,
        connections: redis.connections,
        expiry_shards: redis.expiry_shards,
        epoch_check_ms: redis.epoch_check_ms,
        rebuild_grace_ms: redis.rebuild_grace_ms,
        tombstone_ms: redis.settled_tombstone_ms,
        ..RedisLimits::default()
    };
    (target, limits)
}

fn task_failed(role: &'static str, e: tokio::task::JoinError) -> ServeError {
    ServeError::Task {
        role,
        cause: e.to_string(),
    }
}

/// Every backend a process uses, opened once whichever roles need them.
pub struct Backends {
    pub stores: Stores,
    pub bus: Arc<dyn EventBus>,
    /// Opened only when a role that reserves budget runs here (gateway, mcp).
    pub spend: Option<Arc<dyn SpendCache>>,
    /// The metrics role's aggregates in Redis, opened only when that role runs here.
    pub aggregates: Option<Arc<crate::aggregate::redis::RedisAggregates>>,
    /// The admission core, opened by the first role that reserves budget and shared by the
    /// others (one set of caches, one live-hold set, one background sweeper per process).
    admission: tokio::sync::OnceCell<Arc<crate::admission::Admission>>,
}

impl Backends {
    pub async fn open(config: &Config, roles: &[Role]) -> Result<Backends, ServeError> {
        let stores = open_stores(config).await?;
        let bus = open_bus(config).await?;
        let spend = match roles.iter().any(|r| r.reserves_budget()) {
            true => Some(open_spend(config, &stores, &bus).await?),
            false => None,
        };
        let aggregates = match roles.contains(&Role::Metrics) {
            true => Some(metrics::open_aggregates(config, Arc::clone(&stores.leases)).await?),
            false => None,
        };
        Ok(Backends {
            stores,
            bus,
            spend,
            aggregates,
            admission: tokio::sync::OnceCell::new(),
        })
    }

    /// The process's admission core: opened on first use, its background work (hold
    /// extension, expiry, invalidation) started once.
    pub async fn admission(
        &self,
        config: &Config,
        shutdown: &Shutdown,
    ) -> Result<Arc<crate::admission::Admission>, ServeError> {
        let opened = self.admission.get_or_try_init(|| async {
            let spend = self.spend.clone().ok_or_else(|| {
                ServeError::Config("admission needs a spend cache, and none was opened".into())
            })?;
            let admission = crate::admission::Admission::open(
                &config.gateway,
                Arc::clone(&self.stores.store),
                spend,
                Arc::clone(&self.bus),
            )
            .await?;
            tokio::spawn(Arc::clone(&admission).run_background(shutdown.clone()));
            Ok::<_, ServeError>(admission)
        });
        Ok(Arc::clone(opened.await?))
    }

    /// The readiness of every backend this process opened.
    fn ready_checks(&self) -> Vec<crate::telemetry::ReadyCheck> {
        let store = Arc::clone(&self.stores.store);
        let bus = Arc::clone(&self.bus);
        let mut checks = vec![
            crate::telemetry::ready_check("store", move || {
                let store = Arc::clone(&store);
                async move { store.ping().await.map_err(|e| e.to_string()) }
            }),
            crate::telemetry::ready_check("event_bus", move || {
                let bus = Arc::clone(&bus);
                async move { bus.ping().await.map_err(|e| e.to_string()) }
            }),
        ];
        if let Some(spend) = &self.spend {
            let spend = Arc::clone(spend);
            checks.push(crate::telemetry::ready_check("spend_cache", move || {
                let spend = Arc::clone(&spend);
                async move { spend.ping().await.map_err(|e| e.to_string()) }
            }));
        }
        if let Some(aggregates) = &self.aggregates {
            let aggregates = Arc::clone(aggregates);
            checks.push(crate::telemetry::ready_check("aggregates", move || {
                let aggregates = Arc::clone(&aggregates);
                async move {
                    use crate::aggregate::AggregateStore;
                    aggregates.ping().await.map_err(|e| e.to_string())
                }
            }));
        }
        checks
    }
}

/// What every role hands `serve`: a task to await until shutdown.
pub struct Started {
    pub role: Role,
    pub task: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>,
}

impl Started {
    fn new(
        role: Role,
        task: impl std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    ) -> Started {
        Started {
            role,
            task: Box::pin(task),
        }
    }
}

/// Starts one role over the process's backends: the one contract every role follows.
pub async fn start(
    role: Role,
    config: &Config,
    backends: &Backends,
    shutdown: Shutdown,
) -> Result<Started, ServeError> {
    let (stores, bus) = (&backends.stores, Arc::clone(&backends.bus));
    Ok(match role {
        Role::Admin => {
            let admin = admin::AdminServer::prepare(config, Arc::clone(&stores.store), bus).await?;
            Started::new(role, admin.run(shutdown))
        }
        Role::Gateway => {
            let admission = backends.admission(config, &shutdown).await?;
            let gateway = gateway::GatewayServer::prepare(config, admission).await?;
            Started::new(role, gateway.run(shutdown))
        }
        Role::Mcp => {
            let admission = backends.admission(config, &shutdown).await?;
            let mcp = mcp::McpServer::prepare(config, admission).await?;
            Started::new(role, mcp.run(shutdown))
        }
        Role::Ledger => {
            let (ledger, leases) = (Arc::clone(&stores.ledger), Arc::clone(&stores.leases));
            Started::new(
                role,
                ledger::prepare(config, ledger, leases, bus, shutdown).await?,
            )
        }
        Role::Audit => {
            let (audit, leases) = (Arc::clone(&stores.audit), Arc::clone(&stores.leases));
            Started::new(role, audit::prepare(config, audit, leases, bus, shutdown)?)
        }
        Role::Metrics => {
            let aggregates = backends.aggregates.clone().ok_or_else(|| {
                ServeError::Config("the metrics role's aggregates were not opened".into())
            })?;
            let store = Arc::clone(&stores.store);
            Started::new(
                role,
                metrics::prepare(config, store, aggregates, bus, shutdown),
            )
        }
    })
}

/// Runs the given roles until SIGTERM or SIGINT.
pub async fn serve(config: Config, roles: Vec<Role>) -> Result<(), ServeError> {
    // Destinations that cannot be served are refused before anything opens.
    if roles.contains(&Role::Audit) {
        audit::exporters(&config)?;
    }
    if roles.contains(&Role::Metrics) {
        metrics::require_redis(&config)?;
    }
    let wire = wire::install(&config).await?;
    let metrics = crate::telemetry::init_metrics().map_err(ServeError::Config)?;
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    tracing::info!(version = %crate::version::long(), roles = ?names, data_dir = %config.data_dir.display(), "caracal starting");
    let backends = Backends::open(&config, &roles).await?;
    let (stop, shutdown) = Shutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    // The outbox relay carries admin changes (CLI or API) to the bus: cache invalidation and
    // the audit trail. One per process that serves admin, gateway or mcp.
    if roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::Gateway | Role::Mcp))
    {
        let relay = crate::bus::relay::run(
            Arc::clone(&backends.stores.store),
            Arc::clone(&backends.bus),
            crate::bus::relay::RelayConfig {
                wire,
                ..Default::default()
            },
            shutdown.clone(),
        );
        tasks.spawn(async move {
            relay.await;
            Ok("relay")
        });
    }
    for role in &roles {
        let started = start(*role, &config, &backends, shutdown.clone()).await?;
        let name = started.role.as_str();
        let task = started.task;
        tasks.spawn(async move { task.await.map(|()| name) });
    }
    let telemetry_addr = config.telemetry_addr(roles == [Role::Metrics]);
    let telemetry = crate::telemetry::serve(
        telemetry_addr,
        metrics,
        backends.ready_checks(),
        shutdown.clone(),
    );
    tasks.spawn(async move { telemetry.await.map(|()| "telemetry") });
    let outcome = tokio::select! {
        () = wait_for_signal() => {
            tracing::info!("shutdown requested; finishing in-flight work");
            Ok(())
        }
        Some(joined) = tasks.join_next() => Err(match joined {
            Ok(Ok(role)) => ServeError::Task { role, cause: "stopped unexpectedly".into() },
            Ok(Err(e)) => ServeError::Io(e),
            Err(e) => task_failed("unknown", e),
        }),
    };
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    if let Err(e) = backends.bus.close().await {
        tracing::error!(error = %e, "event log did not close cleanly");
    }
    tracing::info!("caracal stopped");
    outcome
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
