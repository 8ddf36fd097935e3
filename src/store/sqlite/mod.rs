//! The embedded store: one SQLite file in WAL mode, its own migrations, one writer connection
//! behind a mutex and a few read-only connections (WAL readers see the last commit and never
//! block the writer), every call on the blocking pool. SQL and row mapping live in `agents.rs` and
//! `policies.rs`; this file owns the connection, migrations and the trait wiring only.

mod agents;
mod audit;
mod leases;
mod ledger;
mod ledger_rows;
mod policies;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior};

use super::{
    AgentFilter, AgentPatch, ApiKeyId, ApiKeyInfo, Audit, ChainPolicies, NewAgent, NewApiKey,
    OutboxRecord, PolicyVersion, Store, StoreError,
};
use crate::core::agent::{Agent, AgentId, AgentStatus};
use crate::core::policy::{BudgetPolicy, PolicyId, PolicySpec};
use crate::core::pricing::{PriceEntry, Pricebook};

/// How long a writer waits for another process (the CLI beside a server) to release the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache of the store's connection, in KiB.
const CACHE_KIB: i64 = 64 * 1024;
/// Page cache of each read-only connection, in KiB.
const READ_CACHE_KIB: i64 = 16 * 1024;
/// Bytes of the store file each read-only connection maps into memory (address space only).
const READ_MMAP_BYTES: i64 = 1 << 30;
/// Read-only connections: reads (verification, queries) run in parallel on this many.
const READ_CONNECTIONS: usize = 2;
/// File name of the embedded database inside the data directory.
pub const DB_FILE: &str = "caracal.db";

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "ledger",
        include_str!("../../../migrations/sqlite/0002_ledger.sql"),
    ),
];

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    readers: Arc<[Mutex<Connection>]>,
    next_reader: std::sync::atomic::AtomicUsize,
    reader_permits: Arc<tokio::sync::Semaphore>,
    path: PathBuf,
    /// Stops the checkpointer thread when the store is dropped.
    stop_checkpoints: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop_checkpoints
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Opens a connection to the store file with the settings every connection here uses.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(unavailable)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(unavailable)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(unavailable)?;
    crate::embedded_db::stable_plans(&conn).map_err(unavailable)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) `<data_dir>/caracal.db` and applies pending migrations.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(DB_FILE);
        let mut conn = connect(&path)?;
        // Checkpoints (and their fsyncs) run on their own thread, never inside a commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(unavailable)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(unavailable)?;
        // The ledger's indexes outgrow SQLite's 2 MiB default page cache quickly.
        conn.pragma_update(None, "cache_size", -CACHE_KIB)
            .map_err(unavailable)?;
        crate::embedded_db::migrate(&mut conn, "schema_migrations", MIGRATIONS)
            .map_err(unavailable)?;
        let stop_checkpoints = Arc::new(std::sync::atomic::AtomicBool::new(false));
        crate::embedded_db::spawn_checkpointer(
            connect(&path)?,
            "store",
            Arc::clone(&stop_checkpoints),
        )
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot start the store checkpointer: {e}"))
        })?;
        let readers = (0..READ_CONNECTIONS)
            .map(|_| {
                let reader = connect(&path)?;
                reader
                    .pragma_update(None, "query_only", "ON")
                    .map_err(unavailable)?;
                reader
                    .pragma_update(None, "cache_size", -READ_CACHE_KIB)
                    .map_err(unavailable)?;
                // Pages of the main file are read through a memory map, not a pread each.
                reader
                    .pragma_update(None, "mmap_size", READ_MMAP_BYTES)
                    .map_err(unavailable)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Arc<[_]>, StoreError>>()?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            readers,
            next_reader: std::sync::atomic::AtomicUsize::new(0),
            reader_permits: Arc::new(tokio::sync::Semaphore::new(READ_CONNECTIONS)),
            path,
            stop_checkpoints,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every migration this binary knows, as `(version, name)`.
    pub fn known_migrations() -> Vec<(i64, &'static str)> {
        MIGRATIONS.iter().map(|(v, name, _)| (*v, *name)).collect()
    }

    /// The applied migrations, as `(version, name, applied_at_ms)` (`open` applies them all).
    pub async fn applied_migrations(&self) -> Result<Vec<(i64, String, i64)>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT version, name, applied_at_ms FROM schema_migrations ORDER BY version",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(map_err)?;
            rows.map(|r| r.map_err(map_err)).collect()
        })
        .await
    }

    /// Runs `f` in a write transaction on the blocking pool; commits on Ok.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.transaction(TransactionBehavior::Immediate, f).await
    }

    /// Runs `f` in a read transaction (one consistent snapshot) on a read-only connection, on
    /// the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        if self.readers.is_empty() {
            return self.transaction(TransactionBehavior::Deferred, f).await;
        }
        // One permit per reader: a caller waits here (asynchronously) for whichever reader frees
        // first, and with a permit in hand at least one reader is free.
        let permit = Arc::clone(&self.reader_permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        let turn = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let readers = Arc::clone(&self.readers);
        run_blocking(move || {
            let _permit = permit;
            let n = readers.len();
            let free = (0..n).find_map(|i| readers[(turn + i) % n].try_lock().ok());
            let mut guard = match free {
                Some(guard) => guard,
                None => readers[turn % n].lock().map_err(|_| poisoned())?,
            };
            let tx = guard
                .transaction_with_behavior(TransactionBehavior::Deferred)
                .map_err(map_err)?;
            let value = f(&tx)?;
            tx.commit().map_err(map_err)?;
            Ok(value)
        })
        .await
    }

    /// Runs `f` in a transaction of the given behaviour; commits when `f` succeeds (a read-only
    /// transaction commits nothing), rolls back on drop otherwise.
    async fn transaction<T, F>(&self, behavior: TransactionBehavior, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        run_blocking(move || {
            let mut guard = conn.lock().map_err(|_| poisoned())?;
            let tx = guard.transaction_with_behavior(behavior).map_err(map_err)?;
            let value = f(&tx)?;
            tx.commit().map_err(map_err)?;
            Ok(value)
        })
        .await
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("store connection poisoned by an earlier panic".into())
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Maps SQLite errors: constraint violations are conflicts, everything else unavailability.
fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(code, _)
            if code.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::<Utc>::from_timestamp_micros(value)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {value} out of range")))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_agent(&self, new: NewAgent, audit: &Audit) -> Result<Agent, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| agents::create(tx, &new, &audit)).await
    }

    async fn get_agent(&self, id: AgentId) -> Result<Option<Agent>, StoreError> {
        self.read(move |tx| agents::get(tx, id)).await
    }

    async fn list_agents(&self, filter: &AgentFilter) -> Result<Vec<Agent>, StoreError> {
        let filter = filter.clone();
        self.read(move |tx| agents::list(tx, &filter)).await
    }

    async fn update_agent(
        &self,
        id: AgentId,
        patch: AgentPatch,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<Agent, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| agents::update(tx, id, &patch, at, &audit))
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
        self.write(move |tx| agents::set_status(tx, id, status, at, &audit))
            .await
    }

    async fn create_api_key(
        &self,
        key: NewApiKey,
        audit: &Audit,
    ) -> Result<ApiKeyInfo, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| agents::create_key(tx, &key, &audit))
            .await
    }

    async fn list_api_keys(
        &self,
        agent_id: Option<AgentId>,
    ) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.read(move |tx| agents::list_keys(tx, agent_id)).await
    }

    async fn revoke_api_key(
        &self,
        id: ApiKeyId,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<ApiKeyInfo, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| agents::revoke_key(tx, id, at, &audit))
            .await
    }

    async fn find_api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyInfo>, StoreError> {
        let hash = *hash;
        self.read(move |tx| agents::find_key(tx, &hash)).await
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
        self.write(move |tx| policies::create(tx, id, agent_id, &spec, at, &audit))
            .await
    }

    async fn get_policy(&self, id: PolicyId) -> Result<Option<BudgetPolicy>, StoreError> {
        self.read(move |tx| policies::get(tx, id)).await
    }

    async fn list_policies(
        &self,
        agent_id: Option<AgentId>,
    ) -> Result<Vec<BudgetPolicy>, StoreError> {
        self.read(move |tx| policies::list(tx, agent_id)).await
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
        self.write(move |tx| policies::update(tx, id, &spec, expected_version, at, &audit))
            .await
    }

    async fn delete_policy(
        &self,
        id: PolicyId,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<BudgetPolicy, StoreError> {
        let audit = audit.clone();
        self.write(move |tx| policies::delete(tx, id, at, &audit))
            .await
    }

    async fn policy_history(&self, id: PolicyId) -> Result<Vec<PolicyVersion>, StoreError> {
        self.read(move |tx| policies::history(tx, id)).await
    }

    async fn load_chain(&self, agent_id: AgentId) -> Result<Option<ChainPolicies>, StoreError> {
        self.read(move |tx| policies::load_chain(tx, agent_id))
            .await
    }

    async fn set_prices(
        &self,
        entries: Vec<PriceEntry>,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.write(move |tx| policies::set_prices(tx, &entries, at))
            .await
    }

    async fn pricebook(&self) -> Result<Pricebook, StoreError> {
        self.read(policies::pricebook).await
    }

    async fn list_prices(&self) -> Result<Vec<PriceEntry>, StoreError> {
        self.read(policies::list_prices).await
    }

    async fn outbox_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        self.read(move |tx| policies::outbox_after(tx, after_id, limit))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|tx| tx.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err))
            .await
    }
}

/// Appends an admin event to the outbox inside the caller's transaction.
fn push_outbox(
    tx: &rusqlite::Transaction<'_>,
    event: &crate::core::events::AdminEvent,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(event).map_err(|e| corrupt("outbox event", e))?;
    tx.execute(
        "INSERT INTO outbox (event, created_at) VALUES (?1, ?2)",
        rusqlite::params![json, micros(at)],
    )
    .map_err(map_err)?;
    Ok(())
}
