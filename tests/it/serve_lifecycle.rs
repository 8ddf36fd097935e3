//! `caracal serve`: the embedded default starts with no config, creates its data dir, answers
//! health and readiness, and stops cleanly on SIGTERM.

use crate::harness::{request, Env};

#[test]
fn serve_with_no_config_starts_everything_and_stops_on_sigterm() {
    let env = Env::new();
    // No CARACAL_DATADIR: the default ./caracal-data in the working directory.
    let env = Env {
        vars: Vec::new(),
        ..env
    };
    let server = env.serve(&[]);
    assert!(env.dir.path().join("caracal-data").is_dir());
    assert_eq!(
        request("GET", &server.telemetry_url("/health"), &[], None).status,
        200
    );
    let ready = request("GET", &server.telemetry_url("/ready"), &[], None);
    assert_eq!(ready.json()["checks"]["store"], "ok");
    let metrics = request("GET", &server.telemetry_url("/metrics"), &[], None);
    assert_eq!(metrics.status, 200);
    assert_eq!(
        request("GET", &server.admin_url("/health"), &[], None).status,
        200
    );
    let token = std::fs::read_to_string(env.dir.path().join("caracal-data/admin-token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    let agents = request(
        "GET",
        &server.admin_url("/v1/agents"),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(agents.status, 200);
    let log = server.log();
    assert!(log.contains("admin API listening"), "{log}");
    assert!(log.contains("gateway listening"), "{log}");
    assert!(
        !log.contains(token.trim()),
        "the admin token reached the log"
    );
    assert_eq!(server.terminate(), 0);
}

#[test]
fn an_unknown_role_is_refused() {
    let env = Env::new();
    let run = env.cli(&["serve", "--role", "billing"]);
    assert!(run.user_error().contains("unknown role"));
}
