//! Conformance cases for versioned policies, prices and the outbox.

use caracal::core::agent::{AgentId, AgentStatus};
use caracal::core::events::{AdminEvent, ChangeAction, LifecycleAction};
use caracal::core::money::Micros;
use caracal::core::policy::PolicyId;
use caracal::core::pricing::{Price, PriceEntry};
use caracal::store::{AgentPatch, ChangeKind, Store};

use super::{
    assert_conflict, assert_not_found, at, audit, futures_join_all, lifecycle, new_agent, new_key,
    outbox, policy_change, price, spec,
};

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
