//! Races: many tasks on many threads reserving against budgets with room for exactly N.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;

const TASKS: usize = 1_000;
const ESTIMATE: i64 = 1_000;

/// Asserts, until told to stop, that no policy ever shows more than its limit.
fn watch(
    spend: Arc<dyn SpendCache>,
    policies: Vec<BudgetPolicy>,
    now: DateTime<Utc>,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut looks = 0;
        while !done.load(Ordering::SeqCst) {
            for u in spend
                .spent(agent(1, None).id, &policies, now)
                .await
                .unwrap()
            {
                let total = u.settled.get() + u.reserved.get();
                assert!(
                    total <= u.policy.spec.limit_micros.get(),
                    "{total} over {:?}",
                    u.policy
                );
            }
            looks += 1;
            tokio::task::yield_now().await;
        }
        looks
    })
}

pub async fn exactly_n_of_1000_concurrent_reservations_win_on_agent_and_parent<H: Harness>() {
    let (_h, spend) = H::open().await;
    let now = utc("2026-03-10T12:00:00Z");
    // Each child alone could take 300; the team's 400 binds first.
    let policies = vec![
        daily(12, 2, 300 * ESTIMATE),
        daily(13, 3, 300 * ESTIMATE),
        daily(11, 1, 400 * ESTIMATE),
    ];
    let done = Arc::new(AtomicBool::new(false));
    let watcher = watch(Arc::clone(&spend), policies.clone(), now, Arc::clone(&done));
    let wins = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let mut tasks = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let (spend, policies) = (Arc::clone(&spend), policies.clone());
        let won = Arc::clone(&wins[i % 2]);
        tasks.push(tokio::spawn(async move {
            let chain = child(2 + (i % 2) as u128);
            let mine = of_chain(&policies, &chain);
            if is_allowed(spend.as_ref(), request(&chain, &mine, ESTIMATE, now)).await {
                won.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    assert!(watcher.await.unwrap() > 0);

    let (a, b) = (
        wins[0].load(Ordering::SeqCst),
        wins[1].load(Ordering::SeqCst),
    );
    assert_eq!(a + b, 400);
    assert!(a <= 300 && b <= 300);
    assert_eq!(
        usage(spend.as_ref(), &policies, now).await,
        vec![
            (0, a as i64 * ESTIMATE),
            (0, b as i64 * ESTIMATE),
            (0, 400 * ESTIMATE)
        ]
    );
    assert_eq!(spend.list_holds(TASKS).await.unwrap().len(), 400);
}

pub async fn concurrent_reserves_and_settles_never_push_a_budget_over_its_limit<H: Harness>() {
    let (_h, spend) = H::open().await;
    let now = utc("2026-03-10T12:00:00Z");
    let policies = vec![daily(12, 2, 150 * ESTIMATE), daily(11, 1, 200 * ESTIMATE)];
    let done = Arc::new(AtomicBool::new(false));
    let watcher = watch(Arc::clone(&spend), policies.clone(), now, Arc::clone(&done));
    let mut tasks = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let (spend, policies) = (Arc::clone(&spend), policies.clone());
        tasks.push(tokio::spawn(async move {
            let req = request(&child(2), &policies, ESTIMATE, now);
            match spend.reserve(req).await.unwrap() {
                ReserveOutcome::Reserved(hold) => {
                    let actual = (i as i64 * 37) % (ESTIMATE + 1); // never above the hold
                    spend
                        .settle(&hold.key(), Micros(actual), now)
                        .await
                        .unwrap();
                    actual
                }
                ReserveOutcome::Denied(_) => 0,
            }
        }));
    }
    let mut posted = 0;
    for task in tasks {
        posted += task.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    let after = usage(spend.as_ref(), &policies, now).await;
    assert_eq!(after, vec![(posted, 0), (posted, 0)]);
    assert!(posted <= 150 * ESTIMATE);
}
