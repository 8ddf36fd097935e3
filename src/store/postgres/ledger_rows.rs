//! Ledger rows and batches between Postgres and the store's types: the column lists (in the
//! order of the binary COPY), the UUID columns parsed from and printed back to the text form
//! `LedgerColumns` carries, and the two select helpers. No transactions are opened here.

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Transaction};
use uuid::Uuid;

use super::{col, corrupt, map_err};
use crate::core::checkpoint::BatchHeader;
use crate::store::ledger::{LedgerColumns, SealedBatch, StoredRow};
use crate::store::StoreError;

/// Every column of `ledger_events`, in the order of `COPY_TYPES` and of `row_from`.
pub(super) const ROW_COLUMNS: &str = r#""partition", seq, source_offset, event_id, occurred_at,
    request_id, agent_id, parent_id, root_agent_id, ancestor_ids, provider, resource, operation,
    input_tokens, cached_input_tokens, output_tokens, calls, cost_micros, reserved_micros,
    currency, estimated, outcome, datum"#;

pub(super) const COPY_TYPES: [Type; 23] = [
    Type::INT4,
    Type::INT8,
    Type::INT8,
    Type::UUID,
    Type::INT8,
    Type::UUID,
    Type::UUID,
    Type::UUID,
    Type::UUID,
    Type::UUID_ARRAY,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::BOOL,
    Type::TEXT,
    Type::BYTEA,
];

pub(super) const BATCH_COLUMNS: &str = r#""partition", batch_number, first_seq, last_seq, count,
    root, prev_root, first_time, last_time, key_id, signature, sealed_at"#;

/// The UUID columns of one entry, parsed. Metering events carry UUIDs (the Avro schema's
/// logical type), so a value that does not parse is a caller's bug, reported as a conflict.
pub(super) struct Ids {
    pub event: Uuid,
    pub request: Uuid,
    pub agent: Uuid,
    pub parent: Option<Uuid>,
    pub root: Uuid,
    pub ancestors: Vec<Uuid>,
}

fn uuid(what: &str, text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text)
        .map_err(|_| StoreError::Conflict(format!("ledger {what} {text:?} is not a UUID")))
}

impl Ids {
    pub fn parse(c: &LedgerColumns) -> Result<Ids, StoreError> {
        Ok(Ids {
            event: uuid("event_id", &c.event_id)?,
            request: uuid("request_id", &c.request_id)?,
            agent: uuid("agent_id", &c.agent_id)?,
            parent: c
                .parent_id
                .as_deref()
                .map(|p| uuid("parent_id", p))
                .transpose()?,
            root: uuid("root_agent_id", &c.root_agent_id)?,
            ancestors: c
                .ancestor_ids
                .iter()
                .map(|a| uuid("ancestor_id", a))
                .collect::<Result<_, _>>()?,
        })
    }
}

fn text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub(super) fn row_from(r: &Row) -> Result<StoredRow, StoreError> {
    let ancestors: Vec<Uuid> = col(r, 9)?;
    Ok(StoredRow {
        partition: col(r, 0)?,
        seq: col(r, 1)?,
        source_offset: col(r, 2)?,
        columns: LedgerColumns {
            event_id: text(col(r, 3)?),
            occurred_at_micros: col(r, 4)?,
            request_id: text(col(r, 5)?),
            agent_id: text(col(r, 6)?),
            parent_id: col::<Option<Uuid>>(r, 7)?.map(text),
            root_agent_id: text(col(r, 8)?),
            ancestor_ids: ancestors.into_iter().map(text).collect(),
            provider: col(r, 10)?,
            resource: col(r, 11)?,
            operation: col(r, 12)?,
            input_tokens: col(r, 13)?,
            cached_input_tokens: col(r, 14)?,
            output_tokens: col(r, 15)?,
            calls: col(r, 16)?,
            cost_micros: col(r, 17)?,
            reserved_micros: col(r, 18)?,
            currency: col(r, 19)?,
            estimated: col(r, 20)?,
            outcome: col(r, 21)?,
        },
        datum: col(r, 22)?,
    })
}

pub(super) type Params<'a> = [(&'a (dyn ToSql + Sync), Type)];

/// Ledger rows matching `sql_where` (which may end in ORDER BY / LIMIT).
pub(super) async fn rows(
    tx: &Transaction<'_>,
    sql_where: &str,
    params: &Params<'_>,
) -> Result<Vec<StoredRow>, StoreError> {
    tx.query_typed(
        &format!("SELECT {ROW_COLUMNS} FROM ledger_events WHERE {sql_where}"),
        params,
    )
    .await
    .map_err(map_err)?
    .iter()
    .map(row_from)
    .collect()
}

fn hash_from(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| corrupt(what, format!("{} bytes, not 32", bytes.len())))
}

pub(super) fn batch_from(r: &Row) -> Result<SealedBatch, StoreError> {
    Ok(SealedBatch {
        header: BatchHeader {
            partition: col(r, 0)?,
            batch_number: col(r, 1)?,
            first_seq: col(r, 2)?,
            last_seq: col(r, 3)?,
            count: col(r, 4)?,
            root: hash_from(col(r, 5)?, "merkle_batches.root")?,
            prev_root: hash_from(col(r, 6)?, "merkle_batches.prev_root")?,
            first_time_micros: col(r, 7)?,
            last_time_micros: col(r, 8)?,
            key_id: col(r, 9)?,
        },
        signature: col(r, 10)?,
        sealed_at_micros: col(r, 11)?,
    })
}

/// Sealed batches matching `sql_where` (which may end in ORDER BY / LIMIT).
pub(super) async fn query_batches(
    tx: &Transaction<'_>,
    sql_where: &str,
    params: &Params<'_>,
) -> Result<Vec<SealedBatch>, StoreError> {
    tx.query_typed(
        &format!("SELECT {BATCH_COLUMNS} FROM merkle_batches WHERE {sql_where}"),
        params,
    )
    .await
    .map_err(map_err)?
    .iter()
    .map(batch_from)
    .collect()
}
