//! Ledger throughput on the embedded backends: metering events already in the log → ledger
//! rows → sealed, signed Merkle batches (the ledger role's consumer, in-process), then
//! `verify-range` over everything. Prints events/s for both. Under `cargo test` (no
//! `--bench`) it runs a small smoke size and checks the counts only.
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

/// The store under test behind both traits the ledger consumer needs.
async fn open_store(
    dir: &std::path::Path,
    postgres_port: Option<u16>,
) -> anyhow::Result<(Arc<dyn LedgerStore>, Arc<dyn LeaseStore>)> {
    let Some(port) = postgres_port else {
        let store = Arc::new(SqliteStore::open(dir)?);
        return Ok((store.clone(), store));
    };
    let config = PostgresConfig {
        host: Some("127.0.0.1".into()),
        port,
        database: "caracal_bench".into(),
        username: "postgres".into(),
        ..PostgresConfig::default()
    };
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

    let rate = |n: i64, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "ledger ingest ({backend}): {rows} events in {:.2} s = {:.0} events/s ({sealed} sealed in batches of {batch}; {ingest_cpu:.2} CPU s in this process)",
        ingest.as_secs_f64(),
        rate(rows, ingest),
    );
    for _ in 0..verify_runs {
        let started = Instant::now();
        let cpu_started = cpu_seconds();
        let summary = verify::verify_range(ledger.as_ref(), i64::MIN, i64::MAX, |r| {
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
        println!(
            "verify-range ({backend}):  {} events in {} batches, {:.2} s = {:.0} events/s ({verify_cpu:.2} CPU s in this process)",
            summary.rows,
            summary.batches,
            verifying.as_secs_f64(),
            rate(i64::try_from(summary.rows)?, verifying)
        );
    }
    if !bench {
        println!(
            "(smoke run under cargo test; `cargo bench --bench ledger_throughput` for numbers)"
        );
    }
    bus.close().await?;
    Ok(())
}
