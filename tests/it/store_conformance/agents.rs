//! Conformance cases for agents, their chains and their API keys.

use caracal::core::agent::{AgentId, AgentStatus, HIERARCHY_DEPTH_MAX};
use caracal::core::policy::PolicyId;
use caracal::store::{AgentFilter, AgentPatch, ApiKeyId, NewAgent, Store};
use uuid::Uuid;

use super::{assert_conflict, assert_not_found, at, audit, new_agent, new_key, spec};

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
