//! The one-time import of a spend journal kept by an earlier Caracal in SQLite
//! (`<data_dir>/spend.db`): read its rows into `Tables`, once, when no journal file exists yet;
//! the journal then renames it `spend.db.imported` for the operator to delete.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use uuid::Uuid;

use super::journal::{Op, Tables};
use crate::core::agent::AgentId;
use crate::core::events::Source;
use crate::core::money::{Currency, Micros};
use crate::core::policy::{PolicyId, TimeWindow, WindowType};
use crate::spend::{HoldId, HoldInfo, SpendError};

use super::codec::UNKNOWN_OPERATION;

/// File name of the earlier SQLite journal inside the data directory.
pub(super) const FILE: &str = "spend.db";
/// Its name once imported.
pub(super) const RETIRED_FILE: &str = "spend.db.imported";
/// The owner lock earlier versions took.
pub(super) const LOCK_FILE: &str = "spend.db.lock";

/// Reads every row of the SQLite journal at `path`.
pub(super) fn read(path: &Path) -> Result<Tables, SpendError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(unavailable)?;
    load(&conn)
}

/// The rows of the file: windows, settled buckets, live holds.
fn load(conn: &Connection) -> Result<Tables, SpendError> {
    let mut tables = Tables::default();
    let mut windows = conn
        .prepare("SELECT policy_id, time_window, window_type FROM spend_windows")
        .map_err(unavailable)?;
    let rows = windows
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(unavailable)?;
    for row in rows {
        let (policy, window, kind) = row.map_err(unavailable)?;
        let window: TimeWindow = window.parse().map_err(|e| corrupt("time_window", e))?;
        let kind: WindowType = kind.parse().map_err(|e| corrupt("window_type", e))?;
        tables.apply(Op::SetWindow {
            policy: PolicyId(uuid(&policy)?),
            window,
            kind,
        });
    }
    let mut settled = conn
        .prepare("SELECT policy_id, bucket_start, settled_micros FROM spend_settled")
        .map_err(unavailable)?;
    let rows = settled
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(unavailable)?;
    for row in rows {
        let (policy, bucket, micros) = row.map_err(unavailable)?;
        tables.apply(Op::SetSettled {
            policy: PolicyId(uuid(&policy)?),
            bucket: instant(bucket)?,
            micros: Micros(micros),
        });
    }
    let mut holds = conn
        .prepare(
            "SELECT hold_id, agent_id, ancestor_ids, root_agent_id, resource, amount_micros,
                    currency, charged, reserved_at, expires_at FROM spend_holds",
        )
        .map_err(unavailable)?;
    let rows = holds.query_map([], hold_row).map_err(unavailable)?;
    for row in rows {
        tables.apply(Op::PutHold(parse_hold(row.map_err(unavailable)?)?));
    }
    Ok(tables)
}

type HoldRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    i64,
    i64,
);

fn hold_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HoldRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn parse_hold(row: HoldRow) -> Result<HoldInfo, SpendError> {
    let (id, agent, ancestors, root, resource, amount, currency, charged, reserved_at, expires_at) =
        row;
    let ancestor_ids: Vec<AgentId> =
        serde_json::from_str(&ancestors).map_err(|e| corrupt("ancestor_ids", e))?;
    let charged: Vec<(PolicyId, i64)> =
        serde_json::from_str(&charged).map_err(|e| corrupt("charged", e))?;
    Ok(HoldInfo {
        hold_id: HoldId(uuid(&id)?),
        agent_id: AgentId(uuid(&agent)?),
        ancestor_ids,
        root_agent_id: AgentId(uuid(&root)?),
        resource,
        // Only the gateway reserved before the journal existed.
        source: Source::Gateway,
        operation: UNKNOWN_OPERATION.to_owned(),
        amount: Micros(amount),
        currency: Currency::parse(&currency).map_err(|e| corrupt("currency", e))?,
        charged: charged
            .into_iter()
            .map(|(p, b)| instant(b).map(|at| (p, at)))
            .collect::<Result<_, _>>()?,
        reserved_at: instant(reserved_at)?,
        expires_at: instant(expires_at)?,
    })
}

fn instant(value: i64) -> Result<DateTime<Utc>, SpendError> {
    DateTime::<Utc>::from_timestamp_micros(value)
        .ok_or_else(|| SpendError::Corrupt(format!("timestamp {value} out of range")))
}

fn uuid(text: &str) -> Result<Uuid, SpendError> {
    Uuid::parse_str(text).map_err(|e| corrupt("id", e))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> SpendError {
    SpendError::Corrupt(format!("{what}: {e}"))
}

fn unavailable(e: rusqlite::Error) -> SpendError {
    SpendError::Unavailable(format!("spend journal: {e}"))
}
