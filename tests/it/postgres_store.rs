//! Caracal on a real Postgres through the real binary: `db init | migrate up | status`
//! (idempotent, concurrent runs, a changed migration named), the schema check at open,
//! certificate authentication over TLS, a `/+=` password from `DB_PASSWORD`, and the store
//! finding its way back after the server restarts.

use std::process::Command;
use std::time::Duration;

use crate::harness::postgres::{
    give_to_server_user, migrated_store, server_dir, PgOptions, PgServer,
};
use crate::harness::{CliRun, Env};
use caracal::store::Store;

/// An Env whose store is `database` on `server`, as the superuser, via the seeds' DB_* vars.
fn env_for(server: &PgServer, database: &str) -> Env {
    server
        .env_vars(database)
        .iter()
        .fold(Env::new(), |env, (k, v)| env.with(k, v))
}

fn applied_versions(server: &PgServer, database: &str) -> String {
    server.psql(
        database,
        "SELECT string_agg(version::text || ':' || name, ',' ORDER BY version) FROM schema_migrations",
    )
}

#[test]
fn db_init_creates_and_migrates_and_migrate_up_twice_is_a_no_op() {
    let server = PgServer::start();
    let env = env_for(&server, "caracal_init");
    let init = env.cli(&["db", "init"]);
    let out = init.ok();
    assert!(out.contains("created the database"), "{out}");
    assert!(out.contains("applied 0001_init.sql"), "{out}");
    assert!(out.contains("applied 0002_ledger.sql"), "{out}");
    let again = env.cli(&["db", "migrate", "up"]);
    assert!(again.ok().contains("up to date"), "{}", again.stdout);
    let json = env.cli(&["db", "migrate", "up", "--output", "json"]).json();
    assert_eq!(json["applied"], serde_json::json!([]));
    assert_eq!(json["backend"], "postgres");
    // `db init` on an existing, migrated database changes nothing either.
    let init_again = env.cli(&["db", "init", "--output", "json"]).json();
    assert_eq!(init_again["database_created"], false);
    assert_eq!(init_again["applied"], serde_json::json!([]));
    assert_eq!(
        applied_versions(&server, "caracal_init").trim(),
        "1:0001_init.sql,2:0002_ledger.sql"
    );
    let status = env.cli(&["db", "status", "--output", "json"]).json();
    let rows = status["migrations"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| r["state"] == "applied" && r["checksum"] == "ok"));
    // The store works on the migrated schema.
    env.cli(&["agent", "create", "--name", "first"]).ok();
    assert!(env.cli(&["agent", "list"]).ok().contains("first"));
}

#[test]
fn concurrent_migrate_up_runs_both_succeed_and_apply_each_file_once() {
    let server = PgServer::start();
    let database = server.create_database(None);
    let env = env_for(&server, &database);
    let children: Vec<_> = (0..3)
        .map(|_| env.cli_child(&["db", "migrate", "up", "--output", "json"]))
        .collect();
    let mut applied = Vec::new();
    for child in children {
        let run = CliRun::wait(child);
        let json = run.json();
        for file in json["applied"].as_array().unwrap() {
            applied.push(file.as_str().unwrap().to_owned());
        }
    }
    applied.sort();
    assert_eq!(applied, vec!["0001_init.sql", "0002_ledger.sql"]);
    assert_eq!(
        applied_versions(&server, &database).trim(),
        "1:0001_init.sql,2:0002_ledger.sql"
    );
}

#[test]
fn a_changed_applied_migration_is_named_by_status_migrate_and_the_store() {
    let server = PgServer::start();
    let database = server.create_database(None);
    let env = env_for(&server, &database);
    env.cli(&["db", "migrate", "up"]).ok();
    server.psql(
        &database,
        "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
    );
    let status = env.cli(&["db", "status"]);
    assert_ne!(status.status, 0);
    assert!(status.stdout.contains("mismatch"), "{}", status.stdout);
    assert!(status.stderr.contains("0001_init.sql"), "{}", status.stderr);
    let up = env.cli(&["db", "migrate", "up"]);
    assert!(up.user_error().contains("0001_init.sql"), "{}", up.stderr);
    let list = env.cli(&["agent", "list"]);
    assert!(
        list.user_error().contains("0001_init.sql"),
        "{}",
        list.stderr
    );
}

#[test]
fn the_store_refuses_a_schema_behind_and_says_how_to_migrate() {
    let server = PgServer::start();
    let database = server.create_database(None);
    let env = env_for(&server, &database);
    let list = env.cli(&["agent", "list"]);
    let line = list.user_error();
    assert!(line.contains("caracal db migrate up"), "{line}");
    let status = env.cli(&["db", "status", "--output", "json"]).json();
    assert!(status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["state"] == "pending"));
}

#[test]
fn certificate_auth_accepts_the_client_certificate_and_refuses_a_client_without_one() {
    let certs = crate::harness::TempDir::new();
    crate::harness::certs::make_certificates(certs.path(), "caracal");
    // The server reads its copies (owned by its user, key 0600).
    let server_files = server_dir();
    for file in ["ca.crt", "server.crt", "server.key"] {
        std::fs::copy(certs.path().join(file), server_files.path().join(file)).unwrap();
    }
    let server_key = server_files.path().join("server.key");
    std::fs::set_permissions(
        &server_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    give_to_server_user(server_files.path());
    let setting =
        |key: &str, file: &str| format!("{key} = '{}'", server_files.path().join(file).display());
    let server = PgServer::start_with(PgOptions {
        hba: vec!["hostssl all all 127.0.0.0/8 cert".into()],
        settings: vec![
            "ssl = on".into(),
            setting("ssl_cert_file", "server.crt"),
            setting("ssl_key_file", "server.key"),
            setting("ssl_ca_file", "ca.crt"),
        ],
        // 127.0.0.2 is not in the server certificate: it tells verify-ca from verify-full.
        listen: Some("'127.0.0.1,127.0.0.2'".into()),
    });
    server.psql("postgres", "CREATE ROLE caracal LOGIN");
    let database = server.create_database(Some("caracal"));
    let path = |file: &str| certs.path().join(file).display().to_string();
    let base = Env::new()
        .with("DB_HOST", "127.0.0.1")
        .with("DB_PORT", &server.port.to_string())
        .with("DB_NAME", &database)
        .with("DB_USER", "caracal")
        .with("CARACAL_POSTGRESQL__SSL__MODE", "verify-full")
        .with("CARACAL_POSTGRESQL__SSL__ROOT_CERT", &path("ca.crt"));

    // Without a client certificate the server refuses us: one clear line, non-zero exit.
    let refused = base.cli(&["agent", "list"]);
    let line = refused.user_error();
    assert!(line.contains("certificate"), "{line}");
    assert!(
        line.contains(&format!("127.0.0.1:{}", server.port)),
        "{line}"
    );

    let env = base
        .with("CARACAL_POSTGRESQL__SSL__CERT", &path("client.crt"))
        .with("CARACAL_POSTGRESQL__SSL__KEY", &path("client.key"));
    let up = env.cli(&["db", "migrate", "up"]);
    assert!(up.ok().contains("applied 0002_ledger.sql"), "{}", up.stdout);
    env.cli(&["agent", "create", "--name", "over-tls"]).ok();
    assert!(env.cli(&["agent", "list"]).ok().contains("over-tls"));
    // pg_hba.conf admits TCP only as `hostssl ... cert`: that connection was TLS with our
    // client certificate.

    // verify-full compares the host with the certificate; verify-ca checks the chain only.
    let other_name = env.with("DB_HOST", "127.0.0.2");
    let mismatch = other_name.cli(&["agent", "list"]);
    let line = mismatch.user_error();
    assert!(line.contains("not valid for name"), "{line}");
    let chain_only = other_name.with("CARACAL_POSTGRESQL__SSL__MODE", "verify-ca");
    assert!(chain_only.cli(&["agent", "list"]).ok().contains("over-tls"));
    let env = chain_only
        .with("DB_HOST", "127.0.0.1")
        .with("CARACAL_POSTGRESQL__SSL__MODE", "verify-full");

    // A server certificate from another CA fails verification.
    let other = crate::harness::TempDir::new();
    crate::harness::certs::make_certificates(other.path(), "caracal");
    let wrong_ca = env.with(
        "CARACAL_POSTGRESQL__SSL__ROOT_CERT",
        &other.path().join("ca.crt").display().to_string(),
    );
    let untrusted = wrong_ca.cli(&["agent", "list"]);
    let line = untrusted.user_error();
    assert!(line.contains("certificate"), "{line}");
}

#[test]
fn a_password_with_slash_plus_and_equals_works_from_db_password() {
    let server = PgServer::start_with(PgOptions {
        hba: vec!["host all all 127.0.0.1/32 scram-sha-256".into()],
        ..PgOptions::default()
    });
    let random = Command::new("openssl")
        .args(["rand", "-base64", "32"])
        .output()
        .unwrap();
    let password = format!("a/b+c=={}", String::from_utf8_lossy(&random.stdout).trim());
    server.psql(
        "postgres",
        &format!("CREATE ROLE app LOGIN CREATEDB PASSWORD '{password}'"),
    );
    let env = Env::new()
        .with("DB_HOST", "127.0.0.1")
        .with("DB_PORT", &server.port.to_string())
        .with("DB_NAME", "app_db")
        .with("DB_USER", "app");
    let wrong = env
        .with("DB_PASSWORD", "not/the+password=")
        .cli(&["agent", "list"]);
    let line = wrong.user_error();
    assert!(line.contains("password authentication failed"), "{line}");
    assert!(!wrong.stderr.contains("not/the+password="), "{line}");

    let env = Env::new()
        .with("DB_HOST", "127.0.0.1")
        .with("DB_PORT", &server.port.to_string())
        .with("DB_NAME", "app_db")
        .with("DB_USER", "app")
        .with("DB_PASSWORD", &password);
    let init = env.cli(&["db", "init"]);
    assert!(
        init.ok().contains("created the database"),
        "{}",
        init.stdout
    );
    env.cli(&["agent", "create", "--name", "with-password"])
        .ok();
    assert!(env.cli(&["agent", "list"]).ok().contains("with-password"));
    let shown = env.cli(&["config", "show"]);
    assert!(
        !shown.ok().contains(&password),
        "config show leaked the password"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_recovers_by_itself_after_postgres_restarts() {
    let server = PgServer::start();
    let database = server.create_database(None);
    let store = migrated_store(&server.config(&database), 4).await;
    store.ping().await.unwrap();
    server.stop();
    assert!(
        store.ping().await.is_err(),
        "ping answered with the server down"
    );
    server.start_again();
    let mut recovered = false;
    for _ in 0..100 {
        if store.ping().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store did not reconnect after the restart");
    server.restart();
    let mut listed = None;
    for _ in 0..100 {
        if let Ok(agents) = store.list_agents(&Default::default()).await {
            listed = Some(agents);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed, Some(Vec::new()));
}

#[test]
fn serve_runs_admin_and_gateway_on_postgres() {
    let server = PgServer::start();
    let database = server.create_database(None);
    let env = env_for(&server, &database).with("CARACAL_ADMIN__TOKEN", "pg-admin-token-0123456789");
    env.cli(&["db", "migrate", "up"]).ok();
    let serve = env.serve(&["--role", "admin", "--role", "gateway"]);
    // Each gateway process on the in-process spend cache enforces its own copy of a budget:
    // said at startup and in /ready (which stays 200) until a shared cache is configured.
    let log = serve.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("in-process spend cache")),
        "{log}"
    );
    let ready = crate::harness::request("GET", &serve.telemetry_url("/ready"), &[], None);
    assert_eq!(ready.status, 200);
    let warnings = ready.json()["warnings"].to_string();
    assert!(warnings.contains("N times a limit"), "{}", ready.body);
    let created = crate::harness::request(
        "POST",
        &serve.admin_url("/v1/agents"),
        &[("Authorization", "Bearer pg-admin-token-0123456789")],
        Some(r#"{"name": "from-the-api"}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    // The CLI and the server share the one system of record.
    assert!(env.cli(&["agent", "list"]).ok().contains("from-the-api"));
}

#[test]
fn db_commands_on_the_embedded_store_report_its_self_applied_migrations() {
    let env = Env::new();
    let up = env.cli(&["db", "migrate", "up"]);
    assert!(
        up.ok()
            .contains("applies its migrations whenever it is opened"),
        "{}",
        up.stdout
    );
    let init = env.cli(&["db", "init", "--output", "json"]).json();
    assert_eq!(init["backend"], "embedded");
    let status = env.cli(&["db", "status", "--output", "json"]).json();
    let states: Vec<&str> = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["applied", "applied"]);
}

#[test]
fn ledger_events_go_to_their_month_partition_and_event_ids_stay_unique() {
    let server = PgServer::start();
    let database = server.create_database(None);
    env_for(&server, &database)
        .cli(&["db", "migrate", "up"])
        .ok();
    // 2030-05-14T12:00:00Z in Unix microseconds.
    let may_2030 = 1_904_990_400_000_000_i64;
    let ensure = format!("SELECT caracal_ensure_ledger_partition({may_2030})");
    assert_eq!(
        server.psql(&database, &ensure).trim(),
        "ledger_events_203005"
    );
    assert_eq!(
        server.psql(&database, &ensure).trim(),
        "ledger_events_203005"
    );
    let event = "0190f0e0-0000-7000-8000-000000000001";
    let agent = "0190f0e0-0000-7000-8000-0000000000aa";
    let first = server.psql(
        &database,
        &format!(
            "INSERT INTO ledger_event_ids VALUES ('{event}', 0, 0, {may_2030})
             ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        ),
    );
    assert_eq!(first.trim(), event);
    let again = server.psql(
        &database,
        &format!(
            "INSERT INTO ledger_event_ids VALUES ('{event}', 0, 1, {may_2030})
             ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        ),
    );
    assert_eq!(again.trim(), "", "a duplicate event id was accepted");
    server.psql(
        &database,
        &format!(
            "INSERT INTO ledger_events VALUES (0, 0, '{event}', {may_2030}, '{event}', '{agent}',
             NULL, '{agent}', ARRAY['{agent}']::uuid[], 'openai', 'gpt-4o', 'chat', 1, 0, 1, 1,
             10, 10, 'USD', false, 'COMPLETED', 0, '\\x00')"
        ),
    );
    let home = server.psql(&database, "SELECT tableoid::regclass FROM ledger_events");
    assert_eq!(home.trim(), "ledger_events_203005");
    let default_rows = server.psql(&database, "SELECT count(*) FROM ledger_events_default");
    assert_eq!(default_rows.trim(), "0");
}

#[test]
fn backfill_and_the_ledger_on_postgres_never_mint_a_signing_key() {
    let server = PgServer::start();
    let database = server.create_database(None);
    let env = env_for(&server, &database);
    env.cli(&["db", "migrate", "up"]).ok();
    let key_file = env.data_dir().join("merkle-signing-key.pem");
    let refused = env.cli(&["merkle", "backfill"]);
    let line = refused.user_error();
    assert!(
        line.contains("consumers.ledgerWriter.merkle.signingKeyFile is required"),
        "{line}"
    );
    let refused = env.cli_within(&["serve", "--role", "ledger"], Duration::from_secs(30));
    assert!(refused.user_error().contains("merkle keygen"));
    assert!(!key_file.exists(), "a signing key was made in the data dir");

    let key = env.dir.path().join("operator-key.pem");
    env.cli(&["merkle", "keygen", "--out", key.to_str().unwrap()])
        .ok();
    let env = env.with(
        "CARACAL_CONSUMERS__LEDGERWRITER__MERKLE__SIGNINGKEYFILE",
        key.to_str().unwrap(),
    );
    assert!(env
        .cli(&["merkle", "backfill"])
        .ok()
        .contains("sealed 0 rows"));
    assert!(!key_file.exists());
}
