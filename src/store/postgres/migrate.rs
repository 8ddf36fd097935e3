//! Numbered schema migrations for Postgres: each file applied in its own transaction under a
//! transaction-scoped advisory lock (so concurrent `db migrate up` runs, and PgBouncer in
//! transaction mode, are safe), recorded with its SHA-256 in `schema_migrations`. An applied
//! file whose checksum changed is an error naming it. Owns no other table.

use super::PgError;
use crate::core::hex;

/// `(version, file name, SQL)`, in order. Never edit a released file: add a new one.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_init.sql",
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "0002_ledger.sql",
        include_str!("../../../migrations/postgres/0002_ledger.sql"),
    ),
];

/// The advisory lock key that serialises migrations (any fixed number; "caracal" in ASCII).
const LOCK_KEY: i64 = 0x6361_7261_6361_6c00;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// One migration's state in a database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationStatus {
    pub version: i64,
    pub name: String,
    /// `applied`, `pending`, or `changed` (applied, but the file differs now).
    pub state: &'static str,
    pub checksum: String,
}

/// Lowercase hex SHA-256 of a migration's SQL.
pub fn checksum(sql: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, sql.as_bytes()).as_ref())
}

/// Applies every pending migration, each in its own locked transaction; returns the names
/// applied (empty when up to date). Fails on the first changed applied file.
pub async fn up(client: &mut tokio_postgres::Client) -> Result<Vec<String>, PgError> {
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await?;
        tx.batch_execute(CREATE_TABLE).await?;
        let found = tx
            .query_opt(
                "SELECT checksum FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await?;
        let current = checksum(sql);
        match found {
            Some(row) => {
                let stored: String = row.get(0);
                if stored != current {
                    return Err(PgError::ChangedMigration {
                        file: (*name).to_owned(),
                        applied: stored,
                        current,
                    });
                }
            }
            None => {
                tx.batch_execute(sql)
                    .await
                    .map_err(|e| PgError::Query(format!("{name}: {}", PgError::from(e))))?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    &[version, name, &current],
                )
                .await?;
                applied.push((*name).to_owned());
            }
        }
        tx.commit().await?;
    }
    Ok(applied)
}

/// Every migration of this build and its state in the database.
pub async fn status(client: &tokio_postgres::Client) -> Result<Vec<MigrationStatus>, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    let applied: Vec<(i64, String)> = if exists {
        client
            .query("SELECT version, checksum FROM schema_migrations", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS
        .iter()
        .map(|(version, name, sql)| {
            let current = checksum(sql);
            let state = match applied.iter().find(|(v, _)| v == version) {
                None => "pending",
                Some((_, stored)) if *stored == current => "applied",
                Some(_) => "changed",
            };
            MigrationStatus {
                version: *version,
                name: (*name).to_owned(),
                state,
                checksum: current,
            }
        })
        .collect())
}

/// Creates `database` unless it exists (connected to the maintenance database). The name is
/// quoted as an identifier.
pub async fn create_database(
    client: &tokio_postgres::Client,
    database: &str,
) -> Result<bool, PgError> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await?
        .is_some();
    if exists {
        return Ok(false);
    }
    let quoted = format!("\"{}\"", database.replace('"', "\"\""));
    client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_named_for_their_files() {
        for (i, (version, name, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i64 + 1);
            assert!(name.starts_with(&format!("{version:04}_")), "{name}");
            assert!(!sql.trim().is_empty());
        }
        assert_eq!(checksum("x").len(), 64);
        assert_ne!(checksum("a"), checksum("b"));
    }
}
