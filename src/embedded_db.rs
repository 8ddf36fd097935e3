//! SQLite plumbing shared by the embedded adapters (store, event log, spend journal): the one
//! numbered-migration runner and the connection settings every one of them wants. Knows no
//! adapter's tables; each passes its own migration list.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// Plans never depend on bound values (SQLite's query planner stability guarantee): a cached
/// statement is not re-prepared (parsed and planned again, allocating under SQLite's global
/// memory mutex) on a new binding of a parameter in a range, LIMIT or LIKE. Measured: that
/// re-prepare serialised the two verification readers.
pub fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(|_| ())
}

/// A numbered migration: version, name, SQL.
pub type Migration = (i64, &'static str, &'static str);

/// Applies, in one immediate transaction, every migration not yet recorded in `table`
/// (created if missing, with columns version, name, applied_at_ms). `table` is a constant of
/// the caller, never user input.
pub fn migrate(
    conn: &mut Connection,
    table: &str,
    migrations: &[Migration],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)"
    ))?;
    for (version, name, sql) in migrations {
        let applied: Option<i64> = tx
            .query_row(
                &format!("SELECT version FROM {table} WHERE version = ?1"),
                [version],
                |r| r.get(0),
            )
            .optional()?;
        if applied.is_none() {
            tx.execute_batch(sql)?;
            tx.execute(
                &format!("INSERT INTO {table} (version, name, applied_at_ms) VALUES (?1, ?2, ?3)"),
                params![version, name, chrono::Utc::now().timestamp_millis()],
            )?;
        }
    }
    tx.commit()
}

/// How often a checkpointer moves the WAL into the main file.
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Starts a checkpointer thread on its own connection `conn`: every `CHECKPOINT_INTERVAL` a
/// passive checkpoint (it never blocks the writer), until `stop` is set. The writer's connection
/// runs with `wal_autocheckpoint=0`, so the fsyncs a checkpoint carries never stall a commit that
/// a request is waiting for.
pub fn spawn_checkpointer(
    conn: Connection,
    name: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    let label = name.to_owned();
    std::thread::Builder::new()
        .name(format!("{label}-checkpoint"))
        .spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, db = %label, "checkpoint failed; retrying");
                }
            }
        })
        .map(|_| ())
}
