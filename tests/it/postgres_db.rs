//! `caracal db init|migrate up|status` against a real PostgreSQL: idempotent, safe when run
//! concurrently, strict about applied files that changed, and connected by parts so a
//! password made by `openssl rand -base64 32` works.

use crate::harness::postgres::Postgres;
use crate::harness::Env;

fn env_for(pg: &Postgres, database: &str) -> Env {
    pg.env_vars(database)
        .into_iter()
        .fold(Env::new(), |env, (k, v)| env.with(&k, &v))
}

#[test]
fn db_init_then_migrate_up_twice_changes_nothing() {
    let pg = Postgres::start();
    let env = env_for(&pg, "caracal_init");
    let init = env.cli(&["db", "init"]);
    let out = init.ok();
    assert!(out.contains("created database caracal_init"), "{out}");
    assert!(
        out.contains("applied 0001_init.sql") && out.contains("applied 0002_ledger.sql"),
        "{out}"
    );
    let tables = pg.psql(
        "caracal_init",
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('agents', 'outbox', 'merkle_batches', 'consumer_leases', 'audit_log')",
    );
    assert_eq!(tables, "5");

    let again = env.cli(&["db", "migrate", "up"]);
    assert!(again.ok().contains("schema up to date"), "{}", again.stdout);
    assert!(env
        .cli(&["db", "init"])
        .ok()
        .contains("database caracal_init exists"));
    let status = env.cli(&["db", "status", "--output", "json"]).json();
    let states: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["applied", "applied"]);
    assert_eq!(
        pg.psql("caracal_init", "SELECT count(*) FROM schema_migrations"),
        "2"
    );
}

#[test]
fn concurrent_migrations_apply_each_file_exactly_once() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE caracal_race");
    let env = env_for(&pg, "caracal_race");
    let outputs: Vec<crate::harness::CliRun> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| env.cli(&["db", "migrate", "up"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut applied = Vec::new();
    for run in &outputs {
        applied.extend(
            run.ok()
                .lines()
                .filter_map(|l| l.split("applied ").nth(1))
                .map(str::to_owned),
        );
    }
    applied.sort();
    assert_eq!(applied, ["0001_init.sql", "0002_ledger.sql"], "{applied:?}");
    assert_eq!(
        pg.psql("caracal_race", "SELECT count(*) FROM schema_migrations"),
        "2"
    );
}

#[test]
fn a_migration_changed_after_it_was_applied_is_named() {
    let pg = Postgres::start();
    let env = env_for(&pg, "caracal_changed");
    env.cli(&["db", "init"]).ok();
    pg.psql(
        "caracal_changed",
        "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2",
    );
    let status = env.cli(&["db", "status"]);
    assert_ne!(status.status, 0);
    assert!(status.stdout.contains("changed"), "{}", status.stdout);
    assert!(
        status.stderr.contains("0002_ledger.sql"),
        "{}",
        status.stderr
    );
    let up = env.cli(&["db", "migrate", "up"]);
    assert!(up.user_error().contains("0002_ledger.sql"), "{}", up.stderr);
}

#[test]
fn a_password_with_slash_plus_and_equals_works_from_db_password() {
    let pg = Postgres::start();
    let password = "k3/Zq+9vLw==/a+b=c";
    pg.psql(
        "postgres",
        &format!("CREATE ROLE app LOGIN CREATEDB PASSWORD '{password}'"),
    );
    let env = Env::new()
        .with("DB_HOST", "127.0.0.1")
        .with("DB_PORT", &pg.port.to_string())
        .with("DB_NAME", "caracal_app")
        .with("DB_USER", "app")
        .with("DB_PASSWORD", password);
    assert!(env
        .cli(&["db", "init"])
        .ok()
        .contains("created database caracal_app"));
    let wrong = Env::new()
        .with("DB_HOST", "127.0.0.1")
        .with("DB_PORT", &pg.port.to_string())
        .with("DB_NAME", "caracal_app")
        .with("DB_USER", "app")
        .with("DB_PASSWORD", "not-the-password");
    let refused = wrong.cli(&["db", "status"]);
    let line = refused.user_error();
    assert!(line.contains("password authentication failed"), "{line}");
    assert!(
        !line.contains("not-the-password"),
        "a password reached an error: {line}"
    );
}
