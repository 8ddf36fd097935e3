//! `LedgerStore::visit_ledger_ranges` on Postgres, the reader verification runs on: the ranges
//! of one call read on one pooled connection, adjacent ranges of a partition by one statement
//! (a verification chunk is usually one), the rows streamed as they arrive and each lent to the
//! visitor straight from the driver's row buffer (text and bytes borrowed, UUIDs printed into
//! stack buffers), never copied into an owned row. Each statement sees its own snapshot, as
//! `ledger_rows` does; statements stay unnamed (no session state, see `mod.rs`). It checks
//! nothing itself.

use std::pin::pin;

use futures_util::TryStreamExt;
use tokio_postgres::types::Type;
use tokio_postgres::Row;
use uuid::Uuid;

use super::ledger_rows::ROW_COLUMNS;
use super::{col, map_err, PgStore};
use crate::store::ledger::{AncestorsView, ColumnsView, RangesVisitor, RowRef, SeqRange, Visit};
use crate::store::StoreError;

/// Lends the rows of `ranges` to `visit`, range after range, each followed by its `End`. The
/// reading and the visitor's work run as a task of their own, so the calls a caller keeps in
/// flight (verification's chunks) use every runtime worker, not only the caller's thread, as
/// the embedded store's reader threads do. Dropping the returned future stops that task.
pub(super) async fn visit_ranges(
    store: &PgStore,
    ranges: Vec<SeqRange>,
    visit: RangesVisitor,
) -> Result<(), StoreError> {
    if ranges.is_empty() {
        return Ok(());
    }
    let client = store.client().await?;
    let mut task = AbortOnDrop(tokio::spawn(read_ranges(client, ranges, visit)));
    (&mut task.0)
        .await
        .map_err(|e| StoreError::Unavailable(format!("ledger reader task: {e}")))?
}

/// Aborts the task when dropped (its caller gave up waiting for it).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `visit_ranges`' work on one pooled connection.
async fn read_ranges(
    client: deadpool_postgres::Object,
    ranges: Vec<SeqRange>,
    mut visit: RangesVisitor,
) -> Result<(), StoreError> {
    let sql = format!(
        r#"SELECT {ROW_COLUMNS} FROM ledger_events
           WHERE "partition" = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq"#
    );
    // Reused for every row: the ancestor ids joined as `,a,b,`.
    let mut ancestors = String::new();
    let mut start = 0;
    while start < ranges.len() {
        let end = span_end(&ranges, start);
        let (partition, first, last) = (
            ranges[start].partition,
            ranges[start].first,
            ranges[end - 1].last,
        );
        let rows = client
            .query_typed_raw(
                &sql,
                [
                    (
                        &partition as &(dyn tokio_postgres::types::ToSql + Sync),
                        Type::INT4,
                    ),
                    (&first, Type::INT8),
                    (&last, Type::INT8),
                ],
            )
            .await
            .map_err(map_err)?;
        let mut rows = pin!(rows);
        // The range the next row belongs to; every range before it has ended.
        let mut at = start;
        while let Some(row) = rows.try_next().await.map_err(map_err)? {
            let seq: i64 = col(&row, 1)?;
            while at < end && seq > ranges[at].last {
                visit(Visit::End(at));
                at += 1;
            }
            if at < end && seq >= ranges[at].first {
                lend(&row, seq, &mut ancestors, |row| visit(Visit::Row(at, row)))?;
            }
        }
        for i in at..end {
            visit(Visit::End(i));
        }
        start = end;
    }
    Ok(())
}

/// The end (exclusive) of the ranges from `start` that one statement can read: each of the
/// same partition, non-empty, and starting right after the one before ends. So the statement's
/// rows, in sequence order, are the ranges' rows range after range.
fn span_end(ranges: &[SeqRange], start: usize) -> usize {
    let mut end = start + 1;
    while let (Some(prev), Some(next)) = (ranges.get(end - 1), ranges.get(end)) {
        let adjacent = next.partition == prev.partition
            && prev.first <= prev.last
            && next.first <= next.last
            && prev.last.checked_add(1) == Some(next.first);
        if !adjacent {
            break;
        }
        end += 1;
    }
    end
}

/// Calls `f` with `row` (columns in `ROW_COLUMNS` order) as a `RowRef` borrowing the row.
fn lend(
    row: &Row,
    seq: i64,
    ancestors: &mut String,
    f: impl FnOnce(RowRef<'_>),
) -> Result<(), StoreError> {
    let mut bufs = [[0u8; uuid::fmt::Hyphenated::LENGTH]; 5];
    let [event, request, agent, parent, root] = &mut bufs;
    let event_id = printed(col(row, 3)?, event);
    let request_id = printed(col(row, 5)?, request);
    let agent_id = printed(col(row, 6)?, agent);
    let parent_id = col::<Option<Uuid>>(row, 7)?.map(|id| printed(id, parent));
    let root_agent_id = printed(col(row, 8)?, root);
    ancestors.clear();
    ancestors.push(',');
    for id in col::<Vec<Uuid>>(row, 9)? {
        ancestors.push_str(printed(id, &mut [0u8; uuid::fmt::Hyphenated::LENGTH]));
        ancestors.push(',');
    }
    f(RowRef {
        seq,
        columns: ColumnsView {
            event_id,
            occurred_at_micros: col(row, 4)?,
            request_id,
            agent_id,
            parent_id,
            root_agent_id,
            ancestor_ids: AncestorsView::Joined(ancestors),
            provider: col(row, 10)?,
            resource: col(row, 11)?,
            operation: col(row, 12)?,
            input_tokens: col(row, 13)?,
            cached_input_tokens: col(row, 14)?,
            output_tokens: col(row, 15)?,
            calls: col(row, 16)?,
            cost_micros: col(row, 17)?,
            reserved_micros: col(row, 18)?,
            currency: col(row, 19)?,
            estimated: col(row, 20)?,
            outcome: col(row, 21)?,
        },
        datum: col(row, 22)?,
    });
    Ok(())
}

/// `id` in the text form `LedgerColumns` carries (hyphenated, lower case), printed into `buf`.
fn printed(id: Uuid, buf: &mut [u8; uuid::fmt::Hyphenated::LENGTH]) -> &str {
    id.hyphenated().encode_lower(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(partition: i32, first: i64, last: i64) -> SeqRange {
        SeqRange {
            partition,
            first,
            last,
        }
    }

    #[test]
    fn adjacent_ranges_of_a_partition_share_a_statement_and_nothing_else_does() {
        let ranges = [
            r(0, 0, 9),
            r(0, 10, 19),
            r(0, 20, 29),
            r(0, 40, 49), // a hole before it
            r(1, 50, 59), // another partition
            r(1, 60, 59), // empty
            r(1, 60, 69),
            r(1, 30, 39), // backwards
        ];
        let mut spans = Vec::new();
        let mut start = 0;
        while start < ranges.len() {
            let end = span_end(&ranges, start);
            spans.push((start, end));
            start = end;
        }
        assert_eq!(spans, vec![(0, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8)]);
    }

    #[test]
    fn ids_print_as_the_columns_carry_them() {
        let id = Uuid::new_v4();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        assert_eq!(printed(id, &mut buf), id.to_string());
    }
}
