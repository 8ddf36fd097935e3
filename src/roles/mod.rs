//! Wiring: which roles a process runs, which adapters back them, and the `serve` lifecycle
//! (start, log where each listener is, stop gracefully on SIGTERM/SIGINT).
//! Architecture invariant: this is the only module that names a concrete adapter.

pub mod admin;
pub mod audit;
pub mod db;
pub mod gateway;
pub mod ledger;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::bus::local::{LocalBus, LocalBusLimits};
use crate::bus::EventBus;
use crate::config::Config;
use crate::http::Shutdown;
use crate::spend::local::{LocalLimits, LocalSpend};
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

    /// Whether this build can run the role yet.
    pub fn available(self) -> bool {
        matches!(
            self,
            Role::Admin | Role::Gateway | Role::Ledger | Role::Audit
        )
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

/// Resolves `--role` values: empty or `all` means every available role; naming a role this
/// build cannot run yet is an error rather than a silent no-op.
pub fn select_roles(requested: &[String]) -> Result<Vec<Role>, String> {
    if requested.is_empty() || requested.iter().any(|r| r == "all") {
        return Ok(Role::ALL.into_iter().filter(|r| r.available()).collect());
    }
    let mut roles = Vec::new();
    for text in requested {
        let role: Role = text.parse()?;
        if !role.available() {
            return Err(format!("role {role} is not implemented in this build yet"));
        }
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles.sort();
    Ok(roles)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
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
        .map_err(|e| ServeError::Config(format!("store open task failed: {e}")))??;
    let store = Arc::new(store);
    Ok(Stores {
        store: Arc::clone(&store) as Arc<dyn Store>,
        ledger: Arc::clone(&store) as Arc<dyn LedgerStore>,
        leases: Arc::clone(&store) as Arc<dyn LeaseStore>,
        audit: store,
    })
}

/// The Postgres pool's limits: `gateway.config.dbPoolSize` connections at most, and
/// `dbPoolTimeout` seconds to wait for one. (`dbMaxOverflow` has no equivalent: the pool opens
/// connections on demand up to its size and keeps them.)
pub fn pool_limits(config: &Config) -> PoolLimits {
    let tuning = &config.gateway.config;
    PoolLimits {
        connections_max: usize::try_from(tuning.db_pool_size).unwrap_or(usize::MAX),
        wait_timeout: std::time::Duration::from_secs(tuning.db_pool_timeout),
    }
}

/// Opens the event bus: the embedded log unless Kafka is configured.
pub async fn open_bus(config: &Config) -> Result<Arc<dyn EventBus>, ServeError> {
    if config.kafka.is_configured() {
        return Err(ServeError::Config(
            "kafka is configured, but this build has only the embedded event log; unset kafka.brokers".into(),
        ));
    }
    let data_dir = config.data_dir.clone();
    let bus =
        tokio::task::spawn_blocking(move || LocalBus::open(&data_dir, LocalBusLimits::default()))
            .await
            .map_err(|e| ServeError::Config(format!("event log open task failed: {e}")))?
            .map_err(|e| ServeError::Config(format!("event log: {e}")))?;
    Ok(Arc::new(bus))
}

/// Opens the spend cache: in-process (with its journal) unless Redis is configured.
pub async fn open_spend(config: &Config) -> Result<Arc<dyn SpendCache>, ServeError> {
    if config.redis.is_configured() {
        return Err(ServeError::Config(
            "redis is configured, but this build has only the in-process spend cache; unset redis.*".into(),
        ));
    }
    let data_dir = config.data_dir.clone();
    let spend =
        tokio::task::spawn_blocking(move || LocalSpend::open(&data_dir, LocalLimits::default()))
            .await
            .map_err(|e| ServeError::Config(format!("spend cache open task failed: {e}")))?
            .map_err(|e| ServeError::Config(format!("spend cache: {e}")))?;
    Ok(Arc::new(spend))
}

/// Runs the given roles until SIGTERM or SIGINT.
pub async fn serve(config: Config, roles: Vec<Role>) -> Result<(), ServeError> {
    // Destinations this build cannot serve are refused before anything opens.
    if roles.contains(&Role::Audit) {
        audit::exporters(&config)?;
    }
    let metrics = crate::telemetry::init_metrics().map_err(ServeError::Config)?;
    let stores = open_stores(&config).await?;
    let store = Arc::clone(&stores.store);
    let (stop, shutdown) = Shutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut checks = Vec::new();
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    tracing::info!(roles = ?names, data_dir = %config.data_dir.display(), "caracal starting");

    let store_for_check = Arc::clone(&store);
    checks.push(crate::telemetry::ready_check("store", move || {
        let store = Arc::clone(&store_for_check);
        async move { store.ping().await.map_err(|e| e.to_string()) }
    }));

    let bus = open_bus(&config).await?;
    let bus_for_check = Arc::clone(&bus);
    checks.push(crate::telemetry::ready_check("event_bus", move || {
        let bus = Arc::clone(&bus_for_check);
        async move { bus.ping().await.map_err(|e| e.to_string()) }
    }));
    // The outbox relay carries admin changes (CLI or API) to the bus: cache invalidation and
    // the audit trail. One per process that serves admin or gateway.
    if roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::Gateway))
    {
        let relay = crate::bus::relay::run(
            Arc::clone(&store),
            Arc::clone(&bus),
            crate::bus::relay::RelayConfig::default(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            relay.await;
            Ok(())
        });
    }
    for role in &roles {
        match role {
            Role::Admin => {
                let admin =
                    admin::AdminServer::prepare(&config, Arc::clone(&store), Arc::clone(&bus))
                        .await?;
                tasks.spawn(admin.run(shutdown.clone()));
            }
            Role::Gateway => {
                let spend = open_spend(&config).await?;
                let gateway = gateway::GatewayServer::prepare(
                    &config,
                    Arc::clone(&store),
                    spend,
                    Arc::clone(&bus),
                )
                .await?;
                tasks.spawn(gateway.run(shutdown.clone()));
            }
            Role::Ledger => {
                let ledger = ledger::prepare(
                    &config,
                    Arc::clone(&stores.ledger),
                    Arc::clone(&stores.leases),
                    Arc::clone(&bus),
                    shutdown.clone(),
                )
                .await?;
                tasks.spawn(ledger);
            }
            Role::Audit => {
                let audit = audit::prepare(
                    &config,
                    Arc::clone(&stores.audit),
                    Arc::clone(&stores.leases),
                    Arc::clone(&bus),
                    shutdown.clone(),
                )?;
                tasks.spawn(audit);
            }
            other => {
                return Err(ServeError::Config(format!(
                    "role {other} is not implemented yet"
                )))
            }
        }
    }

    let telemetry_addr = config.telemetry_addr(roles == [Role::Metrics]);
    tasks.spawn(crate::telemetry::serve(
        telemetry_addr,
        metrics,
        checks,
        shutdown.clone(),
    ));

    let outcome = tokio::select! {
        () = wait_for_signal() => {
            tracing::info!("shutdown requested; finishing in-flight work");
            Ok(())
        }
        Some(joined) = tasks.join_next() => match joined {
            Ok(Ok(())) => Err(ServeError::Config("a listener stopped unexpectedly".into())),
            Ok(Err(e)) => Err(ServeError::Io(e)),
            Err(e) => Err(ServeError::Config(format!("a role task failed: {e}"))),
        },
    };
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    if let Err(e) = bus.close().await {
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
