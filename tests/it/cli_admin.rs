//! The admin CLI on the embedded store: agents, policies, keys, prices round-trip exactly, and
//! every change leaves exactly one outbox event carrying what changed.

use serde_json::Value;

use crate::harness::Env;

fn create_agent(env: &Env, name: &str, parent: Option<&str>) -> String {
    let mut args = vec![
        "agent", "create", "--name", name, "--type", "worker", "--output", "json",
    ];
    if let Some(p) = parent {
        args.extend(["--parent", p]);
    }
    env.cli(&args).json()["id"].as_str().unwrap().to_owned()
}

/// Admin events in the outbox, read back through the store.
pub fn outbox(env: &Env) -> Vec<Value> {
    let data_dir = env.data_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        use caracal::store::Store;
        let store = caracal::store::sqlite::SqliteStore::open(&data_dir).unwrap();
        let records = store.outbox_after(0, 10_000).await.unwrap();
        records
            .iter()
            .map(|r| serde_json::to_value(&r.event).unwrap())
            .collect()
    })
}

#[test]
fn parent_and_child_policies_round_trip_every_value_exactly() {
    let env = Env::new();
    let parent = create_agent(&env, "team-platform", None);
    let child = create_agent(&env, "agent-1", Some(&parent));
    let p1 = env
        .cli(&[
            "policy",
            "create",
            "--agent-id",
            &parent,
            "--limit",
            "0.20",
            "--currency",
            "USD",
            "--time-window",
            "daily",
            "--window-type",
            "calendar",
            "--output",
            "json",
        ])
        .json();
    let p2 = env
        .cli(&[
            "policy",
            "create",
            "--agent-id",
            &child,
            "--limit",
            "0.10",
            "--currency",
            "EUR",
            "--time-window",
            "weekly",
            "--window-type",
            "rolling",
            "--allow",
            "openai:gpt-4o*",
            "--allow",
            "mcp:search/*",
            "--output",
            "json",
        ])
        .json();

    let listed = env.cli(&["policy", "list", "--output", "json"]).json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let by_id = |id: &Value| listed.iter().find(|p| p["id"] == *id).unwrap().clone();
    assert_eq!(by_id(&p1["id"]), p1);
    assert_eq!(by_id(&p2["id"]), p2);
    assert_eq!(p1["limit"], "0.20");
    assert_eq!(p1["limit_micros"], 200_000);
    assert_eq!(p1["agent_id"].as_str(), Some(parent.as_str()));
    assert_eq!(p2["limit"], "0.10");
    assert_eq!(p2["limit_micros"], 100_000);
    assert_eq!(p2["currency"], "EUR");
    assert_eq!(p2["time_window"], "weekly");
    assert_eq!(p2["window_type"], "rolling");
    assert_eq!(
        p2["allow"],
        serde_json::json!(["openai:gpt-4o*", "mcp:search/*"])
    );
    assert_eq!(p2["version"], 1);

    let children = env
        .cli(&["agent", "list", "--parent", &parent, "--output", "json"])
        .json();
    assert_eq!(children.as_array().unwrap().len(), 1);
    assert_eq!(children[0]["id"].as_str(), Some(child.as_str()));
    assert_eq!(children[0]["parent_id"].as_str(), Some(parent.as_str()));
}

#[test]
fn each_change_leaves_exactly_one_outbox_event_with_its_before_and_after() {
    let env = Env::new();
    let root = create_agent(&env, "root", None);
    let child = create_agent(&env, "child", Some(&root));
    assert_eq!(outbox(&env).len(), 2);

    let policy = env
        .cli(&[
            "policy",
            "create",
            "--agent-id",
            &child,
            "--limit",
            "5.00",
            "--time-window",
            "monthly",
            "--output",
            "json",
        ])
        .json();
    let id = policy["id"].as_str().unwrap();
    env.cli(&[
        "policy",
        "update",
        id,
        "--limit",
        "7.50",
        "--reason",
        "more work",
        "--output",
        "json",
    ])
    .ok();
    env.cli(&["agent", "suspend", &child, "--reason", "runaway"])
        .ok();

    let events = outbox(&env);
    assert_eq!(events.len(), 5, "events: {events:#?}");
    let update = &events[3];
    let change = update.get("PolicyChange").unwrap_or(update);
    assert_eq!(change["action"], "UPDATED");
    assert_eq!(change["version"], 2);
    assert_eq!(change["reason"], "more work");
    assert_eq!(change["root_agent_id"].as_str(), Some(root.as_str()));
    assert_eq!(change["before"]["limit_micros"], 5_000_000);
    assert_eq!(change["after"]["limit_micros"], 7_500_000);

    let suspend = &events[4];
    let lifecycle = suspend.get("AgentLifecycle").unwrap_or(suspend);
    assert_eq!(lifecycle["action"], "SUSPENDED");
    assert_eq!(lifecycle["reason"], "runaway");
    let before: Value = serde_json::from_str(lifecycle["before"].as_str().unwrap()).unwrap();
    let after: Value = serde_json::from_str(lifecycle["after"].as_str().unwrap()).unwrap();
    assert_eq!(before["status"], "active");
    assert_eq!(after["status"], "suspended");

    let history = env
        .cli(&["policy", "history", id, "--output", "json"])
        .json();
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[1]["before"]["limit_micros"], 5_000_000);
    assert_eq!(history[1]["after"]["limit_micros"], 7_500_000);
}

#[test]
fn an_api_key_is_shown_once_and_only_its_hash_is_kept() {
    let env = Env::new();
    let agent = create_agent(&env, "keyed", None);
    let created = env
        .cli(&["key", "create", "--agent-id", &agent, "--output", "json"])
        .json();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("cak_") && secret.len() > 40);

    let listed = env
        .cli(&["key", "list", "--output", "json"])
        .ok()
        .to_owned();
    assert!(!listed.contains(&secret), "key list leaks the secret");
    let db = std::fs::read(env.data_dir().join("caracal.db")).unwrap();
    let needle = secret.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "the database holds the secret"
    );
    for event in outbox(&env) {
        assert!(
            !event.to_string().contains(&secret),
            "an event carries the secret"
        );
    }

    let key_id = created["id"].as_str().unwrap();
    let revoked = env
        .cli(&["key", "revoke", key_id, "--output", "json"])
        .json();
    assert!(revoked["revoked_at"].is_string());
    env.cli(&["key", "revoke", key_id]).user_error();
}

#[test]
fn pricebook_import_and_lookup_keep_exact_prices() {
    let env = Env::new();
    let default_book = concat!(env!("CARGO_MANIFEST_DIR"), "/pricebook/default.yaml");
    let imported = env.cli(&["pricebook", "import", default_book]);
    assert!(imported.ok().contains("imported"), "{}", imported.stdout);
    env.cli(&[
        "pricebook",
        "set",
        "--provider",
        "openai",
        "--model",
        "gpt-test",
        "--input",
        "2.50",
        "--output-price",
        "10.000001",
    ])
    .ok();
    let price = env
        .cli(&[
            "pricebook",
            "get",
            "--provider",
            "openai",
            "--model",
            "gpt-test-2026-01-01",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(price["input"], "2.50");
    assert_eq!(price["cached_input"], "2.50");
    assert_eq!(price["output"], "10.000001");
    let listed = env.cli(&["pricebook", "list", "--output", "json"]).json();
    assert!(listed.as_array().unwrap().len() > 10);
}

#[test]
fn deleting_a_parent_with_live_children_is_refused() {
    let env = Env::new();
    let root = create_agent(&env, "root", None);
    let child = create_agent(&env, "child", Some(&root));
    let refused = env.cli(&["agent", "delete", &root]);
    assert!(refused.user_error().contains("child"));
    env.cli(&["agent", "delete", &child]).ok();
    env.cli(&["agent", "delete", &root]).ok();
    let remaining = env.cli(&["agent", "list", "--output", "json"]).json();
    assert_eq!(remaining.as_array().unwrap().len(), 0);
    let all = env
        .cli(&["agent", "list", "--all", "--output", "json"])
        .json();
    assert_eq!(all.as_array().unwrap().len(), 2);
}
