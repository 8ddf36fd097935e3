//! Unit tests of `properties.rs`: the seeds' client.properties shape, Java's syntax, JAAS.
#![allow(clippy::unwrap_used)]

use super::*;

/// The client.properties the seeds' `setup-kafka-security.sh` writes (SASL_SSL, SCRAM-SHA-512).
const SEEDS: &str = r#"# Kafka client configuration
bootstrap.servers=kafka-1:9093,kafka-2:9095, kafka-3:9097
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
    username="admin" \
    password="admin-secret";
ssl.truststore.location=kafka.client.truststore.pem
ssl.truststore.password=changeit
ssl.endpoint.identification.algorithm=https
"#;

#[test]
fn the_seeds_client_properties_give_brokers_scram_and_the_truststore() {
    let props = parse(SEEDS);
    let s = settings(&props, Path::new("/etc/kafka"), &[], Duration::from_secs(1)).unwrap();
    assert_eq!(s.brokers, ["kafka-1:9093", "kafka-2:9095", "kafka-3:9097"]);
    assert_eq!(s.protocol, KafkaProtocol::SaslSsl);
    let login = s.sasl.unwrap();
    assert_eq!(login.mechanism, SaslMechanism::ScramSha512);
    assert_eq!(login.username, "admin");
    assert_eq!(login.password.expose(), "admin-secret");
    let trust = s.tls.trust.unwrap();
    assert_eq!(
        trust.path,
        Path::new("/etc/kafka/kafka.client.truststore.pem")
    );
    assert_eq!(trust.password.unwrap().expose(), "changeit");
}

#[test]
fn java_properties_syntax_separators_comments_and_escapes() {
    let props = parse("! bang comment\n  a = 1\nb:2\nc 3\nd=x\\ty\\u0041\ne\\=f=g\nempty=\n");
    assert_eq!(props["a"], "1");
    assert_eq!(props["b"], "2");
    assert_eq!(props["c"], "3");
    assert_eq!(props["d"], "x\tyA");
    assert_eq!(props["e=f"], "g");
    assert_eq!(props["empty"], "");
    assert_eq!(props.len(), 6);
}

/// A quote inside a JAAS value is `\"`, and the properties file escapes that backslash (`\\"`).
#[test]
fn plain_login_and_a_mechanism_that_does_not_match_its_module() {
    let plain = "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
        sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"p\\\\\"q\";\n";
    let s = settings(
        &parse(plain),
        Path::new("."),
        &["k:9092".into()],
        Duration::from_secs(1),
    );
    let login = s.unwrap().sasl.unwrap();
    assert_eq!(
        (login.username.as_str(), login.password.expose()),
        ("u", "p\"q")
    );

    let mismatch = plain.replace("=PLAIN", "=SCRAM-SHA-256");
    let err = settings(
        &parse(&mismatch),
        Path::new("."),
        &["k:9092".into()],
        Duration::from_secs(1),
    );
    let message = err.err().unwrap().to_string();
    assert!(message.contains("ScramLoginModule"), "{message}");
    assert!(
        !message.contains("p\\\"q") && !message.contains("p\"q"),
        "{message}"
    );
}

#[test]
fn missing_brokers_gssapi_and_an_unknown_protocol_are_refused() {
    let none = settings(&parse("a=b"), Path::new("."), &[], Duration::from_secs(1));
    assert!(none
        .err()
        .unwrap()
        .to_string()
        .contains("bootstrap.servers"));
    let gssapi = "bootstrap.servers=k:1\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\n";
    let err = settings(&parse(gssapi), Path::new("."), &[], Duration::from_secs(1));
    assert!(err.err().unwrap().to_string().contains("GSSAPI"));
    let odd = "bootstrap.servers=k:1\nsecurity.protocol=TLS\n";
    let err = settings(&parse(odd), Path::new("."), &[], Duration::from_secs(1));
    assert!(err.err().unwrap().to_string().contains("security.protocol"));
}
