//! Tampering with a sealed ledger behind Caracal's back, one way at a time, each found and
//! named by `caracal merkle verify-range` (non-zero exit, the batch and the reason).

use std::path::Path;

use caracal::core::agent::AgentId;
use caracal::core::checkpoint::{BatchHeader, SigningKey};
use rusqlite::{params, Connection};

use crate::harness::events::{metering, Log};
use crate::harness::Env;
use crate::ledger::{ledger_env, verify_range, wait_sealed};

/// A stopped ledger of 30 events of one tree (one partition): batches 0, 1, 2 of 10 rows.
/// Returns the env and the partition.
fn sealed_ledger() -> (Env, i64) {
    let env = ledger_env();
    let server = env.serve(&["--role", "ledger"]);
    {
        let log = Log::open(&env.data_dir());
        let root = AgentId::new();
        let events: Vec<_> = (0..30).map(|i| metering(root, root, 1_000 + i)).collect();
        log.publish(&events);
    }
    wait_sealed(&env, 30);
    assert_eq!(server.terminate(), 0);
    let partition = db(&env)
        .query_row(
            r#"SELECT DISTINCT "partition" FROM ledger_events"#,
            [],
            |r| r.get(0),
        )
        .unwrap();
    verify_range(&env).ok();
    (env, partition)
}

fn db(env: &Env) -> Connection {
    Connection::open(env.data_dir().join("caracal.db")).unwrap()
}

/// Runs verify-range, which must fail, and returns its failure lines.
fn failures(env: &Env) -> String {
    let run = verify_range(env);
    assert_ne!(run.status, 0, "tampering went unnoticed: {}", run.stdout);
    assert!(run.stdout.contains("FAILED"), "{}", run.stdout);
    run.stderr
}

fn assert_names(failures: &str, partition: i64, batch: i64, reason: &str) {
    let wanted = format!("FAIL partition {partition} batch {batch} ");
    assert!(
        failures
            .lines()
            .any(|l| l.starts_with(&wanted) && l.contains(reason)),
        "expected a line naming batch {batch} with {reason:?}, got:\n{failures}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Runs `tamper` on a fresh copy of the sealed ledger and returns verify-range's failures.
fn tampered(base: &Env, tamper: impl FnOnce(&Connection)) -> String {
    let env = ledger_env();
    copy_dir(&base.data_dir(), &env.data_dir());
    tamper(&db(&env));
    failures(&env)
}

#[test]
fn every_kind_of_tampering_is_named_by_verify_range() {
    let (env, p) = sealed_ledger();

    // One amount changed in its column: the row is named, with the column.
    let found = tampered(&env, |db| {
        db.execute(
            r#"UPDATE ledger_events SET cost_micros = cost_micros + 1 WHERE "partition" = ?1 AND seq = 14"#,
            params![p],
        )
        .unwrap();
    });
    assert_names(&found, p, 1, "row altered: seq 14");
    assert!(found.contains("column cost_micros"), "{found}");

    // One byte of the sealed bytes changed: the root no longer matches.
    let found = tampered(&env, |db| {
        let datum: Vec<u8> = db
            .query_row(
                r#"SELECT datum FROM ledger_events WHERE "partition" = ?1 AND seq = 3"#,
                params![p],
                |r| r.get(0),
            )
            .unwrap();
        let mut datum = datum;
        let last = datum.len() - 40;
        datum[last] ^= 0x01;
        db.execute(
            r#"UPDATE ledger_events SET datum = ?2 WHERE "partition" = ?1 AND seq = 3"#,
            params![p, datum],
        )
        .unwrap();
    });
    assert_names(&found, p, 0, "root mismatch");

    // A row deleted: the gap is named.
    let found = tampered(&env, |db| {
        db.execute(
            r#"DELETE FROM ledger_events WHERE "partition" = ?1 AND seq = 25"#,
            params![p],
        )
        .unwrap();
    });
    assert_names(&found, p, 2, "sequence gap: missing seq 25");

    // A row inserted (later rows renumbered to make room): the root no longer matches.
    let found = tampered(&env, |db| {
        db.execute_batch(&format!(
            r#"UPDATE ledger_events SET seq = seq + 1000000 WHERE "partition" = {p} AND seq > 12;
               UPDATE ledger_events SET seq = seq - 999999 WHERE "partition" = {p} AND seq > 1000000;
               INSERT INTO ledger_events SELECT "partition", 13, 'forged-' || event_id, occurred_at,
                 request_id, agent_id, parent_id, root_agent_id, ancestor_ids, provider, resource,
                 operation, input_tokens, cached_input_tokens, output_tokens, calls, cost_micros,
                 reserved_micros, currency, estimated, outcome, source_offset, datum
               FROM ledger_events WHERE "partition" = {p} AND seq = 12;"#
        ))
        .unwrap();
    });
    assert_names(&found, p, 1, "root mismatch");

    // Two rows swapped: the order is sealed too.
    let found = tampered(&env, |db| {
        db.execute_batch(&format!(
            r#"UPDATE ledger_events SET seq = 1000000 WHERE "partition" = {p} AND seq = 21;
               UPDATE ledger_events SET seq = 21 WHERE "partition" = {p} AND seq = 22;
               UPDATE ledger_events SET seq = 22 WHERE "partition" = {p} AND seq = 1000000;"#
        ))
        .unwrap();
    });
    assert_names(&found, p, 2, "root mismatch");
    // A row altered and the two rows after it swapped: every row is checked once, so the
    // altered row is named once.
    let found = tampered(&env, |db| {
        db.execute_batch(&format!(
            r#"UPDATE ledger_events SET cost_micros = cost_micros + 1 WHERE "partition" = {p} AND seq = 20;
               UPDATE ledger_events SET seq = 1000000 WHERE "partition" = {p} AND seq = 21;
               UPDATE ledger_events SET seq = 21 WHERE "partition" = {p} AND seq = 22;
               UPDATE ledger_events SET seq = 22 WHERE "partition" = {p} AND seq = 1000000;"#
        ))
        .unwrap();
    });
    assert_names(&found, p, 2, "row altered: seq 20");
    assert_eq!(found.matches("seq 20 ").count(), 1, "{found}");

    // A root altered: it no longer matches the rows, and the next batch's chain breaks.
    let found = tampered(&env, |db| {
        db.execute(
            r#"UPDATE merkle_batches SET root = zeroblob(32) WHERE "partition" = ?1 AND batch_number = 1"#,
            params![p],
        )
        .unwrap();
    });
    assert_names(&found, p, 1, "root mismatch");
    assert_names(&found, p, 2, "broken chain");

    // A signature altered.
    let found = tampered(&env, |db| {
        let mut signature: Vec<u8> = db
            .query_row(
                r#"SELECT signature FROM merkle_batches WHERE "partition" = ?1 AND batch_number = 0"#,
                params![p],
                |r| r.get(0),
            )
            .unwrap();
        let middle = signature.len() / 2;
        signature[middle] ^= 0x80;
        db.execute(
            r#"UPDATE merkle_batches SET signature = ?2 WHERE "partition" = ?1 AND batch_number = 0"#,
            params![p, signature],
        )
        .unwrap();
    });
    assert_names(&found, p, 0, "bad signature");

    // A batch re-signed by a key the ledger never registered.
    let found = tampered(&env, |db| {
        let (forger, _) = SigningKey::generate().unwrap();
        let key_id = forger.verifying_key().key_id();
        let header = read_header(db, p, 2, &key_id);
        let signature = forger.sign(&header).unwrap();
        db.execute(
            r#"UPDATE merkle_batches SET key_id = ?3, signature = ?4
               WHERE "partition" = ?1 AND batch_number = ?2"#,
            params![p, 2, key_id, signature],
        )
        .unwrap();
    });
    assert_names(&found, p, 2, "unknown key");
}

/// Batch `number`'s header as stored, with `key_id` in place of its own.
fn read_header(db: &Connection, partition: i64, number: i64, key_id: &str) -> BatchHeader {
    db.query_row(
        r#"SELECT first_seq, last_seq, count, root, prev_root, first_time, last_time
           FROM merkle_batches WHERE "partition" = ?1 AND batch_number = ?2"#,
        params![partition, number],
        |r| {
            Ok(BatchHeader {
                partition: i32::try_from(partition).unwrap(),
                batch_number: number,
                first_seq: r.get(0)?,
                last_seq: r.get(1)?,
                count: r.get(2)?,
                root: r.get::<_, Vec<u8>>(3)?.try_into().unwrap(),
                prev_root: r.get::<_, Vec<u8>>(4)?.try_into().unwrap(),
                first_time_micros: r.get(5)?,
                last_time_micros: r.get(6)?,
                key_id: key_id.to_owned(),
            })
        },
    )
    .unwrap()
}
