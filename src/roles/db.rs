//! `caracal db init | migrate up | status` on the configured system of record. On Postgres:
//! create the database, apply the numbered migrations, report them with their checksums. The
//! embedded SQLite store migrates itself whenever it is opened, so there these commands open
//! it and report its schema. Returns reports; printing is the CLI's.

use std::path::PathBuf;

use serde::Serialize;

use super::ServeError;
use crate::config::Config;
use crate::store::postgres::migrate::{self, MigrationStatus};
use crate::store::sqlite::SqliteStore;

/// Which store a report is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum Target {
    /// `host:port/database`, never credentials.
    Postgres {
        target: String,
    },
    Embedded {
        path: PathBuf,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Postgres { target } => write!(f, "postgres {target}"),
            Target::Embedded { path } => write!(f, "embedded store {}", path.display()),
        }
    }
}

/// What `db init` / `db migrate up` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrateReport {
    #[serde(flatten)]
    pub target: Target,
    /// `db init` only: whether it created the database.
    pub database_created: bool,
    /// Migration files applied by this run (empty: the schema was up to date).
    pub applied: Vec<String>,
}

/// What `db status` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    #[serde(flatten)]
    pub target: Target,
    pub migrations: Vec<MigrationStatus>,
}

impl StatusReport {
    /// The files whose applied checksum differs from this binary's.
    pub fn mismatched(&self) -> Vec<&str> {
        self.migrations
            .iter()
            .filter(|m| m.is_mismatch())
            .map(|m| m.file.as_str())
            .collect()
    }
}

async fn open_embedded(config: &Config) -> Result<SqliteStore, ServeError> {
    let data_dir = config.data_dir.clone();
    Ok(
        tokio::task::spawn_blocking(move || SqliteStore::open(&data_dir))
            .await
            .map_err(|e| ServeError::Config(format!("store open task failed: {e}")))??,
    )
}

fn postgres_target(config: &Config) -> Result<Target, ServeError> {
    let spec = crate::store::postgres::connect::spec(&config.postgresql, None)?;
    Ok(Target::Postgres {
        target: spec.target,
    })
}

/// `db init`: creates the database when missing, then migrates it.
pub async fn init(config: &Config) -> Result<MigrateReport, ServeError> {
    if !config.postgresql.is_configured() {
        return migrate_up(config).await;
    }
    let created = migrate::create_database(&config.postgresql).await?;
    let mut report = migrate_up(config).await?;
    report.database_created = created;
    Ok(report)
}

/// `db migrate up`: applies what is pending (idempotent; safe to run concurrently).
pub async fn migrate_up(config: &Config) -> Result<MigrateReport, ServeError> {
    if !config.postgresql.is_configured() {
        let store = open_embedded(config).await?;
        return Ok(MigrateReport {
            target: Target::Embedded {
                path: store.path().to_path_buf(),
            },
            database_created: false,
            applied: Vec::new(),
        });
    }
    let target = postgres_target(config)?;
    let mut client = migrate::connect(&config.postgresql).await?;
    let applied = migrate::up(&mut client).await?;
    Ok(MigrateReport {
        target,
        database_created: false,
        applied: applied.into_iter().map(str::to_owned).collect(),
    })
}

/// `db status`: every migration, applied or pending, with its checksum verdict.
pub async fn status(config: &Config) -> Result<StatusReport, ServeError> {
    if !config.postgresql.is_configured() {
        let store = open_embedded(config).await?;
        let applied = store.applied_migrations().await?;
        let migrations = SqliteStore::known_migrations()
            .into_iter()
            .map(|(version, name)| {
                let row = applied.iter().find(|(v, _, _)| *v == version);
                MigrationStatus {
                    version,
                    file: format!("{version:04}_{name}.sql"),
                    state: if row.is_some() { "applied" } else { "pending" },
                    // The embedded runner records no checksums.
                    checksum: "-",
                    applied_at_micros: row.map(|(_, _, ms)| ms.saturating_mul(1000)),
                }
            })
            .collect();
        return Ok(StatusReport {
            target: Target::Embedded {
                path: store.path().to_path_buf(),
            },
            migrations,
        });
    }
    let target = postgres_target(config)?;
    let client = migrate::connect(&config.postgresql).await?;
    Ok(StatusReport {
        target,
        migrations: migrate::status(&client).await?,
    })
}
