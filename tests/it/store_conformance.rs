//! One conformance suite for the `Store` trait: every case is a function over `&dyn Store`,
//! run against the embedded SQLite store, against Postgres (a fresh database on a real
//! server), and against Postgres through a real PgBouncer in transaction mode.

use std::future::Future;

use caracal::core::agent::{AgentId, AgentStatus, HIERARCHY_DEPTH_MAX};
use caracal::core::events::{AdminEvent, ChangeAction, LifecycleAction};
use caracal::core::money::{Currency, Micros};
use caracal::core::policy::{PolicyId, PolicySpec, TimeWindow, WindowType};
use caracal::core::pricing::{Price, PriceEntry};
use caracal::store::{
    AgentFilter, AgentPatch, ApiKeyId, Audit, ChangeKind, NewAgent, NewApiKey, OutboxRecord, Store,
    StoreError,
};
use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

/// A fixed instant plus `seconds` and some microseconds (stores keep microsecond precision).
fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + seconds, 123_456_000)
        .single()
        .unwrap()
}

fn audit() -> Audit {
    Audit {
        actor: "cli:test".into(),
        reason: Some("conformance".into()),
    }
}

fn new_agent(name: &str, parent: Option<AgentId>, seconds: i64) -> NewAgent {
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

fn spec(limit: i64) -> PolicySpec {
    PolicySpec {
        limit_micros: Micros(limit),
        currency: Currency::USD,
        time_window: TimeWindow::Daily,
        window_type: WindowType::Calendar,
        allow: vec!["openai:gpt-4o*".into()],
        active: true,
    }
}

fn price(input: i64) -> Price {
    Price {
        input_per_mtok: Micros(input),
        output_per_mtok: Micros(input * 4),
        ..Price::free(Currency::USD)
    }
}

fn new_key(agent: AgentId, fill: u8, seconds: i64) -> NewApiKey {
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

async fn outbox(s: &dyn Store) -> Vec<OutboxRecord> {
    s.outbox_after(0, 10_000).await.unwrap()
}

fn lifecycle(record: &OutboxRecord) -> &caracal::core::events::AgentLifecycle {
    match &record.event {
        AdminEvent::AgentLifecycle(e) => e,
        other => panic!("expected AgentLifecycle, got {other:?}"),
    }
}

fn policy_change(record: &OutboxRecord) -> &caracal::core::events::PolicyChange {
    match &record.event {
        AdminEvent::PolicyChange(e) => e,
        other => panic!("expected PolicyChange, got {other:?}"),
    }
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected not found, got {other:?}"),
    }
}

pub async fn agents_are_created_read_listed_and_updated(s: &dyn Store) {
    let root = s
        .create_agent(new_agent("root", None, 0), &audit())
        .await
        .unwrap();
    assert_eq!(root.status, AgentStatus::Active);
    assert_eq!(root.created_at, at(0));
    assert_eq!(s.get_agent(root.id).await.unwrap().as_ref(), Some(&root));
    let child = s
        .create_agent(new_agent("child", Some(root.id), 1), &audit())
        .await
        .unwrap();
    assert_eq!(child.parent_id, Some(root.id));
    assert_eq!(s.get_agent(AgentId::new()).await.unwrap(), None);

    let all = s.list_agents(&AgentFilter::default()).await.unwrap();
    assert_eq!(all, vec![root.clone(), child.clone()]);
    let children = s
        .list_agents(&AgentFilter {
            parent_id: Some(root.id),
            include_deleted: false,
        })
        .await
        .unwrap();
    assert_eq!(children, vec![child.clone()]);

    let mut metadata = serde_json::Map::new();
    metadata.insert("tier".into(), serde_json::json!({"a": [1, 2.5, "x"]}));
    let patch = AgentPatch {
        name: Some("renamed".into()),
        agent_type: None,
        metadata: Some(metadata.clone()),
    };
    let updated = s
        .update_agent(child.id, patch, at(5), &audit())
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.agent_type, "assistant");
    assert_eq!(updated.metadata, metadata);
    assert_eq!(updated.updated_at, at(5));
    assert_eq!(updated.created_at, at(1));
    assert_eq!(s.get_agent(child.id).await.unwrap(), Some(updated));

    assert_not_found(
        s.update_agent(AgentId::new(), AgentPatch::default(), at(6), &audit())
            .await,
    );
    assert_not_found(
        s.create_agent(new_agent("orphan", Some(AgentId::new()), 7), &audit())
            .await,
    );
    let duplicate = NewAgent {
        id: root.id,
        ..new_agent("again", None, 8)
    };
    assert_conflict(s.create_agent(duplicate, &audit()).await);
}

pub async fn agent_status_changes_follow_the_rules(s: &dyn Store) {
    let parent = s
        .create_agent(new_agent("p", None, 0), &audit())
        .await
        .unwrap();
    let child = s
        .create_agent(new_agent("c", Some(parent.id), 1), &audit())
        .await
        .unwrap();
    let suspended = s
        .set_agent_status(child.id, AgentStatus::Suspended, at(2), &audit())
        .await
        .unwrap();
    assert_eq!(suspended.status, AgentStatus::Suspended);
    assert_conflict(
        s.set_agent_status(child.id, AgentStatus::Suspended, at(3), &audit())
            .await,
    );
    let active = s
        .set_agent_status(child.id, AgentStatus::Active, at(4), &audit())
        .await
        .unwrap();
    assert_eq!(active.status, AgentStatus::Active);
    // A parent with a live child cannot be deleted.
    assert_conflict(
        s.set_agent_status(parent.id, AgentStatus::Deleted, at(5), &audit())
            .await,
    );
    s.set_agent_status(child.id, AgentStatus::Deleted, at(6), &audit())
        .await
        .unwrap();
    s.set_agent_status(parent.id, AgentStatus::Deleted, at(7), &audit())
        .await
        .unwrap();
    // Deleted agents are hidden by default, kept, and frozen.
    assert!(s
        .list_agents(&AgentFilter::default())
        .await
        .unwrap()
        .is_empty());
    let everything = AgentFilter {
        parent_id: None,
        include_deleted: true,
    };
    assert_eq!(s.list_agents(&everything).await.unwrap().len(), 2);
    assert_conflict(
        s.set_agent_status(child.id, AgentStatus::Active, at(8), &audit())
            .await,
    );
    assert_conflict(
        s.update_agent(child.id, AgentPatch::default(), at(8), &audit())
            .await,
    );
    assert_conflict(
        s.create_agent(new_agent("late", Some(parent.id), 9), &audit())
            .await,
    );
    assert_not_found(
        s.set_agent_status(AgentId::new(), AgentStatus::Suspended, at(9), &audit())
            .await,
    );
}

pub async fn chains_load_with_every_ancestor_policy(s: &dyn Store) {
    let mut ids = Vec::new();
    let mut parent = None;
    for level in 0..HIERARCHY_DEPTH_MAX {
        let agent = s
            .create_agent(
                new_agent(&format!("l{level}"), parent, level as i64),
                &audit(),
            )
            .await
            .unwrap();
        parent = Some(agent.id);
        ids.push(agent.id);
    }
    // One level more than the cap is refused.
    assert_conflict(
        s.create_agent(new_agent("too deep", parent, 99), &audit())
            .await,
    );

    let root = ids[0];
    let mid = ids[5];
    let leaf = *ids.last().unwrap();
    let root_policy = s
        .create_policy(PolicyId::new(), root, spec(1_000), at(100), &audit())
        .await
        .unwrap();
    let mid_policy = s
        .create_policy(PolicyId::new(), mid, spec(500), at(101), &audit())
        .await
        .unwrap();
    let deleted = s
        .create_policy(PolicyId::new(), mid, spec(7), at(102), &audit())
        .await
        .unwrap();
    s.delete_policy(deleted.id, at(103), &audit())
        .await
        .unwrap();

    let loaded = s.load_chain(leaf).await.unwrap().unwrap();
    let members: Vec<AgentId> = loaded.chain.members().iter().map(|a| a.id).collect();
    let expected: Vec<AgentId> = ids.iter().rev().copied().collect();
    assert_eq!(members, expected, "nearest first, root last");
    assert_eq!(loaded.chain.root().id, root);
    let mut policy_ids: Vec<PolicyId> = loaded.policies.iter().map(|p| p.id).collect();
    policy_ids.sort_by_key(|p| p.0);
    let mut want = vec![root_policy.id, mid_policy.id];
    want.sort_by_key(|p| p.0);
    assert_eq!(
        policy_ids, want,
        "live policies of every member, deleted ones left out"
    );
    assert!(s.load_chain(AgentId::new()).await.unwrap().is_none());
}

pub async fn api_keys_are_found_by_hash_and_revoked_once(s: &dyn Store) {
    let a = s
        .create_agent(new_agent("a", None, 0), &audit())
        .await
        .unwrap();
    let b = s
        .create_agent(new_agent("b", None, 1), &audit())
        .await
        .unwrap();
    let key_a = s
        .create_api_key(new_key(a.id, 1, 2), &audit())
        .await
        .unwrap();
    let key_b = s
        .create_api_key(new_key(b.id, 2, 3), &audit())
        .await
        .unwrap();
    assert_eq!(key_a.hash, [1; 32]);
    assert_eq!(key_a.expires_at, Some(at(2 + 86_400)));
    assert_eq!(key_a.revoked_at, None);
    assert_eq!(s.find_api_key(&[1; 32]).await.unwrap(), Some(key_a.clone()));
    assert_eq!(s.find_api_key(&[9; 32]).await.unwrap(), None);
    assert_eq!(
        s.list_api_keys(None).await.unwrap(),
        vec![key_a.clone(), key_b.clone()]
    );
    assert_eq!(s.list_api_keys(Some(b.id)).await.unwrap(), vec![key_b]);
    // The same secret twice is refused.
    assert_conflict(s.create_api_key(new_key(b.id, 1, 4), &audit()).await);
    assert_not_found(
        s.create_api_key(new_key(AgentId::new(), 3, 4), &audit())
            .await,
    );

    let revoked = s.revoke_api_key(key_a.id, at(5), &audit()).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(at(5)));
    // Revoked keys are still found (the caller decides), and cannot be revoked twice.
    assert_eq!(s.find_api_key(&[1; 32]).await.unwrap(), Some(revoked));
    assert_conflict(s.revoke_api_key(key_a.id, at(6), &audit()).await);
    assert_not_found(
        s.revoke_api_key(ApiKeyId(Uuid::now_v7()), at(6), &audit())
            .await,
    );
    let c = s
        .create_agent(new_agent("c", None, 7), &audit())
        .await
        .unwrap();
    s.set_agent_status(c.id, AgentStatus::Deleted, at(8), &audit())
        .await
        .unwrap();
    assert_conflict(s.create_api_key(new_key(c.id, 4, 9), &audit()).await);
}

pub async fn policies_keep_every_version_and_refuse_stale_updates(s: &dyn Store) {
    let agent = s
        .create_agent(new_agent("a", None, 0), &audit())
        .await
        .unwrap();
    let id = PolicyId::new();
    let v1 = s
        .create_policy(id, agent.id, spec(1_000_000), at(1), &audit())
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(s.get_policy(id).await.unwrap(), Some(v1.clone()));
    assert_conflict(
        s.create_policy(id, agent.id, spec(1), at(1), &audit())
            .await,
    );
    assert_conflict(
        s.update_policy(id, spec(2_000_000), Some(7), at(2), &audit())
            .await,
    );
    let v2 = s
        .update_policy(id, spec(2_000_000), Some(1), at(3), &audit())
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.spec.limit_micros, Micros(2_000_000));
    assert_eq!(v2.created_at, at(1));
    assert_eq!(v2.updated_at, at(3));
    let v3 = s
        .update_policy(id, spec(3_000_000), None, at(4), &audit())
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(
        s.list_policies(Some(agent.id)).await.unwrap(),
        vec![v3.clone()]
    );
    let deleted = s.delete_policy(id, at(5), &audit()).await.unwrap();
    assert_eq!(deleted.version, 4);
    assert_eq!(s.get_policy(id).await.unwrap(), None);
    assert!(s.list_policies(None).await.unwrap().is_empty());
    assert_not_found(s.update_policy(id, spec(1), None, at(6), &audit()).await);
    assert_not_found(s.delete_policy(id, at(6), &audit()).await);

    let history = s.policy_history(id).await.unwrap();
    let actions: Vec<(i64, ChangeKind)> = history.iter().map(|v| (v.version, v.action)).collect();
    assert_eq!(
        actions,
        vec![
            (1, ChangeKind::Created),
            (2, ChangeKind::Updated),
            (3, ChangeKind::Updated),
            (4, ChangeKind::Deleted)
        ]
    );
    assert_eq!(history[0].before, None);
    assert_eq!(history[0].after, Some(spec(1_000_000)));
    assert_eq!(history[1].before, Some(spec(1_000_000)));
    assert_eq!(history[1].after, Some(spec(2_000_000)));
    assert_eq!(history[3].before, Some(spec(3_000_000)));
    assert_eq!(history[3].after, None);
    assert_eq!(history[3].actor, "cli:test");
    assert_eq!(history[3].reason.as_deref(), Some("conformance"));
    assert_eq!(history[3].at, at(5));
    assert_not_found(s.policy_history(PolicyId::new()).await);
    assert_not_found(
        s.create_policy(PolicyId::new(), AgentId::new(), spec(1), at(7), &audit())
            .await,
    );
}

pub async fn prices_bump_the_pricebook_version(s: &dyn Store) {
    let empty = s.pricebook().await.unwrap();
    assert_eq!(empty.version, 0);
    assert!(empty.is_empty());
    let entries = vec![
        PriceEntry {
            provider: "openai".into(),
            resource: "gpt-4o".into(),
            price: price(2_500_000),
        },
        PriceEntry {
            provider: "anthropic".into(),
            resource: "claude".into(),
            price: price(3_000_000),
        },
    ];
    assert_eq!(s.set_prices(entries, at(1)).await.unwrap(), 1);
    let changed = vec![PriceEntry {
        provider: "openai".into(),
        resource: "gpt-4o".into(),
        price: Price {
            max_output_tokens: Some(16_384),
            ..price(5_000_000)
        },
    }];
    assert_eq!(s.set_prices(changed.clone(), at(2)).await.unwrap(), 2);
    let listed = s.list_prices().await.unwrap();
    let keys: Vec<(&str, &str)> = listed
        .iter()
        .map(|e| (e.provider.as_str(), e.resource.as_str()))
        .collect();
    assert_eq!(keys, vec![("anthropic", "claude"), ("openai", "gpt-4o")]);
    assert_eq!(listed[1], changed[0]);
    let book = s.pricebook().await.unwrap();
    assert_eq!(book.version, 2);
    assert_eq!(book.get("openai", "gpt-4o"), Some(&changed[0].price));
}

pub async fn every_change_writes_exactly_one_outbox_event(s: &dyn Store) {
    let root = s
        .create_agent(new_agent("root", None, 0), &audit())
        .await
        .unwrap();
    let child = s
        .create_agent(new_agent("child", Some(root.id), 1), &audit())
        .await
        .unwrap();
    let patch = AgentPatch {
        name: Some("child-2".into()),
        ..AgentPatch::default()
    };
    let renamed = s
        .update_agent(child.id, patch, at(2), &audit())
        .await
        .unwrap();
    s.set_agent_status(child.id, AgentStatus::Suspended, at(3), &audit())
        .await
        .unwrap();
    let key = s
        .create_api_key(new_key(child.id, 5, 4), &audit())
        .await
        .unwrap();
    s.revoke_api_key(key.id, at(5), &audit()).await.unwrap();
    let pid = PolicyId::new();
    s.create_policy(pid, child.id, spec(10), at(6), &audit())
        .await
        .unwrap();
    s.update_policy(pid, spec(20), Some(1), at(7), &audit())
        .await
        .unwrap();
    s.delete_policy(pid, at(8), &audit()).await.unwrap();
    // Refused changes write nothing.
    assert_conflict(
        s.set_agent_status(root.id, AgentStatus::Deleted, at(9), &audit())
            .await,
    );
    assert_not_found(s.update_policy(pid, spec(1), None, at(9), &audit()).await);
    // Prices carry no admin event.
    s.set_prices(
        vec![PriceEntry {
            provider: "openai".into(),
            resource: "gpt-4o".into(),
            price: price(1),
        }],
        at(9),
    )
    .await
    .unwrap();

    let records = outbox(s).await;
    assert_eq!(records.len(), 9, "{records:#?}");
    assert!(records.windows(2).all(|w| w[0].id < w[1].id));
    let agent_actions: Vec<LifecycleAction> =
        records[..6].iter().map(|r| lifecycle(r).action).collect();
    assert_eq!(
        agent_actions,
        vec![
            LifecycleAction::Created,
            LifecycleAction::Created,
            LifecycleAction::Updated,
            LifecycleAction::Suspended,
            LifecycleAction::KeyCreated,
            LifecycleAction::KeyRevoked
        ]
    );
    let created = lifecycle(&records[1]);
    assert_eq!(created.agent_id, child.id);
    assert_eq!(created.root_agent_id, root.id);
    assert_eq!(created.parent_id, Some(root.id));
    assert_eq!(created.before, None);
    assert_eq!(created.actor, "cli:test");
    let updated = lifecycle(&records[2]);
    let before: serde_json::Value =
        serde_json::from_str(updated.before.as_deref().unwrap()).unwrap();
    let after: serde_json::Value = serde_json::from_str(updated.after.as_deref().unwrap()).unwrap();
    assert_eq!(before["name"], "child");
    assert_eq!(after["name"], "child-2");
    assert_eq!(after, serde_json::to_value(&renamed).unwrap());
    let key_event = lifecycle(&records[4]).after.as_deref().unwrap();
    assert!(key_event.contains("ck_05"), "{key_event}");
    assert!(
        !key_event.contains("hash"),
        "the hash must not leak: {key_event}"
    );
    let policy_actions: Vec<(ChangeAction, i64)> = records[6..]
        .iter()
        .map(|r| (policy_change(r).action, policy_change(r).version))
        .collect();
    assert_eq!(
        policy_actions,
        vec![
            (ChangeAction::Created, 1),
            (ChangeAction::Updated, 2),
            (ChangeAction::Deleted, 3)
        ]
    );
    let update = policy_change(&records[7]);
    assert_eq!(update.before, Some(spec(10)));
    assert_eq!(update.after, Some(spec(20)));
    assert_eq!(update.root_agent_id, root.id);
    assert_eq!(records[7].created_at, at(7));

    // Paging: after an id, at most `limit`, oldest first.
    let page = s.outbox_after(records[2].id, 3).await.unwrap();
    assert_eq!(page, records[3..6].to_vec());
    assert!(s.outbox_after(records[8].id, 10).await.unwrap().is_empty());
}

pub async fn concurrent_versioned_updates_let_exactly_one_win(s: &dyn Store) {
    let agent = s
        .create_agent(new_agent("a", None, 0), &audit())
        .await
        .unwrap();
    let id = PolicyId::new();
    s.create_policy(id, agent.id, spec(1), at(1), &audit())
        .await
        .unwrap();
    let who = audit();
    let attempts = (0..6).map(|i| s.update_policy(id, spec(100 + i), Some(1), at(2 + i), &who));
    let results = futures_join_all(attempts).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    for result in results.into_iter().filter(|r| r.is_err()) {
        assert_conflict(result);
    }
    assert_eq!(s.get_policy(id).await.unwrap().unwrap().version, 2);
    let policy_events = outbox(s)
        .await
        .iter()
        .filter(|r| matches!(r.event, AdminEvent::PolicyChange(_)))
        .count();
    assert_eq!(policy_events, 2, "one create, one winning update");
}

/// Runs futures concurrently on this task and collects their outputs in order.
async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
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
                    super::$case(fixture.store.as_ref()).await;
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
