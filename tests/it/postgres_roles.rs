//! The roles on Postgres, against the real binary and a real server: two ledger replicas
//! splitting the partitions and one taking over from the other after kill -9, a Postgres
//! restart under ledger load, the audit role, and the gateway failing closed while Postgres is
//! down and recovering when it returns.

use std::collections::BTreeSet;
use std::time::Duration;

use caracal::core::agent::AgentId;
use serde_json::json;

use crate::harness::gateway::{gateway_env, tree, Gateway, Mock};
use crate::harness::postgres::PgServer;
use crate::harness::{wait_for, Env};
use crate::ledger::{assert_each_event_sealed_once, ledger_env, sealed_rows, steady_publisher};

/// `env` pointed at a fresh, migrated database of `server` through the seeds' `DB_*` variables,
/// with the signing key every ledger replica shares (none is made outside the embedded default).
pub fn on_postgres(mut env: Env, server: &PgServer) -> Env {
    let database = server.create_database(None);
    for (key, value) in server.env_vars(&database) {
        env = env.with(&key, &value);
    }
    env.cli(&["db", "migrate", "up"]).ok();
    let key = env.dir.path().join("merkle_signing_key.pem");
    let key = key.to_str().unwrap();
    env.cli(&["merkle", "keygen", "--out", key]).ok();
    env.with(
        "CARACAL_CONSUMERS__LEDGERWRITER__MERKLE__SIGNINGKEYFILE",
        key,
    )
}

/// The distinct live owners of the ledger's partitions, from `consumers status`.
fn ledger_owners(env: &Env) -> BTreeSet<String> {
    env.cli(&["consumers", "status", "--output", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["consumer"] == "ledger" && row["lease_live"] == true)
        .filter_map(|row| row["owner"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn two_ledger_replicas_split_the_partitions_and_one_takes_over_from_a_killed_one() {
    let server = PgServer::start();
    let env = on_postgres(ledger_env(), &server);
    let first = env.serve(&["--role", "ledger"]);
    let _second = env.serve(&["--role", "ledger"]);
    wait_for(
        "both replicas to own partitions",
        Duration::from_secs(30),
        || (ledger_owners(&env).len() == 2).then_some(()),
    );

    let roots: Vec<AgentId> = (0..12).map(|_| AgentId::new()).collect();
    let publisher = steady_publisher(env.data_dir(), roots, 300);
    wait_for("some rows sealed", Duration::from_secs(60), || {
        (sealed_rows(&env) >= 600).then_some(())
    });
    first.kill9();
    wait_for(
        "the survivor to own every partition",
        Duration::from_secs(30),
        || (ledger_owners(&env).len() == 1).then_some(()),
    );
    assert_each_event_sealed_once(&env, publisher.join().unwrap(), 300);
}

#[test]
fn a_postgres_restart_under_ledger_load_loses_and_duplicates_nothing() {
    let server = PgServer::start();
    let env = on_postgres(ledger_env(), &server);
    let ledger = env.serve(&["--role", "ledger"]);
    let before: Vec<AgentId> = (0..7).map(|_| AgentId::new()).collect();
    let publisher = steady_publisher(env.data_dir(), before, 300);
    wait_for("some rows sealed", Duration::from_secs(60), || {
        (sealed_rows(&env) >= 300).then_some(())
    });
    server.restart();
    // A second wave published after the restart: the role must have reconnected by itself.
    let after: Vec<AgentId> = (0..3).map(|_| AgentId::new()).collect();
    let mut costs = steady_publisher(env.data_dir(), after, 300).join().unwrap();
    costs.extend(publisher.join().unwrap());
    assert_each_event_sealed_once(&env, costs, 300);
    let metrics = crate::harness::request("GET", &ledger.telemetry_url("/metrics"), &[], None);
    assert_eq!(metrics.status, 200, "the ledger role is still up");
}

#[test]
fn the_audit_role_logs_every_event_once_on_postgres() {
    let server = PgServer::start();
    let env = on_postgres(ledger_env(), &server);
    let _audit = env.serve(&["--role", "audit"]);
    let roots: Vec<AgentId> = (0..3).map(|_| AgentId::new()).collect();
    steady_publisher(env.data_dir(), roots, 50).join().unwrap();
    let (from, to) = crate::ledger::today_range();
    let ids = wait_for(
        "150 metering records in the audit log",
        Duration::from_secs(60),
        || {
            let text = env
                .cli(&["audit", "export", "--start", &from, "--end", &to])
                .ok()
                .to_owned();
            let ids: Vec<String> = text
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .filter(|r| r["event_type"] == "MeteringEvent")
                .map(|r| r["event_id"].as_str().unwrap().to_owned())
                .collect();
            (ids.len() >= 150).then_some(ids)
        },
    );
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (150, 150));
}

#[test]
fn the_gateway_fails_closed_while_postgres_is_down_and_recovers_when_it_returns() {
    let server = PgServer::start();
    let database = server.create_database(None);
    let vars = server.env_vars(&database);
    let mut migrate = Env::new();
    for (key, value) in &vars {
        migrate = migrate.with(key, value);
    }
    migrate.cli(&["db", "migrate", "up"]).ok();

    let mock = Mock::start(&[]);
    let settings: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let env = gateway_env(&mock, &settings);
    let known = tree(&env, "10", "5");
    let unseen = tree(&env, "10", "5");
    let gw = Gateway::start(env);
    let body = json!({"model": "mock-gpt", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hello"}]})
    .to_string();
    let path = "/openai/v1/chat/completions";
    assert_eq!(gw.post(path, &known.key, &body).status, 200);

    server.stop();
    let before = mock.requests();
    let refused = gw.post(path, &unseen.key, &body);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.json()["error"]["message"].is_string(),
        "{}",
        refused.body
    );
    assert_eq!(mock.requests(), before, "nothing was forwarded");

    server.start_again();
    wait_for(
        "the unseen agent to be served once postgres is back",
        Duration::from_secs(60),
        || (gw.post(path, &unseen.key, &body).status == 200).then_some(()),
    );
}
