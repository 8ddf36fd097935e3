//! Ledger rows between SQLite and the store's types: the column list, the joined ancestor ids,
//! and one mapping of a row (`view`, borrowing SQLite's row buffer) from which rows are lent to
//! a visitor as they are (verification: no copy per row) or copied into owned `StoredRow`s.

use rusqlite::{params, Row, Transaction};

use super::{corrupt, map_err};
use crate::store::ledger::{AncestorsView, ColumnsView, RowRef, SeqRange, StoredRow};
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

fn text<'r>(r: &'r Row<'_>, index: usize) -> Result<&'r str, StoreError> {
    r.get_ref(index)
        .map_err(map_err)?
        .as_str()
        .map_err(|e| corrupt(&format!("ledger column {index}"), e))
}

fn int(r: &Row<'_>, index: usize) -> Result<i64, StoreError> {
    r.get(index).map_err(map_err)
}

/// The row `r` as a `RowRef` borrowing SQLite's row buffer.
fn view<'r>(r: &'r Row<'_>) -> Result<RowRef<'r>, StoreError> {
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
    Ok(RowRef {
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
    })
}

/// Ledger rows matching `sql_where` (which may end in ORDER BY / LIMIT), owned.
pub(super) fn rows(
    tx: &Transaction<'_>,
    sql_where: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<StoredRow>, StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM ledger_events WHERE {sql_where}"
        ))
        .map_err(map_err)?;
    let mut rows = stmt.query(args).map_err(map_err)?;
    let mut found = Vec::new();
    while let Some(r) = rows.next().map_err(map_err)? {
        let lent = view(r)?;
        found.push(StoredRow {
            partition: r.get(0).map_err(map_err)?,
            seq: lent.seq,
            source_offset: int(r, 2)?,
            columns: lent.columns.to_columns(),
            datum: lent.datum.to_vec(),
        });
    }
    Ok(found)
}

/// Lends the rows of `range` to `visit` in sequence order, borrowed from SQLite's row buffers.
pub(super) fn visit(
    tx: &Transaction<'_>,
    range: SeqRange,
    mut visit: impl FnMut(RowRef<'_>),
) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            r#"SELECT {ROW_COLUMNS} FROM ledger_events
               WHERE "partition" = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq"#
        ))
        .map_err(map_err)?;
    let mut rows = stmt
        .query(params![range.partition, range.first, range.last])
        .map_err(map_err)?;
    while let Some(r) = rows.next().map_err(map_err)? {
        visit(view(r)?);
    }
    Ok(())
}
