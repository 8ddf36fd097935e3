//! The limits the ledger bench measures beside Caracal in the same run (issue 27): a bare
//! read-and-hash of the sealed rows (what verification cannot go below on this store) and, on
//! Postgres, a raw binary COPY of the same rows into identical tables with the same indexes
//! (what ingest cannot go beyond on this server). Neither seals, signs, decodes nor checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use caracal::config::PostgresConfig;
use caracal::core::merkle;
use caracal::ledger::verify::{self, VERIFY_CHUNKS_IN_FLIGHT, VERIFY_PAGE_BATCHES};
use caracal::store::ledger::{LedgerStore, SeqRange, Visit};
use caracal::store::postgres::migrate;
use futures_util::{SinkExt as _, StreamExt as _};

/// Reads every sealed row through the store's own row reader (`visit_ledger_ranges`, the
/// reader verification uses; on SQLite it lends each row without copying it), batches listed,
/// chunked (`verify::chunk_sizes`) and kept in flight exactly as `verify_range` does, and SHA-256-hashes each row's
/// leaf; nothing else. Returns the rows.
pub async fn read_and_hash(store: &dyn LedgerStore) -> anyhow::Result<u64> {
    let rows = Arc::new(AtomicU64::new(0));
    // Folded from every leaf so the hashing cannot be optimised away.
    let fold = Arc::new(AtomicU64::new(0));
    let mut ranges = sealed_ranges(store).await?;
    let mut chunks = Vec::new();
    for size in verify::chunk_sizes(ranges.len()) {
        let rest = ranges.split_off(size.min(ranges.len()));
        chunks.push(std::mem::replace(&mut ranges, rest));
    }
    let reads = chunks.into_iter().map(|chunk| {
        let (rows, fold) = (Arc::clone(&rows), Arc::clone(&fold));
        store.visit_ledger_ranges(
            chunk,
            Box::new(move |visit| {
                if let Visit::Row(_, row) = visit {
                    let leaf = merkle::leaf_hash(row.datum);
                    fold.fetch_xor(u64::from(leaf[0]), Ordering::Relaxed);
                    rows.fetch_add(1, Ordering::Relaxed);
                }
            }),
        )
    });
    let mut done = futures_util::stream::iter(reads).buffer_unordered(VERIFY_CHUNKS_IN_FLIGHT);
    while let Some(read) = done.next().await {
        read?;
    }
    std::hint::black_box(fold.load(Ordering::Relaxed));
    Ok(rows.load(Ordering::Relaxed))
}

/// The sealed batches' row ranges, listed page by page as `verify_range` lists them.
async fn sealed_ranges(store: &dyn LedgerStore) -> anyhow::Result<Vec<SeqRange>> {
    let mut ranges = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .batches_in_range(i64::MIN, i64::MAX, after, VERIFY_PAGE_BATCHES)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.header.partition, last.header.batch_number));
        ranges.extend(page.iter().map(|b| SeqRange {
            partition: b.header.partition,
            first: b.header.first_seq,
            last: b.header.last_seq,
        }));
    }
    Ok(ranges)
}

/// On Postgres, the store's reader copies every row into an owned row; the bare loop here does
/// not: per batch one query of every column of its rows (a statement prepared once per
/// connection), each row's leaf hashed from the row buffer, as many connections at once as
/// `verify_range` has chunks in flight. Returns the rows.
pub async fn read_and_hash_postgres(
    store: &dyn LedgerStore,
    config: &PostgresConfig,
) -> anyhow::Result<u64> {
    let mut clients = Vec::with_capacity(VERIFY_CHUNKS_IN_FLIGHT);
    for _ in 0..VERIFY_CHUNKS_IN_FLIGHT {
        clients.push(migrate::connect(config).await?);
    }
    let ranges = Arc::new(sealed_ranges(store).await?);
    let mut tasks = Vec::with_capacity(clients.len());
    let streams = clients.len();
    for (k, client) in clients.into_iter().enumerate() {
        let ranges = Arc::clone(&ranges);
        tasks.push(tokio::spawn(async move {
            let select = client
                .prepare(
                    r#"SELECT * FROM ledger_events
                       WHERE "partition" = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq"#,
                )
                .await?;
            let (mut rows, mut fold) = (0u64, 0u8);
            for range in ranges.iter().skip(k).step_by(streams) {
                for row in client
                    .query(&select, &[&range.partition, &range.first, &range.last])
                    .await?
                {
                    let datum: &[u8] = row.try_get("datum")?;
                    fold ^= merkle::leaf_hash(datum)[0];
                    rows += 1;
                }
            }
            std::hint::black_box(fold);
            anyhow::Ok(rows)
        }));
    }
    let mut rows = 0;
    for task in tasks {
        rows += task.await.context("read-and-hash task")??;
    }
    Ok(rows)
}

/// The rows of one ledger batch as binary COPY data: its `ledger_event_ids` rows and its
/// `ledger_events` rows.
struct CopyChunk {
    ids: Bytes,
    events: Bytes,
}

/// What the raw COPY measured.
pub struct RawCopy {
    pub rows: u64,
    pub elapsed: Duration,
    pub streams: usize,
}

/// Tables shaped like the ledger's (columns, constraints, indexes, partitioning by month with
/// a default partition), empty, and proof that they carry as many indexes as the originals.
const CREATE_RAW_TABLES: &str = r#"
    DROP TABLE IF EXISTS raw_ledger_events, raw_ledger_event_ids;
    CREATE TABLE raw_ledger_event_ids (LIKE ledger_event_ids INCLUDING ALL);
    CREATE TABLE raw_ledger_events (LIKE ledger_events INCLUDING ALL)
        PARTITION BY RANGE (occurred_at);
    CREATE TABLE raw_ledger_events_default PARTITION OF raw_ledger_events DEFAULT;
"#;

/// Copies the ledger's rows (`heads`: each partition and its row count), `batch` rows per
/// transaction as the ledger writes them, over `streams` connections at once (the ledger's
/// partitions in flight), into empty tables identical to the ledger's. Only the COPYs and
/// their commits are timed; the rows are read out of the ledger first.
pub async fn raw_copy(
    config: &PostgresConfig,
    heads: &[(i32, i64)],
    batch: i64,
    streams: usize,
) -> anyhow::Result<RawCopy> {
    let admin = migrate::connect(config).await?;
    admin.batch_execute(CREATE_RAW_TABLES).await?;
    let index_count = |table: &'static str| {
        let admin = &admin;
        async move {
            let row = admin
                .query_one(
                    "SELECT count(*) FROM pg_indexes WHERE tablename = $1",
                    &[&table],
                )
                .await?;
            anyhow::Ok(row.get::<_, i64>(0))
        }
    };
    for (ours, raw) in [
        ("ledger_events", "raw_ledger_events"),
        ("ledger_event_ids", "raw_ledger_event_ids"),
    ] {
        let (a, b) = (index_count(ours).await?, index_count(raw).await?);
        if a != b || a == 0 {
            bail!("{raw} has {b} indexes, {ours} {a}: not an identical table");
        }
    }
    let mut chunks = Vec::new();
    for &(partition, rows) in heads {
        let mut first = 0;
        while first < rows {
            let last = (first + batch).min(rows) - 1;
            chunks.push(read_chunk(&admin, partition, first, last).await?);
            first = last + 1;
        }
    }
    let total: u64 = heads
        .iter()
        .map(|(_, n)| u64::try_from(*n).unwrap_or(0))
        .sum();
    let streams = streams.max(1);
    let mut clients = Vec::with_capacity(streams);
    for _ in 0..streams {
        clients.push(migrate::connect(config).await?);
    }
    let chunks = Arc::new(chunks);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(streams);
    for (k, client) in clients.into_iter().enumerate() {
        let chunks = Arc::clone(&chunks);
        tasks.push(tokio::spawn(async move {
            let mut client = client;
            for chunk in chunks.iter().skip(k).step_by(streams) {
                copy_chunk(&mut client, chunk).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("raw COPY task")??;
    }
    let elapsed = started.elapsed();
    let copied = admin
        .query_one("SELECT count(*) FROM raw_ledger_events", &[])
        .await?
        .get::<_, i64>(0);
    if u64::try_from(copied).ok() != Some(total) {
        bail!("raw COPY left {copied} rows, expected {total}");
    }
    admin
        .batch_execute("DROP TABLE raw_ledger_events, raw_ledger_event_ids")
        .await?;
    Ok(RawCopy {
        rows: total,
        elapsed,
        streams,
    })
}

/// Rows `first..=last` of a partition as binary COPY data, as stored.
async fn read_chunk(
    client: &tokio_postgres::Client,
    partition: i32,
    first: i64,
    last: i64,
) -> anyhow::Result<CopyChunk> {
    let out = |table: &str| {
        format!(
            r#"COPY (SELECT * FROM {table} WHERE "partition" = {partition}
                 AND seq BETWEEN {first} AND {last} ORDER BY seq) TO STDOUT (FORMAT binary)"#
        )
    };
    let mut read = Vec::new();
    for table in ["ledger_event_ids", "ledger_events"] {
        let mut bytes = Vec::new();
        let stream = client.copy_out(&out(table)).await?;
        futures_util::pin_mut!(stream);
        while let Some(part) = stream.next().await {
            bytes.extend_from_slice(&part?);
        }
        read.push(Bytes::from(bytes));
    }
    let events = read.pop().context("events")?;
    let ids = read.pop().context("ids")?;
    Ok(CopyChunk { ids, events })
}

/// One transaction: the chunk's ids, then its rows, each by one binary COPY.
async fn copy_chunk(client: &mut tokio_postgres::Client, chunk: &CopyChunk) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    for (table, data) in [
        ("raw_ledger_event_ids", &chunk.ids),
        ("raw_ledger_events", &chunk.events),
    ] {
        let sink = tx
            .copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
            .await?;
        futures_util::pin_mut!(sink);
        sink.as_mut().send(data.clone()).await?;
        sink.as_mut().finish().await?;
    }
    tx.commit().await?;
    Ok(())
}
