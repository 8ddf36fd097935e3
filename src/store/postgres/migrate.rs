//! The Postgres schema: the numbered files of `migrations/postgres/` embedded in the binary,
//! applied in order, each in its own transaction under a transaction-scoped advisory lock (so
//! concurrent runners and PgBouncer's transaction mode are both safe), and recorded in
//! `schema_migrations` with a SHA-256 of the file. An applied file that changed is an error
//! naming it. Creates the database for `db init`. Touches no table of the schema itself.

use ring::digest;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::connect::{self, ConnectSpec};
use super::{col, map_err};
use crate::config::PostgresConfig;
use crate::store::StoreError;

/// A numbered migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub file: &'static str,
    pub sql: &'static str,
}

/// Every migration this binary knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        file: "0001_init.sql",
        sql: include_str!("../../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        file: "0002_ledger.sql",
        sql: include_str!("../../../migrations/postgres/0002_ledger.sql"),
    },
];

/// Serialises migration runners (transaction-scoped: released at each file's commit).
const MIGRATION_LOCK: i64 = 0x6361_7261_6361_6c02;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at BIGINT NOT NULL)";

impl Migration {
    /// Lowercase hex SHA-256 of the file.
    pub fn checksum(&self) -> String {
        crate::store::ledger::hex(digest::digest(&digest::SHA256, self.sql.as_bytes()).as_ref())
    }
}

/// One row of `db status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationStatus {
    pub version: i64,
    pub file: String,
    /// `applied`, `pending`, or `unknown` (applied by a newer binary).
    pub state: &'static str,
    /// `ok`, `mismatch` (the file changed after it was applied) or `-` (not applied).
    pub checksum: &'static str,
    pub applied_at_micros: Option<i64>,
}

impl MigrationStatus {
    pub fn is_mismatch(&self) -> bool {
        self.checksum == "mismatch"
    }
}

/// An applied row of `schema_migrations`.
struct Applied {
    version: i64,
    name: String,
    checksum: String,
    applied_at: i64,
}

async fn applied(client: &impl tokio_postgres::GenericClient) -> Result<Vec<Applied>, StoreError> {
    let exists = client
        .query_typed_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(map_err)?;
    if !col::<bool>(&exists, 0)? {
        return Ok(Vec::new());
    }
    let rows = client
        .query_typed(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(|row| {
            Ok(Applied {
                version: col(row, 0)?,
                name: col(row, 1)?,
                checksum: col(row, 2)?,
                applied_at: col(row, 3)?,
            })
        })
        .collect()
}

/// Status of every known migration, then any applied one this binary does not know.
fn statuses(applied: &[Applied]) -> Vec<MigrationStatus> {
    let mut out: Vec<MigrationStatus> = MIGRATIONS
        .iter()
        .map(|m| match applied.iter().find(|a| a.version == m.version) {
            Some(a) => MigrationStatus {
                version: m.version,
                file: m.file.to_owned(),
                state: "applied",
                checksum: if a.checksum == m.checksum() {
                    "ok"
                } else {
                    "mismatch"
                },
                applied_at_micros: Some(a.applied_at),
            },
            None => MigrationStatus {
                version: m.version,
                file: m.file.to_owned(),
                state: "pending",
                checksum: "-",
                applied_at_micros: None,
            },
        })
        .collect();
    for a in applied {
        if !MIGRATIONS.iter().any(|m| m.version == a.version) {
            out.push(MigrationStatus {
                version: a.version,
                file: a.name.clone(),
                state: "unknown",
                checksum: "-",
                applied_at_micros: Some(a.applied_at),
            });
        }
    }
    out
}

fn mismatch_error(status: &[MigrationStatus]) -> Option<StoreError> {
    let changed: Vec<&str> = status
        .iter()
        .filter(|s| s.is_mismatch())
        .map(|s| s.file.as_str())
        .collect();
    (!changed.is_empty()).then(|| {
        StoreError::Corrupt(format!(
            "migration {} changed after it was applied (checksum mismatch in schema_migrations); \
             restore the original file or repair the database by hand",
            changed.join(", ")
        ))
    })
}

/// `db status`: every migration with its state and checksum verdict.
pub async fn status(client: &Client) -> Result<Vec<MigrationStatus>, StoreError> {
    Ok(statuses(&applied(client).await?))
}

/// Checks, at store open, that every known migration is applied and unchanged. Migrations a
/// newer binary applied are accepted (a rolling upgrade runs old and new side by side).
pub async fn check_current(client: &Client) -> Result<(), StoreError> {
    let status = status(client).await?;
    if let Some(e) = mismatch_error(&status) {
        return Err(e);
    }
    let pending: Vec<&str> = status
        .iter()
        .filter(|s| s.state == "pending")
        .map(|s| s.file.as_str())
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    Err(StoreError::Unavailable(format!(
        "the database schema is behind this binary ({} not applied); run `caracal db migrate up`",
        pending.join(", ")
    )))
}

/// Applies every pending migration, each in its own transaction under the migration lock;
/// returns the files applied (empty: already up to date). Safe to run concurrently: a runner
/// that waited for the lock re-reads what the other one applied.
pub async fn up(client: &mut Client) -> Result<Vec<&'static str>, StoreError> {
    let mut done = Vec::new();
    loop {
        let tx = client.transaction().await.map_err(map_err)?;
        tx.execute_typed(
            "SELECT pg_advisory_xact_lock($1)",
            &[(&MIGRATION_LOCK, Type::INT8)],
        )
        .await
        .map_err(map_err)?;
        let applied = applied(&tx).await?;
        if applied.is_empty() {
            tx.batch_execute(CREATE_TABLE).await.map_err(map_err)?;
        }
        let status = statuses(&applied);
        if let Some(e) = mismatch_error(&status) {
            return Err(e);
        }
        if let Some(newer) = status.iter().find(|s| s.state == "unknown") {
            return Err(StoreError::Conflict(format!(
                "the database has migration {} ({}) that this binary does not know; \
                 migrate with the newer binary",
                newer.version, newer.file
            )));
        }
        let Some(next) = MIGRATIONS.iter().find(|m| {
            status
                .iter()
                .any(|s| s.version == m.version && s.state == "pending")
        }) else {
            tx.commit().await.map_err(map_err)?;
            return Ok(done);
        };
        tx.batch_execute(next.sql)
            .await
            .map_err(|e| migration_failed(next, e))?;
        tx.execute_typed(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at)
             VALUES ($1, $2, $3, (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT)",
            &[
                (&next.version, Type::INT8),
                (&next.file, Type::TEXT),
                (&next.checksum(), Type::TEXT),
            ],
        )
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        tracing::info!(file = next.file, "applied migration");
        done.push(next.file);
    }
}

fn migration_failed(migration: &Migration, e: tokio_postgres::Error) -> StoreError {
    let reason = match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    };
    StoreError::Unavailable(format!("migration {} failed: {reason}", migration.file))
}

/// Creates the configured database if it does not exist, connecting to the `postgres`
/// maintenance database with the same credentials. Returns whether it was created.
pub async fn create_database(config: &PostgresConfig) -> Result<bool, StoreError> {
    let spec = connect::spec(config, None)?;
    let name = spec
        .pg
        .get_dbname()
        .map(str::to_owned)
        .or_else(|| spec.pg.get_user().map(str::to_owned))
        .ok_or_else(|| StoreError::Unavailable("postgresql: no database name".into()))?;
    // Already reachable: nothing to create (and no rights on `postgres` needed).
    if connect::connect_one(&spec).await.is_ok() {
        return Ok(false);
    }
    let maintenance: ConnectSpec = connect::spec(config, Some("postgres"))?;
    let client = connect::connect_one(&maintenance).await?;
    let exists = client
        .query_typed_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[(&name, Type::TEXT)],
        )
        .await
        .map_err(map_err)?;
    if exists.is_some() {
        return Ok(false);
    }
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await
    {
        Ok(()) => Ok(true),
        // Another `db init` created it between our check and our CREATE.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
            Ok(false)
        }
        Err(e) => Err(map_err(e)),
    }
}

/// Opens one connection to the configured database (outside any pool) for the runner.
pub async fn connect(config: &PostgresConfig) -> Result<Client, StoreError> {
    let spec = connect::spec(config, None)?;
    connect::connect_one(&spec).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(m.file.starts_with(&format!("{:04}_", m.version)));
            assert_eq!(m.checksum().len(), 64);
        }
    }
}
