//! The journal file itself: a power loss's torn tail is cut off, damage with records after it is
//! refused, compaction keeps the file small without losing anything (also what is committed
//! while it runs, when the journal is closed under it, or when its snapshot cannot be written),
//! and a journal kept by an earlier version in SQLite is imported once.

use std::io::Write;

use super::durability::{policies, populate, snapshot};
use super::*;
use crate::spend::SpendError;

fn journal(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join(super::super::JOURNAL_FILE)
}

fn append(path: &std::path::Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

type Snapshot = (Vec<(i64, i64)>, Vec<crate::spend::HoldInfo>);

/// A populated journal, closed, with `tail` appended to its file; what it held before.
async fn closed_with_tail(tail: &[u8]) -> (tempfile::TempDir, Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies();
    let spend = open(&dir);
    populate(&spend, &policies).await;
    let before = snapshot(&spend, &policies).await;
    spend.close().await.unwrap();
    append(&journal(&dir), tail);
    (dir, before)
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off_and_the_journal_goes_on() {
    // A record whose write was cut short: a valid length announcing 200 bytes, then the payload
    // checksum and 5 of the 200 bytes.
    let len = 200u32.to_le_bytes();
    let mut torn = len.to_vec();
    torn.extend_from_slice(&crc32fast::hash(&len).to_le_bytes());
    torn.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let (dir, before) = closed_with_tail(&torn).await;
    let whole = std::fs::metadata(journal(&dir)).unwrap().len() - torn.len() as u64;
    let policies = policies();

    let reopened = open(&dir);
    assert_eq!(snapshot(&reopened, &policies).await, before);
    assert_eq!(std::fs::metadata(journal(&dir)).unwrap().len(), whole);
    // New records follow the cut, and the next reopen reads them.
    let now = utc("2026-03-10T12:30:00Z");
    reserved(&reopened, request(&child(2), &policies, 7, now)).await;
    let after = snapshot(&reopened, &policies).await;
    assert_ne!(after, before);
    reopened.close().await.unwrap();
    assert_eq!(snapshot(&open(&dir), &policies).await, after);
}

/// A populated journal, closed, then edited by `damage`; what reopening it says.
async fn reopen_damaged(damage: impl FnOnce(&mut Vec<u8>)) -> Result<LocalSpend, SpendError> {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    populate(&spend, &policies()).await;
    spend.close().await.unwrap();
    let mut bytes = std::fs::read(journal(&dir)).unwrap();
    damage(&mut bytes);
    std::fs::write(journal(&dir), &bytes).unwrap();
    LocalSpend::open(dir.path(), LocalLimits::default())
}

/// The message of a refusal to open a damaged journal.
fn refused_as_corrupt(opened: Result<LocalSpend, SpendError>) -> String {
    match opened {
        Err(SpendError::Corrupt(message)) => message,
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a damaged journal must not open"),
    }
}

#[tokio::test]
async fn a_damaged_record_with_records_after_it_is_refused() {
    // A byte inside the first record's payload (after the magic and the 12-byte header).
    let message = refused_as_corrupt(reopen_damaged(|bytes| bytes[8 + 12 + 3] ^= 0xff).await);
    assert!(message.contains("damaged at byte 8"), "{message}");
}

#[tokio::test]
async fn a_damaged_record_length_is_refused_not_taken_for_a_cut_short_write() {
    // The first record's length made to reach past the end of the file (under the reader's
    // cap): without the length's own checksum this would look like the journal's last record.
    let reopened = reopen_damaged(|bytes| {
        let past_the_end = u32::try_from(bytes.len()).unwrap();
        bytes[8..12].copy_from_slice(&past_the_end.to_le_bytes());
    });
    refused_as_corrupt(reopened.await);
}

#[tokio::test]
async fn a_last_record_that_passes_its_checksums_but_does_not_decode_is_refused() {
    // Whole and checksummed, so not a write cut short: an unknown operation (a newer format?).
    let payload = [99u8];
    let len = 1u32.to_le_bytes();
    let reopened = reopen_damaged(|bytes| {
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(&crc32fast::hash(&len).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
    });
    let message = refused_as_corrupt(reopened.await);
    assert!(message.contains("tag 99"), "{message}");
}

#[tokio::test]
async fn a_tail_of_zeros_is_cut_off() {
    // Space a file system allocated before a power loss, without the data that was to fill it.
    let (dir, before) = closed_with_tail(&[0; 4096]).await;
    assert_eq!(snapshot(&open(&dir), &policies()).await, before);
}

#[tokio::test]
async fn an_owner_of_the_earlier_sqlite_journal_keeps_a_new_process_out() {
    let dir = tempfile::tempdir().unwrap();
    let old_owner = std::fs::File::create(dir.path().join("spend.db.lock")).unwrap();
    old_owner.try_lock().unwrap();
    let impatient = LocalLimits {
        open_busy_timeout_ms: 50,
        ..LocalLimits::default()
    };
    match LocalSpend::open(dir.path(), impatient) {
        Err(SpendError::Unavailable(message)) => {
            assert!(message.contains("in use by another process"), "{message}")
        }
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("a journal owned by an earlier version must not be opened"),
    }
}

const COMPACT_BYTES: u64 = 4_096;

fn compacting_limits() -> LocalLimits {
    LocalLimits {
        journal_compact_bytes: COMPACT_BYTES,
        ..LocalLimits::default()
    }
}

/// One reservation settled at once: two records, about 200 bytes each.
async fn reserve_and_settle(spend: &LocalSpend, policies: &[BudgetPolicy], i: i64) {
    let now = utc("2026-03-10T12:00:00Z");
    let hold = reserved(spend, request(&child(2), policies, 10, now)).await;
    spend
        .settle(&key(hold.hold_id), Micros(i % 7), now)
        .await
        .unwrap();
}

/// Reserves and settles until a compaction is under way (one starts after a commit once the
/// file has grown by `COMPACT_BYTES`).
async fn until_compacting(spend: &LocalSpend, policies: &[BudgetPolicy]) {
    for i in 0..1_000 {
        if spend.writer.stall().compacting() {
            return;
        }
        reserve_and_settle(spend, policies, i).await;
    }
    panic!("no compaction started after 1000 reservations");
}

fn file_id(dir: &tempfile::TempDir) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(journal(dir)).unwrap().ino()
}

#[tokio::test]
async fn compaction_keeps_the_file_small_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies();
    let spend = LocalSpend::open(dir.path(), compacting_limits()).unwrap();
    // Far more than 4 KiB in all: compactions start and are swapped in along the way.
    for i in 0..500 {
        reserve_and_settle(&spend, &policies, i).await;
    }
    let live = populate(&spend, &policies).await;
    // Whatever is under way is swapped in; then a compaction swapped in with nothing committed
    // since it started leaves the snapshot alone in the file.
    spend.writer.stall().finish_compaction();
    until_compacting(&spend, &policies).await;
    spend.writer.stall().finish_compaction();
    let before = snapshot(&spend, &policies).await;
    assert_eq!(before.1.len(), live.len());
    let len = std::fs::metadata(journal(&dir)).unwrap().len();
    assert!(len < COMPACT_BYTES, "journal is {len} bytes");
    drop(spend);

    let reopened = LocalSpend::open(dir.path(), compacting_limits()).unwrap();
    assert_eq!(snapshot(&reopened, &policies).await, before);
}

#[tokio::test]
async fn records_committed_while_a_compaction_runs_are_carried_into_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies();
    let spend = LocalSpend::open(dir.path(), compacting_limits()).unwrap();
    populate(&spend, &policies).await;
    until_compacting(&spend, &policies).await;
    let old_file = file_id(&dir);
    // Committed to the old file after the snapshot was taken: the swap (at one of these
    // commits, or below) must copy them behind it.
    for i in 0..10 {
        reserve_and_settle(&spend, &policies, i).await;
    }
    spend.writer.stall().finish_compaction();
    assert_ne!(
        file_id(&dir),
        old_file,
        "the compacted file replaced the old one"
    );
    let before = snapshot(&spend, &policies).await;
    drop(spend);

    let reopened = LocalSpend::open(dir.path(), compacting_limits()).unwrap();
    assert_eq!(snapshot(&reopened, &policies).await, before);
}

#[tokio::test]
async fn closing_during_a_compaction_keeps_the_old_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies();
    let spend = LocalSpend::open(dir.path(), compacting_limits()).unwrap();
    populate(&spend, &policies).await;
    until_compacting(&spend, &policies).await;
    let before = snapshot(&spend, &policies).await;
    spend.close().await.unwrap();

    let reopened = LocalSpend::open(dir.path(), compacting_limits()).unwrap();
    assert_eq!(snapshot(&reopened, &policies).await, before);
    // The abandoned snapshot file is no obstacle to the next compaction.
    until_compacting(&reopened, &policies).await;
    reopened.writer.stall().finish_compaction();
    let after = snapshot(&reopened, &policies).await;
    drop(reopened);
    let again = LocalSpend::open(dir.path(), compacting_limits()).unwrap();
    assert_eq!(snapshot(&again, &policies).await, after);
}

#[tokio::test]
async fn a_compaction_that_cannot_write_its_snapshot_leaves_the_journal_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies();
    let spend = LocalSpend::open(dir.path(), compacting_limits()).unwrap();
    // The snapshot's temporary file cannot be created: a directory has its name.
    std::fs::create_dir(dir.path().join("spend.journal.tmp")).unwrap();
    populate(&spend, &policies).await;
    let file = file_id(&dir);
    until_compacting(&spend, &policies).await;
    spend.writer.stall().finish_compaction();
    for i in 0..10 {
        reserve_and_settle(&spend, &policies, i).await;
    }
    assert_eq!(file_id(&dir), file, "the journal was not replaced");
    let before = snapshot(&spend, &policies).await;
    drop(spend);

    let reopened = LocalSpend::open(dir.path(), compacting_limits()).unwrap();
    assert_eq!(snapshot(&reopened, &policies).await, before);
}

/// The schema an earlier Caracal kept its spend journal in.
const LEGACY_SCHEMA: &str = "
    CREATE TABLE spend_settled (policy_id TEXT NOT NULL, bucket_start INTEGER NOT NULL,
        settled_micros INTEGER NOT NULL, PRIMARY KEY (policy_id, bucket_start)) WITHOUT ROWID;
    CREATE TABLE spend_windows (policy_id TEXT PRIMARY KEY, time_window TEXT NOT NULL,
        window_type TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE spend_holds (hold_id TEXT PRIMARY KEY, agent_id TEXT NOT NULL,
        ancestor_ids TEXT NOT NULL, root_agent_id TEXT NOT NULL, resource TEXT NOT NULL,
        amount_micros INTEGER NOT NULL, currency TEXT NOT NULL, charged TEXT NOT NULL,
        reserved_at INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;";

#[tokio::test]
async fn a_journal_kept_in_sqlite_by_an_earlier_version_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let policy_id = PolicyId(Uuid::from_u128(10)).0.to_string();
    let bucket = utc("2026-03-10T00:00:00Z").timestamp_micros();
    let conn = rusqlite::Connection::open(dir.path().join("spend.db")).unwrap();
    conn.execute_batch(LEGACY_SCHEMA).unwrap();
    conn.execute(
        "INSERT INTO spend_windows VALUES (?1, 'daily', 'calendar')",
        [&policy_id],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO spend_settled VALUES (?1, ?2, 400)",
        rusqlite::params![policy_id, bucket],
    )
    .unwrap();
    let charged = format!("[[\"{policy_id}\",{bucket}]]");
    conn.execute(
        "INSERT INTO spend_holds VALUES (?1, ?2, ?3, ?4, 'openai/gpt-4o', 250, 'USD', ?5, ?6, ?7)",
        rusqlite::params![
            Uuid::from_u128(99).to_string(),
            Uuid::from_u128(2).to_string(),
            format!("[\"{}\"]", Uuid::from_u128(1)),
            Uuid::from_u128(1).to_string(),
            charged,
            utc("2026-03-10T12:00:00Z").timestamp_micros(),
            utc("2026-03-10T12:05:00Z").timestamp_micros(),
        ],
    )
    .unwrap();
    drop(conn);

    let policies = [daily(10, 2, 1_000)];
    let now = utc("2026-03-10T12:01:00Z");
    let spend = open(&dir);
    assert_eq!(usage(&spend, &policies, now).await, vec![(400, 250)]);
    assert_eq!(spend.list_holds(10).await.unwrap().len(), 1);
    // From now on the journal file is the record: a change survives without the old file.
    spend
        .settle(&key(HoldId(Uuid::from_u128(99))), Micros(100), now)
        .await
        .unwrap();
    spend.close().await.unwrap();
    // Imported once: the old file is renamed, and a reopen reads the journal only.
    assert!(!dir.path().join("spend.db").exists());
    assert!(dir.path().join("spend.db.imported").exists());
    let reopened = open(&dir);
    assert_eq!(usage(&reopened, &policies, now).await, vec![(500, 0)]);
}
