//! Durability: a reopened journal continues every budget, after a clean close, after a drop with
//! no shutdown, and after kill -9 of a process in the middle of its traffic.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use chrono::Duration;

use super::*;
use crate::spend::HoldInfo;

/// Two policies, a spread of settled spend, live holds with extended and original expiries.
pub(super) async fn populate(spend: &LocalSpend, policies: &[BudgetPolicy]) -> Vec<HoldId> {
    let now = utc("2026-03-10T12:00:00Z");
    let mut live = Vec::new();
    for i in 0..20 {
        let at = now + Duration::seconds(i * 7);
        let hold = reserved(spend, request(&child(2), policies, 1_000 + i, at)).await;
        if i % 3 == 0 {
            live.push(hold.hold_id);
        } else {
            spend
                .settle(&key(hold.hold_id), Micros(900 + i), at)
                .await
                .unwrap();
        }
    }
    spend
        .extend(&key(live[0]), now + Duration::hours(2))
        .await
        .unwrap();
    live
}

pub(super) fn policies() -> Vec<BudgetPolicy> {
    vec![
        policy(10, 2, 100_000, TimeWindow::Hourly, WindowType::Rolling),
        daily(11, 1, 1_000_000),
    ]
}

pub(super) async fn snapshot(
    spend: &LocalSpend,
    policies: &[BudgetPolicy],
) -> (Vec<(i64, i64)>, Vec<HoldInfo>) {
    let now = utc("2026-03-10T12:30:00Z");
    (
        usage(spend, policies, now).await,
        spend.list_holds(1_000).await.unwrap(),
    )
}

#[tokio::test]
async fn reopening_after_close_restores_settled_spend_and_live_holds_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies();
    let spend = open(&dir);
    let live = populate(&spend, &policies).await;
    let before = snapshot(&spend, &policies).await;
    assert_eq!(before.1.len(), live.len());
    spend.close().await.unwrap();

    let reopened = open(&dir);
    assert_eq!(snapshot(&reopened, &policies).await, before);
    // The restored holds are live: they settle once, and expire into charges.
    let now = utc("2026-03-10T12:30:00Z");
    reopened
        .settle(&key(live[1]), Micros(5), now)
        .await
        .unwrap();
    let swept = take_expired(&reopened, now + Duration::minutes(30), 100)
        .await
        .unwrap();
    assert_eq!(
        swept.len(),
        live.len() - 2,
        "the extended hold is still live"
    );
}

#[tokio::test]
async fn reopening_after_a_drop_without_shutdown_restores_everything() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies();
    let spend = open(&dir);
    populate(&spend, &policies).await;
    let before = snapshot(&spend, &policies).await;
    drop(spend);
    let reopened = open(&dir);
    assert_eq!(snapshot(&reopened, &policies).await, before);
}

#[tokio::test]
async fn a_second_owner_of_the_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    spend.ping().await.unwrap();
    let impatient = LocalLimits {
        open_busy_timeout_ms: 50,
        ..LocalLimits::default()
    };
    match LocalSpend::open(dir.path(), impatient) {
        Err(crate::spend::SpendError::Unavailable(message)) => {
            assert!(message.contains("in use by another process"), "{message}");
        }
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("a second owner must be refused"),
    }
    spend.ping().await.unwrap();
}

const CRASH_DIR_ENV: &str = "CARACAL_SPEND_CRASH_DIR";
const CRASH_ESTIMATE: i64 = 1_000;
const CRASH_ACTUAL: i64 = 700;

/// Not a test on its own: the child process of `kill_9_loses_no_acknowledged_operation`, which
/// reserves and settles in a loop, printing each acknowledged call, until it is killed.
#[tokio::test]
async fn crash_child_runs_until_killed() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    // A small compaction threshold: the kill also lands among compactions (snapshot + rename).
    let limits = LocalLimits {
        journal_compact_bytes: 16 << 10,
        ..LocalLimits::default()
    };
    let spend = LocalSpend::open(std::path::Path::new(&dir), limits).unwrap();
    let policies = [policy(
        10,
        2,
        i64::MAX,
        TimeWindow::Total,
        WindowType::Calendar,
    )];
    let now = utc("2026-03-10T12:00:00Z");
    for i in 0..1_000_000u128 {
        let mut req = request(&child(2), &policies, CRASH_ESTIMATE, now);
        req.hold_id = HoldId(Uuid::from_u128(i + 1));
        reserved(&spend, req).await;
        println!("ack reserve {i}");
        spend
            .settle(
                &key(HoldId(Uuid::from_u128(i + 1))),
                Micros(CRASH_ACTUAL),
                now,
            )
            .await
            .unwrap();
        println!("ack settle {i}");
    }
}

/// Calls the child reported as answered `Ok`.
#[derive(Default)]
struct Acks {
    reserves: i64,
    settles: i64,
}

impl Acks {
    /// Counts one line of the child's output. The test harness may print its own text in
    /// front of the child's first line ("test ... "), so an ack is found anywhere in a line.
    fn note(&mut self, line: &str) {
        if line.contains("ack reserve") {
            self.reserves += 1;
        } else if line.contains("ack settle") {
            self.settles += 1;
        }
    }
}

#[test]
fn kill_9_loses_no_acknowledged_operation() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spend::local::tests::durability::crash_child_runs_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acks = Acks::default();
    for line in lines.by_ref() {
        acks.note(&line.unwrap());
        if acks.settles == 300 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, no checkpoint.
    child.wait().unwrap();
    for line in lines {
        acks.note(&line.unwrap());
    }
    let Acks { reserves, settles } = acks;
    assert!(settles >= 300);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let spend = open(&dir);
        let policies = [policy(
            10,
            2,
            i64::MAX,
            TimeWindow::Total,
            WindowType::Calendar,
        )];
        let now = utc("2026-03-10T12:00:00Z");
        let (settled, held) = usage(&spend, &policies, now).await[0];
        let holds = spend.list_holds(10).await.unwrap();
        // Every acknowledged call is there; at most the one call in flight also is.
        let settled_calls = settled / CRASH_ACTUAL;
        assert_eq!(settled % CRASH_ACTUAL, 0);
        assert!(
            settled_calls == settles || settled_calls == settles + 1,
            "{settled_calls} vs {settles}"
        );
        assert!(holds.len() <= 1);
        assert_eq!(held, CRASH_ESTIMATE * holds.len() as i64);
        let reserved_calls = settled_calls + holds.len() as i64;
        assert!(
            reserved_calls == reserves || reserved_calls == reserves + 1,
            "{settled_calls} settled + {} held vs {reserves} reserves and {settles} settles acknowledged",
            holds.len()
        );
        if let Some(hold) = holds.first() {
            assert_eq!(
                hold.hold_id,
                HoldId(Uuid::from_u128(settled_calls as u128 + 1))
            );
        }
    });
}
