//! One conformance suite for the `Store` trait: every case is a function over `&dyn Store`,
//! run against the embedded SQLite store, against Postgres (a fresh database on a real
//! server), and against Postgres through a real PgBouncer in transaction mode.

use std::future::Future;

use caracal::core::agent::AgentId;
use caracal::core::events::AdminEvent;
use caracal::core::money::{Currency, Micros};
use caracal::core::policy::{PolicySpec, TimeWindow, WindowType};
use caracal::core::pricing::Price;
use caracal::store::{ApiKeyId, Audit, NewAgent, NewApiKey, OutboxRecord, Store, StoreError};
use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

mod agents;
mod policies;

pub use agents::*;
pub use policies::*;

/// A fixed instant plus `seconds` and some microseconds (stores keep microsecond precision).
pub fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + seconds, 123_456_000)
        .single()
        .unwrap()
}

pub fn audit() -> Audit {
    Audit {
        actor: "cli:test".into(),
        reason: Some("conformance".into()),
    }
}

pub fn new_agent(name: &str, parent: Option<AgentId>, seconds: i64) -> NewAgent {
    let mut metadata = serde_json::Map::new();
    metadata.insert("team".into(), serde_json::json!("research"));
    metadata.insert("n".into(), serde_json::json!(7));
    NewAgent {
        id: AgentId::new(),
        name: name.into(),
        agent_type: "assistant".into(),
        parent_id: parent,
        metadata,
        at: at(seconds),
    }
}

pub fn spec(limit: i64) -> PolicySpec {
    PolicySpec {
        limit_micros: Micros(limit),
        currency: Currency::USD,
        time_window: TimeWindow::Daily,
        window_type: WindowType::Calendar,
        allow: vec!["openai:gpt-4o*".into()],
        active: true,
    }
}

pub fn price(input: i64) -> Price {
    Price {
        input_per_mtok: Micros(input),
        output_per_mtok: Micros(input * 4),
        ..Price::free(Currency::USD)
    }
}

pub fn new_key(agent: AgentId, fill: u8, seconds: i64) -> NewApiKey {
    NewApiKey {
        id: ApiKeyId(Uuid::now_v7()),
        agent_id: agent,
        name: format!("key-{fill}"),
        prefix: format!("ck_{fill:02x}"),
        hash: [fill; 32],
        expires_at: Some(at(seconds + 86_400)),
        at: at(seconds),
    }
}

pub async fn outbox(s: &dyn Store) -> Vec<OutboxRecord> {
    s.outbox_after(0, 10_000).await.unwrap()
}

pub fn lifecycle(record: &OutboxRecord) -> &caracal::core::events::AgentLifecycle {
    match &record.event {
        AdminEvent::AgentLifecycle(e) => e,
        other => panic!("expected AgentLifecycle, got {other:?}"),
    }
}

pub fn policy_change(record: &OutboxRecord) -> &caracal::core::events::PolicyChange {
    match &record.event {
        AdminEvent::PolicyChange(e) => e,
        other => panic!("expected PolicyChange, got {other:?}"),
    }
}

pub fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected not found, got {other:?}"),
    }
}

/// Runs futures concurrently on this task and collects their outputs in order.
pub async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.unwrap()).collect()
}

pub async fn ping_answers(s: &dyn Store) {
    s.ping().await.unwrap();
}

/// Instantiates `cases` for one backend: `$make` returns a fixture holding `store`.
macro_rules! conformance {
    ($backend:ident, $make:path, [$($case:ident),+ $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fixture = $make().await;
                    super::$case(fixture.store.store.as_ref()).await;
                }
            )+
        }
    };
}

macro_rules! every_case {
    ($backend:ident, $make:path) => {
        conformance!(
            $backend,
            $make,
            [
                agents_are_created_read_listed_and_updated,
                agent_status_changes_follow_the_rules,
                chains_load_with_every_ancestor_policy,
                api_keys_are_found_by_hash_and_revoked_once,
                policies_keep_every_version_and_refuse_stale_updates,
                prices_bump_the_pricebook_version,
                every_change_writes_exactly_one_outbox_event,
                concurrent_versioned_updates_let_exactly_one_win,
                ping_answers,
            ]
        );
    };
}

every_case!(sqlite, crate::harness::postgres::sqlite_fixture);
every_case!(postgres, crate::harness::postgres::postgres_fixture);
every_case!(pgbouncer, crate::harness::postgres::pgbouncer_fixture);
