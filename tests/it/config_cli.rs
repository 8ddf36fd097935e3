//! `caracal config show`: the effective configuration with every secret masked, layered from
//! the file, `CARACAL_*` variables and the seeds' `DB_*` variables.

use crate::harness::Env;

#[test]
fn config_show_masks_every_secret_and_applies_the_layers() {
    let env = Env::new()
        .with("DB_PASSWORD", "s3cr3t/with+base64=")
        .with("REDIS_PASSWORD", "redis-secret-value")
        .with("CARACAL_ADMIN__TOKEN", "admin-secret-value")
        .with("CARACAL_GATEWAY__CONFIG__MAXCONCURRENTREQUESTS", "77");
    let file = env.dir.path().join("caracal.yaml");
    std::fs::write(&file, "gateway:\n  config:\n    requestTimeout: 45\nkafka:\n  brokers: [\"kafka-0:9092\"]\n  security:\n    protocol: SASL_SSL\n    saslMechanism: SCRAM-SHA-512\n    saslUsername: caracal-producer\n    saslPassword: kafka-secret-value\n").unwrap();
    let shown = env.cli(&["config", "show"]).ok().to_owned();
    for secret in [
        "s3cr3t/with+base64=",
        "redis-secret-value",
        "admin-secret-value",
        "kafka-secret-value",
    ] {
        assert!(
            !shown.contains(secret),
            "config show leaks {secret}:\n{shown}"
        );
    }
    assert!(shown.contains("***"));
    assert!(shown.contains("requestTimeout: 45"), "{shown}");
    assert!(shown.contains("maxConcurrentRequests: 77"), "{shown}");
}
