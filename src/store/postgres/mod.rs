//! The Postgres system of record: connection settings built from `postgresql.*` (or the seeds'
//! `DB_*`) by parts, so any password works, and the schema migrations (`migrate.rs`). The
//! Store, LedgerStore and LeaseStore implementations on Postgres are not built yet (issue 11);
//! `roles::open_stores` says so plainly. Never logs a password or a URL.

pub mod migrate;

use std::path::Path;

use crate::config::{PgSslMode, PostgresConfig};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("postgresql: {0}")]
    Config(String),
    #[error("cannot connect to postgres at {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("postgres: {0}")]
    Query(String),
    #[error("migration {file} was changed after it was applied (checksum {applied} in the database, {current} in this build)")]
    ChangedMigration {
        file: String,
        applied: String,
        current: String,
    },
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        // tokio-postgres errors name the failing statement's cause, never the password.
        PgError::Query(
            e.as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_owned()),
        )
    }
}

/// The connection settings of `config`, for database `database` (the configured one unless
/// given: `db init` connects to `postgres` first).
pub fn pg_config(
    config: &PostgresConfig,
    database: Option<&str>,
) -> Result<tokio_postgres::Config, PgError> {
    if config.ssl.effective_mode() != PgSslMode::Disable {
        return Err(PgError::Config(
            "TLS to Postgres (postgresql.ssl) is not built into this release yet; set \
             postgresql.ssl.mode: disable on a trusted network"
                .into(),
        ));
    }
    let mut pg = match (&config.url, &config.url_file) {
        (Some(url), _) => url
            .expose()
            .parse::<tokio_postgres::Config>()
            .map_err(|_| PgError::Config("postgresql.url is not a valid connection URL".into()))?,
        (None, Some(file)) => read_secret_file(file)?
            .parse::<tokio_postgres::Config>()
            .map_err(|_| {
                PgError::Config("postgresql.urlFile holds no valid connection URL".into())
            })?,
        (None, None) => {
            let host = config
                .host
                .as_deref()
                .ok_or_else(|| PgError::Config("postgresql.host (DB_HOST) is not set".into()))?;
            let mut pg = tokio_postgres::Config::new();
            pg.host(host)
                .port(config.port)
                .dbname(&config.database)
                .user(&config.username);
            pg
        }
    };
    match (&config.password, &config.password_file) {
        (Some(password), _) => {
            pg.password(password.expose());
        }
        (None, Some(file)) => {
            pg.password(read_secret_file(file)?);
        }
        (None, None) => {}
    }
    if let Some(database) = database {
        pg.dbname(database);
    }
    pg.application_name("caracal")
        .connect_timeout(CONNECT_TIMEOUT);
    Ok(pg)
}

fn read_secret_file(path: &Path) -> Result<String, PgError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|e| PgError::Config(format!("cannot read {}: {}", path.display(), e.kind())))
}

/// `host:port/database` of a connection, for messages (never the user or password).
pub fn describe(pg: &tokio_postgres::Config) -> String {
    let host = pg.get_hosts().first().map_or_else(
        || "?".to_owned(),
        |h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        },
    );
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", pg.get_dbname().unwrap_or("?"))
}

/// Opens one connection and drives it on a background task.
pub async fn connect(pg: &tokio_postgres::Config) -> Result<tokio_postgres::Client, PgError> {
    let (client, connection) =
        pg.connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| PgError::Connect {
                target: describe(pg),
                reason: e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |db| db.message().to_owned()),
            })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}
