//! Ledger rows between SQLite and the store's types: the column list, the joined ancestor ids,
//! rows read into owned `StoredRow`s, and rows lent to a visitor straight from SQLite's row
//! buffers (verification reads every row; copying each out would cost more than checking it).

use rusqlite::{params, Row, Transaction};

use super::{corrupt, map_err};
use crate::store::ledger::{
    AncestorsView, ColumnsView, LedgerColumns, RowRef, RowVisitor, StoredRow,
};
use crate::store::StoreError;

pub(super) const ROW_COLUMNS: &str = r#""partition", seq, source_offset, event_id, occurred_at, request_id,
    agent_id, parent_id, root_agent_id, ancestor_ids, provider, resource, operation,
    input_tokens, cached_input_tokens, output_tokens, calls, cost_micros, reserved_micros,
    currency, estimated, outcome, datum"#;

/// `",a,b,"`: every id wrapped in commas, so `LIKE '%,id,%'` matches one whole id.
pub(super) fn join_ids(ids: &[String]) -> String {
    let mut text = String::from(",");
    for id in ids {
        text.push_str(id);
        text.push(',');
    }
    text
}

fn split_ids(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn row_from(r: &Row<'_>) -> rusqlite::Result<StoredRow> {
    let ancestors: String = r.get(9)?;
    Ok(StoredRow {
        partition: r.get(0)?,
        seq: r.get(1)?,
        source_offset: r.get(2)?,
        columns: LedgerColumns {
            event_id: r.get(3)?,
            occurred_at_micros: r.get(4)?,
            request_id: r.get(5)?,
            agent_id: r.get(6)?,
            parent_id: r.get(7)?,
            root_agent_id: r.get(8)?,
            ancestor_ids: split_ids(&ancestors),
            provider: r.get(10)?,
            resource: r.get(11)?,
            operation: r.get(12)?,
            input_tokens: r.get(13)?,
            cached_input_tokens: r.get(14)?,
            output_tokens: r.get(15)?,
            calls: r.get(16)?,
            cost_micros: r.get(17)?,
            reserved_micros: r.get(18)?,
            currency: r.get(19)?,
            estimated: r.get(20)?,
            outcome: r.get(21)?,
        },
        datum: r.get(22)?,
    })
}

fn text<'r>(r: &'r Row<'_>, index: usize) -> Result<&'r str, StoreError> {
    r.get_ref(index)
        .map_err(map_err)?
        .as_str()
        .map_err(|e| corrupt(&format!("ledger column {index}"), e))
}

fn int(r: &Row<'_>, index: usize) -> Result<i64, StoreError> {
    r.get(index).map_err(map_err)
}

/// Lends rows `first..=last` of `partition` to `visit` in sequence order, borrowed from
/// SQLite's row buffers.
pub(super) fn visit(
    tx: &Transaction<'_>,
    partition: i32,
    first: i64,
    last: i64,
    visit: &mut RowVisitor,
) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            r#"SELECT {ROW_COLUMNS} FROM ledger_events
               WHERE "partition" = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq"#
        ))
        .map_err(map_err)?;
    let mut rows = stmt
        .query(params![partition, first, last])
        .map_err(map_err)?;
    while let Some(r) = rows.next().map_err(map_err)? {
        let parent_id = r
            .get_ref(7)
            .map_err(map_err)?
            .as_str_or_null()
            .map_err(|e| corrupt("ledger column 7", e))?;
        let datum = r
            .get_ref(22)
            .map_err(map_err)?
            .as_blob()
            .map_err(|e| corrupt("ledger datum", e))?;
        visit(RowRef {
            seq: int(r, 1)?,
            columns: ColumnsView {
                event_id: text(r, 3)?,
                occurred_at_micros: int(r, 4)?,
                request_id: text(r, 5)?,
                agent_id: text(r, 6)?,
                parent_id,
                root_agent_id: text(r, 8)?,
                ancestor_ids: AncestorsView::Joined(text(r, 9)?),
                provider: text(r, 10)?,
                resource: text(r, 11)?,
                operation: text(r, 12)?,
                input_tokens: int(r, 13)?,
                cached_input_tokens: int(r, 14)?,
                output_tokens: int(r, 15)?,
                calls: int(r, 16)?,
                cost_micros: int(r, 17)?,
                reserved_micros: int(r, 18)?,
                currency: text(r, 19)?,
                estimated: r.get(20).map_err(map_err)?,
                outcome: text(r, 21)?,
            },
            datum,
        });
    }
    Ok(())
}
