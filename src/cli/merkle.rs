//! `caracal merkle verify-range|proof|verify-proof|backfill|list-batches|export-public-key|
//! keygen`: checking the sealed ledger, exporting and checking inclusion proofs, sealing rows
//! that have no batch, and managing signing keys. Verification logic lives in `ledger`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use argh::FromArgs;

use super::output::{print_json, print_table, Output};
use super::time::{parse_range, show};
use crate::config::Config;
use crate::core::checkpoint::{SigningKey, VerifyingKey};
use crate::core::merkle::{self, Hash};
use crate::core::proof;
use crate::ledger::verify::{self, BatchReport};
use crate::ledger::{keys, seal};
use crate::store::ledger::hex;

/// verify, prove and seal the Merkle ledger
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "merkle")]
pub struct MerkleCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    VerifyRange(VerifyRange),
    Proof(Proof),
    VerifyProof(VerifyProof),
    Backfill(Backfill),
    ListBatches(ListBatches),
    ExportPublicKey(ExportPublicKey),
    Keygen(Keygen),
}

/// re-read every sealed batch of a range and check rows, roots, chain and signatures
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "verify-range")]
struct VerifyRange {
    /// first day (YYYY-MM-DD) or instant (RFC 3339)
    #[argh(option)]
    start: String,
    /// last day (YYYY-MM-DD, included) or instant (RFC 3339, excluded)
    #[argh(option)]
    end: String,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// export the inclusion proof of one event (JSON)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "proof")]
struct Proof {
    /// the event's id
    #[argh(positional)]
    event_id: String,
    /// write the proof to this file instead of stdout
    #[argh(option)]
    out: Option<PathBuf>,
}

/// check an exported proof offline
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "verify-proof")]
struct VerifyProof {
    /// the proof file (JSON from `merkle proof`)
    #[argh(positional)]
    file: PathBuf,
    /// the public key (PEM) the batch must be signed with; without it the proof's own key is
    /// trusted, which only shows the proof is consistent
    #[argh(option)]
    public_key: Option<PathBuf>,
}

/// seal every ledger row of this Caracal's store that no batch covers yet
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "backfill")]
struct Backfill {
    /// refused: importing the rows of another release's database (the seeds' v0.2 upgrade
    /// step) is not supported; backfill seals this store's own unsealed rows
    #[argh(option)]
    source_version: Option<String>,
}

/// list sealed batches
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list-batches")]
struct ListBatches {
    /// first day or instant (default: the beginning)
    #[argh(option)]
    start: Option<String>,
    /// last day or instant (default: now)
    #[argh(option)]
    end: Option<String>,
    /// most batches to list (default 1000)
    #[argh(option, default = "1000")]
    limit: usize,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// print a public key (PEM): the configured signing key's, or a stored one by id
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "export-public-key")]
struct ExportPublicKey {
    /// a stored key id (default: the configured signing key)
    #[argh(option)]
    key_id: Option<String>,
    /// write to this file instead of stdout
    #[argh(option)]
    out: Option<PathBuf>,
}

/// make a new ECDSA P-256 signing key (PKCS#8 PEM, owner-only permissions)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "keygen")]
struct Keygen {
    /// the file to create (never overwritten)
    #[argh(option)]
    out: PathBuf,
}

pub async fn run(cmd: MerkleCmd, config: &Config) -> anyhow::Result<()> {
    match cmd.cmd {
        Sub::VerifyRange(c) => verify_range(c, config).await,
        Sub::Proof(c) => export_proof(c, config).await,
        Sub::VerifyProof(c) => verify_proof(c),
        Sub::Backfill(c) => backfill(c, config).await,
        Sub::ListBatches(c) => list_batches(c, config).await,
        Sub::ExportPublicKey(c) => export_public_key(c, config).await,
        Sub::Keygen(c) => keygen(c),
    }
}

fn describe(report: &BatchReport) -> String {
    format!(
        "partition {} batch {} (seq {}..={})",
        report.partition, report.batch_number, report.first_seq, report.last_seq
    )
}

async fn verify_range(c: VerifyRange, config: &Config) -> anyhow::Result<()> {
    let (start, end) = parse_range(&c.start, &c.end).map_err(anyhow::Error::msg)?;
    let stores = crate::roles::open_stores(config).await?;
    let total = stores.ledger.count_batches_in_range(start, end).await?;
    // Drawn on stderr, and only when it is a terminal.
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} batches verified, {elapsed} elapsed, ~{eta} left",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut failed: Vec<BatchReport> = Vec::new();
    let summary = verify::verify_range(stores.ledger.as_ref(), start, end, |report| {
        bar.inc(1);
        if !report.ok() {
            bar.suspend(|| {
                if c.output == Output::Table {
                    for failure in &report.failures {
                        eprintln!("FAIL {}: {failure}", describe(report));
                    }
                }
            });
            failed.push(report.clone());
        }
    })
    .await?;
    bar.finish_and_clear();
    let unsealed: i64 = stores
        .ledger
        .ledger_heads()
        .await?
        .iter()
        .map(|h| h.unsealed())
        .sum();
    match c.output {
        Output::Json => print_json(&serde_json::json!({
            "start": show(start),
            "end": show(end),
            "batches": summary.batches,
            "rows": summary.rows,
            "failed_batches": summary.failed_batches,
            "failures": failed,
            "unsealed_rows": unsealed,
        }))?,
        Output::Table => {
            if unsealed > 0 {
                println!(
                    "note: {unsealed} newest rows are not sealed yet (sealed within batchTimeoutSeconds by the ledger role, or now by `caracal merkle backfill`)"
                );
            }
            if summary.failed_batches == 0 {
                println!(
                    "OK: {} batches, {} rows verified from {} to {}",
                    summary.batches,
                    summary.rows,
                    show(start),
                    show(end)
                );
            } else {
                println!(
                    "FAILED: {} of {} batches ({} rows) from {} to {}",
                    summary.failed_batches,
                    summary.batches,
                    summary.rows,
                    show(start),
                    show(end)
                );
            }
        }
    }
    if summary.failed_batches > 0 {
        bail!("{} batches failed verification", summary.failed_batches);
    }
    Ok(())
}

async fn export_proof(c: Proof, config: &Config) -> anyhow::Result<()> {
    let stores = crate::roles::open_stores(config).await?;
    let ledger = stores.ledger.as_ref();
    let row = ledger
        .ledger_event(&c.event_id)
        .await?
        .with_context(|| format!("event {} is not in the ledger", c.event_id))?;
    let batch = ledger
        .batch_covering(row.partition, row.seq)
        .await?
        .with_context(|| {
            format!(
                "event {} (partition {} seq {}) is not sealed yet; wait for its batch or run `caracal merkle backfill`",
                c.event_id, row.partition, row.seq
            )
        })?;
    let h = &batch.header;
    let rows = ledger
        .ledger_rows(h.partition, h.first_seq, h.last_seq)
        .await?;
    let leaves: Vec<Hash> = rows.iter().map(|r| merkle::leaf_hash(&r.datum)).collect();
    let keys = verify::key_ring(ledger.signing_keys().await?);
    let key = keys
        .get(&h.key_id)
        .with_context(|| format!("the batch's signing key {} is not stored", h.key_id))?;
    let index = usize::try_from(row.seq - h.first_seq).context("sequence out of range")?;
    let event_id = uuid::Uuid::parse_str(&row.columns.event_id)
        .with_context(|| format!("stored event id {} is not a UUID", row.columns.event_id))?;
    let document = proof::build(
        event_id,
        &row.datum,
        &leaves,
        index,
        h,
        &batch.signature,
        key,
    )
    .map_err(|e| anyhow::anyhow!("cannot build the proof: {e}"))?;
    let text = serde_json::to_string_pretty(&document)?;
    match c.out {
        Some(path) => std::fs::write(&path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}

fn verify_proof(c: VerifyProof) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&c.file)
        .with_context(|| format!("cannot read {}", c.file.display()))?;
    let document: proof::ProofDocument =
        serde_json::from_str(&text).context("not a Caracal proof document")?;
    if let Some(path) = &c.public_key {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let trusted = VerifyingKey::from_spki_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{} is not a P-256 public key: {e}", path.display()))?;
        if trusted.key_id() != document.header.key_id {
            bail!(
                "the batch was signed with key {}, not the trusted key {}",
                document.header.key_id,
                trusted.key_id()
            );
        }
    }
    proof::verify(&document).map_err(|e| anyhow::anyhow!("proof does not verify: {e}"))?;
    println!(
        "OK: event {} is leaf {} of {} in batch {} of partition {} (root {}, key {})",
        document.event_id,
        document.leaf_index,
        document.tree_size,
        document.header.batch_number,
        document.header.partition,
        hex(&document.header.root),
        document.header.key_id
    );
    Ok(())
}

fn signing_key(config: &Config) -> anyhow::Result<SigningKey> {
    let merkle = &config.consumers.ledger_writer.merkle;
    Ok(keys::signing_key(
        merkle.signing_key_file.as_deref(),
        &config.data_dir,
        crate::roles::ledger::key_source(config),
    )?)
}

async fn backfill(c: Backfill, config: &Config) -> anyhow::Result<()> {
    if let Some(version) = &c.source_version {
        bail!(
            "--source-version {version}: importing rows from another release's database is not \
             supported by this build; `caracal merkle backfill` without it seals the unsealed rows \
             of this Caracal's own ledger"
        );
    }
    let key = signing_key(config)?;
    let public = key.verifying_key();
    let key_id = public.key_id();
    let stores = crate::roles::open_stores(config).await?;
    let ledger = stores.ledger.as_ref();
    let now = chrono::Utc::now().timestamp_micros();
    ledger.put_signing_key(&key_id, public.point(), now).await?;
    let keys = verify::key_ring(ledger.signing_keys().await?);
    let limit = i64::from(config.consumers.ledger_writer.merkle.batch_size_limit);
    let (mut batches, mut rows) = (0u64, 0i64);
    for mut head in ledger.ledger_heads().await? {
        while head.unsealed() > 0 {
            let count = head.unsealed().min(limit);
            let sealed = seal::seal_next(ledger, &key, &key_id, None, &head, count, now, None)
                .await
                .with_context(|| format!("cannot seal partition {}", head.partition))?;
            let report = seal::read_back(ledger, &sealed, head.last_batch.as_ref(), &keys).await?;
            if !report.ok() {
                bail!("batch just sealed does not verify: {}", describe(&report));
            }
            batches += 1;
            rows += sealed.header.count;
            head.last_batch = Some(sealed);
        }
    }
    println!("sealed {rows} rows into {batches} batches with key {key_id}");
    Ok(())
}

async fn list_batches(c: ListBatches, config: &Config) -> anyhow::Result<()> {
    let start = match &c.start {
        Some(s) => {
            super::time::parse_edge(s, super::time::Edge::Start).map_err(anyhow::Error::msg)?
        }
        None => i64::MIN,
    };
    let end = match &c.end {
        Some(e) => {
            super::time::parse_edge(e, super::time::Edge::End).map_err(anyhow::Error::msg)?
        }
        None => i64::MAX,
    };
    let stores = crate::roles::open_stores(config).await?;
    let batches = stores
        .ledger
        .batches_in_range(
            start,
            end,
            None,
            c.limit.clamp(1, crate::store::LIST_ROWS_MAX),
        )
        .await?;
    match c.output {
        Output::Json => print_json(&batches),
        Output::Table => {
            let rows: Vec<Vec<String>> = batches
                .iter()
                .map(|b| {
                    let h = &b.header;
                    vec![
                        h.partition.to_string(),
                        h.batch_number.to_string(),
                        format!("{}..={}", h.first_seq, h.last_seq),
                        h.count.to_string(),
                        show(h.first_time_micros),
                        show(h.last_time_micros),
                        hex(&h.root),
                        h.key_id.clone(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "PARTITION",
                    "BATCH",
                    "SEQ",
                    "COUNT",
                    "FIRST",
                    "LAST",
                    "ROOT",
                    "KEY",
                ],
                &rows,
            );
            Ok(())
        }
    }
}

async fn export_public_key(c: ExportPublicKey, config: &Config) -> anyhow::Result<()> {
    let key = match &c.key_id {
        Some(id) => {
            let stores = crate::roles::open_stores(config).await?;
            let keys = verify::key_ring(stores.ledger.signing_keys().await?);
            keys.get(id)
                .cloned()
                .with_context(|| format!("no stored signing key has id {id}"))?
        }
        None => {
            let merkle = &config.consumers.ledger_writer.merkle;
            let path = merkle
                .signing_key_file
                .clone()
                .unwrap_or_else(|| config.data_dir.join(keys::DEFAULT_KEY_FILE));
            keys::load(&path)?.verifying_key()
        }
    };
    let pem = key.to_spki_pem();
    match c.out {
        Some(path) => {
            std::fs::write(&path, &pem)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote public key {} to {}", key.key_id(), path.display());
        }
        None => print!("{pem}"),
    }
    Ok(())
}

fn keygen(c: Keygen) -> anyhow::Result<()> {
    let (key, pem) =
        SigningKey::generate().map_err(|e| anyhow::anyhow!("cannot make a key: {e}"))?;
    keys::write_new(&c.out, &pem)?;
    println!(
        "wrote a new ECDSA P-256 signing key to {} (key id {})",
        c.out.display(),
        key.verifying_key().key_id()
    );
    Ok(())
}
