//! Ledger throughput on the embedded backends: metering events already in the log → ledger
//! rows → sealed, signed Merkle batches (the ledger role's consumer, in-process), then
//! `verify-range` over everything. Prints events/s for both, each beside its limit measured in
//! the same run (`limits.rs`): verify-range as a fraction of a bare read-and-hash of the same
//! rows, and on Postgres ingest as a fraction of a raw binary COPY of the same rows. Under
//! `cargo test` (no `--bench`) it runs a small smoke size and checks the counts only.
//!
//! `cargo bench --bench ledger_throughput -- [EVENTS] [--postgres-port PORT] [--verify-runs K]`
//! (default 200000 events, embedded SQLite store; `--verify-runs` repeats verification). With `--postgres-port` the ledger store is the Postgres at
//! 127.0.0.1:PORT (user `postgres`, database `caracal_bench`, migrated here);
//! `scripts/bench-ledger-postgres.sh` starts a throwaway server and runs it that way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use caracal::bus::avro::Framing;
use caracal::bus::local::{LocalBus, LocalBusLimits};
use caracal::bus::{event_message, EventBus};
use caracal::config::PostgresConfig;
use caracal::consume::{self, ConsumerConfig};
use caracal::core::agent::AgentId;
use caracal::core::checkpoint::SigningKey;
use caracal::core::events::{Event, MeteringEvent, Outcome, Source, UnixMicros};
use caracal::core::money::{Currency, Micros};
use caracal::http::Shutdown;
use caracal::ledger::{verify, LedgerSettings, LedgerSink};
use caracal::store::leases::LeaseStore;
use caracal::store::ledger::LedgerStore;
use caracal::store::postgres::{migrate, PgStore, PoolLimits};
use caracal::store::sqlite::SqliteStore;
use uuid::Uuid;

#[path = "ledger_throughput/limits.rs"]
mod limits;

/// Issue 27's targets: ingest as a fraction of raw COPY, verification of read-and-hash.
const INGEST_RATIO_TARGET: f64 = 0.70;
const VERIFY_RATIO_TARGET: f64 = 0.80;
/// Connections of the raw COPY limit: the consumer's partitions in flight.
const RAW_COPY_STREAMS: usize = 4;

fn event(root: AgentId, n: i64, at: i64) -> MeteringEvent {
    MeteringEvent {
        event_id: Uuid::now_v7(),
        occurred_at: UnixMicros(at),
        request_id: Uuid::new_v4(),
        correlation_id: Some(format!("bench-{n}")),
        agent_id: root,
        parent_id: None,
        root_agent_id: root,
        ancestor_ids: vec![],
        source: Source::Gateway,
        provider: "openai".into(),
        resource: "gpt-4o-mini".into(),
        operation: "chat.completions".into(),
        input_tokens: 900,
        cached_input_tokens: 100,
        cache_write_input_tokens: 0,
        output_tokens: 250,
        calls: 1,
        cost_micros: Micros(285 + n % 7),
        reserved_micros: Micros(1_000),
        currency: Currency::USD,
        estimated: false,
        outcome: Outcome::Completed,
        upstream_status: Some(200),
        reservation_id: Uuid::new_v4(),
        policy_ids: vec![],
        pricebook_version: 3,
        instance: "gateway-0".into(),
        upstream_latency_micros: 420_000,
        metadata: Default::default(),
    }
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`; 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line (12 and 13 after the name), in
    // clock ticks: 100 per second on Linux (`getconf CLK_TCK`).
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let mut events = if bench { 200_000 } else { 3_000 };
    let mut postgres_port = None;
    let mut verify_runs = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--postgres-port" {
            let port = args.next().context("--postgres-port needs a port")?;
            postgres_port = Some(port.parse::<u16>().context("--postgres-port")?);
        } else if arg == "--verify-runs" {
            let runs = args.next().context("--verify-runs needs a count")?;
            verify_runs = runs.parse::<u32>().context("--verify-runs")?.max(1);
        } else if let Ok(n) = arg.parse::<i64>() {
            events = n;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(events, bench, postgres_port, verify_runs))
}

/// The bench's Postgres: 127.0.0.1:`port`, user `postgres`, database `caracal_bench`.
fn pg_config(port: u16) -> PostgresConfig {
    PostgresConfig {
        host: Some("127.0.0.1".into()),
        port,
        database: "caracal_bench".into(),
        username: "postgres".into(),
        ..PostgresConfig::default()
    }
}

/// The store under test behind both traits the ledger consumer needs.
async fn open_store(
    dir: &std::path::Path,
    postgres_port: Option<u16>,
) -> anyhow::Result<(Arc<dyn LedgerStore>, Arc<dyn LeaseStore>)> {
    let Some(port) = postgres_port else {
        let store = Arc::new(SqliteStore::open(dir)?);
        return Ok((store.clone(), store));
    };
    let config = pg_config(port);
    let mut client = migrate::connect(&config).await?;
    migrate::up(&mut client).await?;
    let limits = PoolLimits {
        connections_max: 8,
        wait_timeout: Duration::from_secs(30),
    };
    let store = Arc::new(PgStore::open(&config, limits).await?);
    Ok((store.clone(), store))
}

async fn run(
    total: i64,
    bench: bool,
    postgres_port: Option<u16>,
    verify_runs: u32,
) -> anyhow::Result<()> {
    // Full-size batches for numbers; small ones in the smoke run so it seals something.
    let batch: i64 = if bench { 1_000 } else { 50 };
    let dir = tempfile::tempdir()?;
    let bus = Arc::new(LocalBus::open(dir.path(), LocalBusLimits::default())?);
    let (ledger, leases) = open_store(dir.path(), postgres_port).await?;
    let backend = if postgres_port.is_some() {
        "postgres"
    } else {
        "sqlite"
    };

    // The load: `total` events of 64 trees, already durable in the log (not timed).
    let roots: Vec<AgentId> = (0..64).map(|_| AgentId::new()).collect();
    let now = chrono::Utc::now().timestamp_micros();
    let loading = Instant::now();
    let mut n = 0;
    while n < total {
        let chunk: Vec<_> = (n..(n + 2_000).min(total))
            .map(|i| {
                let root = roots[usize::try_from(i).unwrap_or(0) % roots.len()];
                event_message(
                    &Event::Metering(event(root, i, now + i)),
                    Framing::SingleObject,
                )
            })
            .collect::<Result<_, _>>()?;
        n += i64::try_from(chunk.len())?;
        bus.publish(chunk).await?;
    }

    println!(
        "log publish (embedded): {total} events in {:.2} s (setup, not a target)",
        loading.elapsed().as_secs_f64()
    );
    let (key, _) = SigningKey::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let settings = LedgerSettings {
        batch_size_limit: batch,
        batch_timeout: Duration::from_secs(3_600),
        reverify_every: Duration::from_secs(3_600),
        reverify_batches: 1,
        partitions_in_flight: 4,
    };
    let sink = Arc::new(LedgerSink::new(Arc::clone(&ledger), key, settings).await?);
    let (stop, shutdown) = Shutdown::new();
    let mut consumer = ConsumerConfig::new("ledger", vec!["caracal.metering.events".into()]);
    consumer.idle_poll = Duration::from_millis(5);
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let task = tokio::spawn(consume::run(
        consumer,
        leases,
        bus.clone() as Arc<dyn EventBus>,
        sink,
        shutdown,
    ));
    // Done when every row is in and every full batch is sealed (partials wait for the timeout).
    let deadline = Instant::now() + Duration::from_secs(600);
    let (rows, sealed) = loop {
        let heads = ledger.ledger_heads().await?;
        let rows: i64 = heads.iter().map(|h| h.next_seq).sum();
        let sealed: i64 = heads.iter().map(|h| h.first_unsealed()).sum();
        if rows == total && heads.iter().all(|h| h.unsealed() < batch) {
            break (rows, sealed);
        }
        if Instant::now() > deadline {
            bail!("ingest stalled at {rows} rows, {sealed} sealed");
        }
        // Coarse polling: every poll takes the store's connection from the consumer.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ingest = started.elapsed();
    let ingest_cpu = cpu_seconds() - cpu_started;
    let _ = stop.send(true);
    task.await.context("consumer task")?;

    println!(
        "ledger ingest ({backend}): {rows} events in {:.2} s = {:.0} events/s ({sealed} sealed in batches of {batch}; {ingest_cpu:.2} CPU s in this process)",
        ingest.as_secs_f64(),
        rate(rows, ingest),
    );
    if let Some(port) = postgres_port {
        raw_copy_limit(ledger.as_ref(), port, batch, rate(rows, ingest)).await?;
    }
    for run in 0..verify_runs {
        // Alternate which goes first, so neither always reads a cache the other warmed.
        if run % 2 == 0 {
            let ours = verify_once(ledger.as_ref(), backend, sealed).await?;
            let limit = read_and_hash_once(ledger.as_ref(), postgres_port, sealed).await?;
            print_ratio(
                "verify-range / read-and-hash",
                ours,
                limit,
                VERIFY_RATIO_TARGET,
            );
        } else {
            let limit = read_and_hash_once(ledger.as_ref(), postgres_port, sealed).await?;
            let ours = verify_once(ledger.as_ref(), backend, sealed).await?;
            print_ratio(
                "verify-range / read-and-hash",
                ours,
                limit,
                VERIFY_RATIO_TARGET,
            );
        }
    }
    if !bench {
        println!(
            "(smoke run under cargo test; `cargo bench --bench ledger_throughput` for numbers)"
        );
    }
    bus.close().await?;
    Ok(())
}

fn rate(n: i64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn print_ratio(what: &str, ours: f64, limit: f64, target: f64) {
    let ratio = ours / limit.max(1e-9);
    let verdict = if ratio >= target { "met" } else { "NOT met" };
    println!("ratio {what}: {ratio:.2} (target ≥ {target:.2}: {verdict})");
}

/// The raw binary COPY of the ingested rows (`limits::raw_copy`) and ingest's fraction of it.
async fn raw_copy_limit(
    ledger: &dyn LedgerStore,
    port: u16,
    batch: i64,
    ingest_rate: f64,
) -> anyhow::Result<()> {
    let heads: Vec<(i32, i64)> = ledger
        .ledger_heads()
        .await?
        .iter()
        .map(|h| (h.partition, h.next_seq))
        .collect();
    let raw = limits::raw_copy(&pg_config(port), &heads, batch, RAW_COPY_STREAMS).await?;
    let limit = rate(i64::try_from(raw.rows)?, raw.elapsed);
    println!(
        "raw COPY limit (postgres): {} rows in {:.2} s = {limit:.0} rows/s (the same rows into \
         identical tables and indexes, {batch} rows per transaction, {} connections; no \
         sealing, signing or consumer)",
        raw.rows,
        raw.elapsed.as_secs_f64(),
        raw.streams
    );
    print_ratio("ingest / raw COPY", ingest_rate, limit, INGEST_RATIO_TARGET);
    Ok(())
}

/// One `verify_range` over everything; its events/s.
async fn verify_once(ledger: &dyn LedgerStore, backend: &str, sealed: i64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let summary = verify::verify_range(ledger, i64::MIN, i64::MAX, |r| {
        if !r.ok() {
            eprintln!("verification failure: {:?}", r.failures);
        }
    })
    .await?;
    let verifying = started.elapsed();
    let verify_cpu = cpu_seconds() - cpu_started;
    if summary.failed_batches != 0 || i64::try_from(summary.rows)? != sealed || sealed == 0 {
        bail!("verification disagrees: {summary:?}, {sealed} rows sealed");
    }
    let events_per_s = rate(i64::try_from(summary.rows)?, verifying);
    println!(
        "verify-range ({backend}):  {} events in {} batches, {:.2} s = {events_per_s:.0} events/s ({verify_cpu:.2} CPU s in this process)",
        summary.rows,
        summary.batches,
        verifying.as_secs_f64(),
    );
    Ok(events_per_s)
}

/// One bare read-and-hash of every sealed row (`limits::read_and_hash`, on Postgres
/// `limits::read_and_hash_postgres`); its rows/s.
async fn read_and_hash_once(
    ledger: &dyn LedgerStore,
    postgres_port: Option<u16>,
    sealed: i64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let (rows, backend) = match postgres_port {
        None => (limits::read_and_hash(ledger).await?, "sqlite"),
        Some(port) => (
            limits::read_and_hash_postgres(ledger, &pg_config(port)).await?,
            "postgres",
        ),
    };
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_started;
    if i64::try_from(rows)? != sealed {
        bail!("read-and-hash read {rows} rows, {sealed} are sealed");
    }
    let rows_per_s = rate(sealed, elapsed);
    println!(
        "read-and-hash limit ({backend}): {rows} rows, {:.2} s = {rows_per_s:.0} rows/s ({cpu:.2} CPU s in this process)",
        elapsed.as_secs_f64()
    );
    Ok(rows_per_s)
}
