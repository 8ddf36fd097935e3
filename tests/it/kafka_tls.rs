//! The event bus over TLS: tansu behind stunnel, which requires a client certificate signed by
//! the test CA. A gateway and a ledger, each its own `caracal serve`, meter every call made with
//! the official `openai` SDK exactly once through the TLS-only broker; a gateway that trusts
//! another CA stops within its deadline with one line naming the broker and the certificate.

use std::time::{Duration, Instant};

use crate::harness::certs::{make_certificates, make_certificates_of};
use crate::harness::gateway::{tree, Gateway, Mock};
use crate::harness::postgres::PgServer;
use crate::harness::tansu::Tansu;
use crate::harness::{Env, TempDir};
use crate::kafka_topology::{assert_ledger_totals, one_error_line, own, sdk_calls, topology_env};
use crate::ledger::wait_sealed;

/// `env` speaking SSL with the client certificate of `certs` and the CA file `ca`.
fn ssl(env: Env, certs: &TempDir, ca: &std::path::Path) -> Env {
    let file = |name: &str| certs.path().join(name).display().to_string();
    env.with("CARACAL_KAFKA__SECURITY__PROTOCOL", "SSL")
        .with("CARACAL_KAFKA__SSL__CAFILE", &ca.display().to_string())
        .with("CARACAL_KAFKA__SSL__CERTFILE", &file("client.crt"))
        .with("CARACAL_KAFKA__SSL__KEYFILE", &file("client.key"))
}

#[test]
fn the_bus_meters_every_call_over_tls_with_a_client_certificate_and_an_unknown_ca_is_one_line() {
    let certs = TempDir::new();
    make_certificates(certs.path(), "caracal");
    let (pg, mock) = (PgServer::start(), Mock::start(&[]));
    let tansu = Tansu::start_tls(certs.path());
    let topics: Vec<(&str, i32)> = caracal::core::events::TOPICS
        .iter()
        .map(|t| (t.name, t.partitions))
        .collect();
    tansu.create_topics(&topics);
    let ca = certs.path().join("ca.crt");
    let env = ssl(topology_env(&pg, &tansu, &mock), &certs, &ca);
    let t = tree(&env, "10.00", "10.00");
    let _ledger = own(&env).serve(&["--role", "ledger"]);
    let gw = Gateway::start_roles(own(&env), &["gateway"]);

    let calls = 30_i64;
    sdk_calls(&[gw.url("/openai/v1")], &t.key, calls as u64);
    assert_eq!(mock.requests() as i64, calls);
    wait_sealed(&env, calls);
    assert_ledger_totals(&env, &[(&t, calls)]);

    // The client certificate is good, but the broker's certificate is signed by a CA the
    // gateway does not trust: refused after rskafka's retries (the harness's
    // requestTimeoutMs is 2000), not cut by the hang guard at twice that.
    let other = TempDir::new();
    make_certificates_of(other.path(), "caracal", "another CA");
    let foreign = ssl(own(&env), &certs, &other.path().join("ca.crt"));
    let started = Instant::now();
    let refused = foreign.cli_within(&["serve", "--role", "gateway"], Duration::from_secs(30));
    assert_ne!(refused.status, 0, "{}", refused.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "refused after {:?}",
        started.elapsed()
    );
    let line = one_error_line(&refused).to_lowercase();
    assert!(line.contains(&tansu.address()), "{line}");
    assert!(!line.contains("no answer"), "{line}");
    assert!(
        line.contains("certificate") && line.contains("unknown"),
        "{line}"
    );
    assert_eq!(mock.requests() as i64, calls);
}
