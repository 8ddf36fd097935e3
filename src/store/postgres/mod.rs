//! The Postgres store: a deadpool pool of tokio-postgres connections (TLS per `postgresql.ssl`),
//! the transaction helper every table module runs in, error mapping, and the `Store` wiring.
//! SQL lives in `agents.rs`, `policies.rs`, and for the consumers `ledger.rs` (with
//! `ledger_append.rs`, `ledger_rows.rs`, `ledger_visit.rs`), `leases.rs`, `audit.rs`; the
//! schema in `migrate.rs`.
//! No session state anywhere (PgBouncer transaction mode): every statement is unnamed
//! (`query_typed`), except the ledger's COPY, whose statement is prepared and closed inside its
//! transaction; every lock is transaction-scoped.

mod agents;
mod audit;
pub mod connect;
mod leases;
mod ledger;
mod ledger_append;
mod ledger_rows;
mod ledger_visit;
pub mod migrate;
mod policies;

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, PoolError, TimeoutType};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{IsolationLevel, Transaction};

pub use connect::PoolLimits;

use super::{
    AgentFilter, AgentPatch, ApiKeyId, ApiKeyInfo, Audit, ChainPolicies, NewAgent, NewApiKey,
    OutboxRecord, PolicyVersion, Store, StoreError,
};
use crate::config::PostgresConfig;
use crate::core::agent::{Agent, AgentId, AgentStatus};
use crate::core::policy::{BudgetPolicy, PolicyId, PolicySpec};
use crate::core::pricing::{PriceEntry, Pricebook};

/// The transaction-scoped advisory lock every admin write (agents, keys, policies, prices)
/// takes first. It gives Postgres the embedded store's semantics (admin writes serialised, so
/// every check-then-write holds) and makes outbox ids visible in increasing order, which the
/// relay's `id > cursor` reads rely on. Admin writes are rare; the ledger never takes it.
const ADMIN_WRITE_LOCK: i64 = 0x6361_7261_6361_6c01;

/// What a transaction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// One consistent snapshot, read only (REPEATABLE READ READ ONLY).
    Read,
    /// An admin change: READ COMMITTED, serialised by `ADMIN_WRITE_LOCK`.
    AdminWrite,
    /// Any other write (consumers): READ COMMITTED, no lock taken for the caller.
    Write,
}

/// The future a transaction body returns; it may borrow the transaction.
pub type TxFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 't>>;

pub struct PgStore {
    pool: Pool,
    target: String,
}

impl PgStore {
    /// Opens the pool and checks that the schema is current (every migration this binary knows
    /// applied, unchanged). It never migrates: a schema behind is an error telling the operator
    /// to run `caracal db migrate up`.
    pub async fn open(config: &PostgresConfig, limits: PoolLimits) -> Result<PgStore, StoreError> {
        let spec = connect::spec(config, None)?;
        let pool = connect::pool(&spec, limits)?;
        let store = PgStore {
            pool,
            target: spec.target,
        };
        let client = store.client().await?;
        migrate::check_current(&client).await?;
        Ok(store)
    }

    /// `host:port/database` (no credentials), for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A pooled connection; waits at most the pool's wait timeout.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error(&self.target, e))
    }

    /// Runs `body` in one transaction of `mode` on a pooled connection; commits when it
    /// succeeds, rolls back otherwise (an error, or the future dropped).
    pub async fn transaction<T, F>(&self, mode: TxMode, body: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'t> FnOnce(&'t Transaction<'t>) -> TxFuture<'t, T> + Send,
    {
        let mut object = self.client().await?;
        let client: &mut tokio_postgres::Client = &mut object;
        let builder = client.build_transaction();
        let builder = match mode {
            TxMode::Read => builder
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true),
            TxMode::AdminWrite | TxMode::Write => {
                builder.isolation_level(IsolationLevel::ReadCommitted)
            }
        };
        let tx = builder.start().await.map_err(map_err)?;
        if mode == TxMode::AdminWrite {
            tx.execute_typed(
                "SELECT pg_advisory_xact_lock($1)",
                &[(&ADMIN_WRITE_LOCK, Type::INT8)],
            )
            .await
            .map_err(map_err)?;
        }
        let value = body(&tx).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(value)
    }

    /// One statement outside an explicit transaction (a statement sees one snapshot by
    /// itself): one round trip instead of three, for the ledger's hot single-statement reads.
    pub(crate) async fn query_once(
        &self,
        sql: &str,
        params: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        client.query_typed(sql, params).await.map_err(map_err)
    }

    async fn read<T, F>(&self, body: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'t> FnOnce(&'t Transaction<'t>) -> TxFuture<'t, T> + Send,
    {
        self.transaction(TxMode::Read, body).await
    }

    async fn write<T, F>(&self, body: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'t> FnOnce(&'t Transaction<'t>) -> TxFuture<'t, T> + Send,
    {
        self.transaction(TxMode::AdminWrite, body).await
    }
}

/// A connection that could not be opened, named by its target; the server's own message when
/// it refused us (authentication, certificate), never the password.
pub(crate) fn connect_error(target: &str, e: &tokio_postgres::Error) -> StoreError {
    let reason = match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => with_causes(e),
    };
    StoreError::Unavailable(format!("cannot connect to postgres at {target}: {reason}"))
}

/// An error and its causes (`error performing TLS handshake: invalid peer certificate: ...`).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

fn pool_error(target: &str, e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => connect_error(target, &e),
        PoolError::Timeout(TimeoutType::Wait) => StoreError::Unavailable(format!(
            "no postgres connection to {target} became free in time \
             (gateway.config.dbPoolSize / dbPoolTimeout)"
        )),
        PoolError::Timeout(_) => {
            StoreError::Unavailable(format!("connecting to postgres at {target} timed out"))
        }
        other => StoreError::Unavailable(format!("postgres pool for {target}: {other}")),
    }
}

/// Maps Postgres errors like the embedded store maps SQLite's: constraint violations are
/// conflicts, everything else unavailability. Only the server's message and the constraint's
/// name are kept: a violation's DETAIL quotes row values (a key hash, say).
pub(crate) fn map_err(e: tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        if e.is_closed() {
            return StoreError::Unavailable("postgres connection closed".into());
        }
        return StoreError::Unavailable(format!("postgres: {}", with_causes(&e)));
    };
    let constraint = db
        .constraint()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let code = db.code();
    let conflict = [
        SqlState::UNIQUE_VIOLATION,
        SqlState::FOREIGN_KEY_VIOLATION,
        SqlState::CHECK_VIOLATION,
        SqlState::NOT_NULL_VIOLATION,
        SqlState::EXCLUSION_VIOLATION,
    ];
    if conflict.contains(code) {
        StoreError::Conflict(format!("{}{constraint}", db.message()))
    } else {
        StoreError::Unavailable(format!("postgres: {} [{}]", db.message(), code.code()))
    }
}

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::<Utc>::from_timestamp_micros(value)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {value} out of range")))
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A column of a row, typed; a type mismatch means the schema is not what this code expects.
pub(crate) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| corrupt(&format!("column {index}"), e))
}

/// Most rows a list returns, as a SQL parameter.
pub(crate) fn list_limit() -> i64 {
    i64::try_from(super::LIST_ROWS_MAX).unwrap_or(i64::MAX)
}

/// Appends an admin event to the outbox inside the caller's (admin write) transaction.
pub(crate) async fn push_outbox(
    tx: &Transaction<'_>,
    event: &crate::core::events::AdminEvent,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(event).map_err(|e| corrupt("outbox event", e))?;
    tx.execute_typed(
        "INSERT INTO outbox (event, created_at) VALUES ($1, $2)",
        &[(&json, Type::TEXT), (&micros(at), Type::INT8)],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn create_agent(&self, new: NewAgent, audit: &Audit) -> Result<Agent, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| Box::pin(async move { agents::create(tx, &new, &audit).await }))
            .await
    }

    async fn get_agent(&self, id: AgentId) -> Result<Option<Agent>, StoreError> {
        self.read(move |tx| Box::pin(agents::get(tx, id))).await
    }

    async fn list_agents(&self, filter: &AgentFilter) -> Result<Vec<Agent>, StoreError> {
        let filter = filter.clone();
        self.read(move |tx| Box::pin(async move { agents::list(tx, &filter).await }))
            .await
    }

    async fn update_agent(
        &self,
        id: AgentId,
        patch: AgentPatch,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<Agent, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move { agents::update(tx, id, &patch, at, &audit).await })
        })
        .await
    }

    async fn set_agent_status(
        &self,
        id: AgentId,
        status: AgentStatus,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<Agent, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move { agents::set_status(tx, id, status, at, &audit).await })
        })
        .await
    }

    async fn create_api_key(
        &self,
        key: NewApiKey,
        audit: &Audit,
    ) -> Result<ApiKeyInfo, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| Box::pin(async move { agents::create_key(tx, &key, &audit).await }))
            .await
    }

    async fn list_api_keys(
        &self,
        agent_id: Option<AgentId>,
    ) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.read(move |tx| Box::pin(agents::list_keys(tx, agent_id)))
            .await
    }

    async fn revoke_api_key(
        &self,
        id: ApiKeyId,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<ApiKeyInfo, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| Box::pin(async move { agents::revoke_key(tx, id, at, &audit).await }))
            .await
    }

    async fn find_api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyInfo>, StoreError> {
        let hash = *hash;
        self.read(move |tx| Box::pin(async move { agents::find_key(tx, &hash).await }))
            .await
    }

    async fn create_policy(
        &self,
        id: PolicyId,
        agent_id: AgentId,
        spec: PolicySpec,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<BudgetPolicy, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move { policies::create(tx, id, agent_id, &spec, at, &audit).await })
        })
        .await
    }

    async fn get_policy(&self, id: PolicyId) -> Result<Option<BudgetPolicy>, StoreError> {
        self.read(move |tx| Box::pin(policies::get(tx, id))).await
    }

    async fn list_policies(
        &self,
        agent_id: Option<AgentId>,
    ) -> Result<Vec<BudgetPolicy>, StoreError> {
        self.read(move |tx| Box::pin(policies::list(tx, agent_id)))
            .await
    }

    async fn update_policy(
        &self,
        id: PolicyId,
        spec: PolicySpec,
        expected_version: Option<i64>,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<BudgetPolicy, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(
                async move { policies::update(tx, id, &spec, expected_version, at, &audit).await },
            )
        })
        .await
    }

    async fn delete_policy(
        &self,
        id: PolicyId,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<BudgetPolicy, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| Box::pin(async move { policies::delete(tx, id, at, &audit).await }))
            .await
    }

    async fn policy_history(&self, id: PolicyId) -> Result<Vec<PolicyVersion>, StoreError> {
        self.read(move |tx| Box::pin(policies::history(tx, id)))
            .await
    }

    async fn load_chain(&self, agent_id: AgentId) -> Result<Option<ChainPolicies>, StoreError> {
        self.read(move |tx| Box::pin(policies::load_chain(tx, agent_id)))
            .await
    }

    async fn set_prices(
        &self,
        entries: Vec<PriceEntry>,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.write(move |tx| Box::pin(async move { policies::set_prices(tx, &entries, at).await }))
            .await
    }

    async fn pricebook(&self) -> Result<Pricebook, StoreError> {
        self.read(|tx| Box::pin(policies::pricebook(tx))).await
    }

    async fn list_prices(&self) -> Result<Vec<PriceEntry>, StoreError> {
        self.read(|tx| Box::pin(policies::list_prices(tx))).await
    }

    async fn outbox_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        self.read(move |tx| Box::pin(policies::outbox_after(tx, after_id, limit)))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.query_typed("SELECT 1", &[]).await.map_err(map_err)?;
        Ok(())
    }
}
