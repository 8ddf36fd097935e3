//! Checks of a whole configuration that only `serve` acts on: security settings given for a
//! backend that is not configured (they would be silently ignored, so `serve` refuses), and
//! topologies that run but deserve a warning. Pure functions of a `Config`; messages name keys.

use super::{Config, KafkaSecurity, KafkaSsl, PgSslMode, RedisTls};

/// Security settings of a backend that has no host (or brokers): `serve` would run on the
/// embedded adapter and ignore them. One message per backend, naming the keys and what to do.
pub fn ignored_security_settings(c: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let pg = &c.postgresql.ssl;
    let pg_tls = pg.effective_mode() != PgSslMode::Disable
        || pg.cert.is_some()
        || pg.key.is_some()
        || pg.root_cert.is_some();
    if pg_tls && !c.postgresql.is_configured() {
        problems.push(
            "postgresql.ssl is set but postgresql has no host or url, so Caracal would run on \
             the embedded SQLite store without it; set postgresql.host (or DB_HOST) or \
             postgresql.url, or remove postgresql.ssl"
                .to_owned(),
        );
    }
    if c.redis.tls != RedisTls::default() && !c.redis.is_configured() {
        problems.push(
            "redis.tls is set but redis has no host or url, so Caracal would use the \
             in-process spend cache without it; set redis.host or redis.url, or remove redis.tls"
                .to_owned(),
        );
    }
    let kafka = &c.kafka;
    if !kafka.is_configured() {
        let keys: Vec<&str> = [
            (kafka.security != KafkaSecurity::default(), "kafka.security"),
            (kafka.ssl != KafkaSsl::default(), "kafka.ssl"),
        ]
        .into_iter()
        .filter_map(|(set, key)| set.then_some(key))
        .collect();
        if !keys.is_empty() {
            let keys = keys.join(" and ");
            problems.push(format!(
                "{keys} set but kafka.brokers is empty, so Caracal would use the embedded \
                 event log without them; set kafka.brokers, or remove {keys}"
            ));
        }
    }
    problems
}

/// Warnings for a process that runs the gateway (`runs_gateway`) in this configuration: shown
/// in the startup log and in `/ready` until the configuration changes.
pub fn gateway_warnings(c: &Config, runs_gateway: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    if runs_gateway && c.postgresql.is_configured() && !c.redis.is_configured() {
        warnings.push(
            "the gateway runs on Postgres with the in-process spend cache: each gateway \
             process enforces its own copy of every budget, so N gateway processes can spend up \
             to N times a limit; run a single gateway process until a shared spend cache \
             (redis) is configured"
                .to_owned(),
        );
    }
    warnings
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::tests::load_yaml;
    use super::*;

    #[test]
    fn security_settings_without_a_host_are_named_and_with_one_are_not() {
        let yaml = "postgresql:\n  ssl: {enabled: true, mode: require}\nredis:\n  tls: {enabled: true}\nkafka:\n  security: {protocol: SASL_SSL, saslMechanism: PLAIN, saslUsername: u, saslPassword: p}\n";
        let problems = ignored_security_settings(&load_yaml(yaml, &[]).unwrap());
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with("postgresql.ssl is set"),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("redis.tls is set"), "{problems:?}");
        assert!(
            problems[2].starts_with("kafka.security set"),
            "{problems:?}"
        );

        let hosted = "postgresql:\n  host: db\n  ssl: {enabled: true}\nkafka:\n  brokers: ['k:9092']\n  ssl: {caFile: /ca.pem}\n";
        assert!(ignored_security_settings(&load_yaml(hosted, &[]).unwrap()).is_empty());
        let off = "postgresql:\n  ssl: {enabled: false}\nredis:\n  tls: {enabled: false}\n";
        assert!(ignored_security_settings(&load_yaml(off, &[]).unwrap()).is_empty());
    }

    #[test]
    fn a_gateway_on_postgres_without_a_shared_spend_cache_is_warned_about() {
        let pg = load_yaml("postgresql:\n  host: db\n", &[]).unwrap();
        assert_eq!(gateway_warnings(&pg, true).len(), 1);
        assert!(gateway_warnings(&pg, false).is_empty());
        assert!(gateway_warnings(&Config::default(), true).is_empty());
    }
}
