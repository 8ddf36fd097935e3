//! The audit role on the real binary: admin changes reach the audit log exactly once and are
//! shipped to a JSON-lines file, a UDP syslog socket and a TCP syslog socket (RFC 5424, RFC
//! 6587 octet counting); `caracal audit export` prints the same records; a clean restart
//! resumes every cursor, so nothing is logged or written to the file twice.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{request, wait_for, Env, Server};

const DEADLINE: Duration = Duration::from_secs(30);
const ADMIN_TOPICS: [&str; 2] = ["caracal.agent.lifecycle", "caracal.policy.changes"];

fn create_agent(env: &Env, name: &str) -> String {
    let args = [
        "agent", "create", "--name", name, "--type", "worker", "--output", "json",
    ];
    env.cli(&args).json()["id"].as_str().unwrap().to_owned()
}

fn create_policy(env: &Env, agent: &str) {
    env.cli(&[
        "policy",
        "create",
        "--agent-id",
        agent,
        "--limit",
        "5.00",
        "--time-window",
        "daily",
        "--output",
        "json",
    ])
    .ok();
}

/// Every admin event on the bus (by event_id, with its type), once `count` are there.
fn admin_events(env: &Env, server: &Server, count: usize) -> BTreeMap<String, &'static str> {
    let token = std::fs::read_to_string(env.data_dir().join("admin-token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    wait_for("admin events on the bus", DEADLINE, || {
        let mut events = BTreeMap::new();
        for (topic, kind) in ADMIN_TOPICS.iter().zip(["AgentLifecycle", "PolicyChange"]) {
            let url = server.admin_url(&format!("/v1/events/{topic}?limit=1000"));
            let response = request("GET", &url, &[("Authorization", &auth)], None);
            assert_eq!(response.status, 200, "{}", response.body);
            for event in response.json().as_array().unwrap() {
                events.insert(event["event_id"].as_str().unwrap().to_owned(), kind);
            }
        }
        (events.len() >= count).then_some(events)
    })
}

/// The file's lines as JSON records.
fn file_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// How many records of the file carry each event_id.
fn counts(records: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        *counts
            .entry(r["event_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

fn wait_for_file(path: &Path, events: &BTreeMap<String, &str>) -> Vec<Value> {
    wait_for("every event in the file export", DEADLINE, || {
        let records = file_records(path);
        let seen = counts(&records);
        events
            .keys()
            .all(|id| seen.contains_key(id))
            .then_some(records)
    })
}

/// Splits an RFC 5424 message into (PRI+version, MSGID, MSG) and checks the fixed fields.
fn check_syslog(message: &str, events: &BTreeMap<String, &str>) -> String {
    assert!(message.starts_with("<134>1 "), "{message}");
    let fields: Vec<&str> = message.splitn(8, ' ').collect();
    assert_eq!(fields.len(), 8, "{message}");
    assert!(fields[1].ends_with('Z'), "timestamp in UTC: {message}");
    assert_eq!((fields[3], fields[4], fields[6]), ("caracal", "-", "-"));
    let json: Value = serde_json::from_str(fields[7]).unwrap();
    let id = json["event_id"].as_str().unwrap().to_owned();
    assert_eq!(Some(&fields[5]), events.get(&id), "MSGID is the event type");
    assert_eq!(json["event"]["event_id"], id.as_str());
    id
}

/// Reads UDP datagrams until every event has arrived.
fn wait_for_udp(socket: &UdpSocket, events: &BTreeMap<String, &str>) {
    let mut seen = BTreeSet::new();
    let mut buf = vec![0u8; 65_536];
    wait_for("every event over UDP syslog", DEADLINE, || {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let message = std::str::from_utf8(&buf[..n]).unwrap();
                seen.insert(check_syslog(message, events));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("udp: {e}"),
        }
        events.keys().all(|id| seen.contains(id)).then_some(())
    });
}

/// Accepts the exporter's TCP connection and reads octet-counted frames until every event
/// has arrived.
fn wait_for_tcp(listener: &TcpListener, events: &BTreeMap<String, &str>) {
    listener.set_nonblocking(true).unwrap();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::new();
    let mut seen = BTreeSet::new();
    wait_for("every event over TCP syslog", DEADLINE, || {
        match &mut stream {
            None => match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    stream = Some(s);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept: {e}"),
            },
            Some(s) => {
                let mut chunk = [0u8; 16_384];
                match s.read(&mut chunk) {
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => panic!("tcp read: {e}"),
                }
            }
        }
        // RFC 6587 octet counting: MSG-LEN SP SYSLOG-MSG.
        while let Some(space) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..space]).unwrap().parse().unwrap();
            if buf.len() < space + 1 + len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..space + 1 + len).skip(space + 1).collect();
            seen.insert(check_syslog(std::str::from_utf8(&frame).unwrap(), events));
        }
        events.keys().all(|id| seen.contains(id)).then_some(())
    });
}

fn export_cli(env: &Env, start: &str, end: &str) -> String {
    env.cli(&["audit", "export", "--start", start, "--end", end])
        .ok()
        .to_owned()
}

#[test]
fn admin_events_are_logged_once_shipped_to_file_and_syslog_and_survive_a_restart() {
    let env = Env::new();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let file = env.dir.path().join("exports/audit.jsonl");
    let yaml = format!(
        "consumers:\n  auditLogger:\n    destinations:\n      - file://{}\n      - syslog://{}\n      - syslog+tcp://{}\n",
        file.display(),
        udp.local_addr().unwrap(),
        tcp.local_addr().unwrap(),
    );
    std::fs::write(env.dir.path().join("caracal.yaml"), yaml).unwrap();

    let server = env.serve(&["--role", "admin", "--role", "audit"]);
    let first = create_agent(&env, "auditor-1");
    create_agent(&env, "auditor-2");
    create_policy(&env, &first);
    let events = admin_events(&env, &server, 3);
    assert_eq!(events.len(), 3);

    // (a) Every admin event is in the file exactly once, as a complete record.
    let records = wait_for_file(&file, &events);
    assert!(counts(&records).values().all(|n| *n == 1), "{records:?}");
    for r in &records {
        let id = r["event_id"].as_str().unwrap();
        assert_eq!(r["event_type"], events[id], "{r}");
        assert!(ADMIN_TOPICS.contains(&r["topic"].as_str().unwrap()), "{r}");
        assert!(r["partition"].is_i64() && r["offset"].is_i64(), "{r}");
        assert!(r["occurred_at"].as_str().unwrap().ends_with('Z'), "{r}");
        assert!(r["root_agent_id"].is_string() && r["agent_id"].is_string());
        assert_eq!(r["event"]["event_id"], id);
    }

    // (b) The same records as RFC 5424 messages over UDP and over TCP.
    wait_for_udp(&udp, &events);
    wait_for_tcp(&tcp, &events);

    // (c) `audit export` prints the stored records of the range: the same lines as the file.
    // An end date includes its whole day.
    let dates: BTreeSet<&str> = records
        .iter()
        .map(|r| &r["occurred_at"].as_str().unwrap()[..10])
        .collect();
    let (start, end) = (*dates.first().unwrap(), *dates.last().unwrap());
    let exported = export_cli(&env, start, end);
    assert_eq!(exported, std::fs::read_to_string(&file).unwrap());
    assert_eq!(export_cli(&env, "1999-01-01", "1999-12-31"), "");
    let syslog = env
        .cli(&[
            "audit", "export", "--start", start, "--end", end, "--format", "syslog",
        ])
        .ok()
        .to_owned();
    let ids: BTreeSet<String> = syslog.lines().map(|l| check_syslog(l, &events)).collect();
    assert_eq!(ids.len(), 3);

    let metrics = request("GET", &server.telemetry_url("/metrics"), &[], None).body;
    assert!(
        metrics.contains("caracal_audit_exported_records_total"),
        "{metrics}"
    );

    // (d) A clean restart resumes the consumer and the export cursors: the new event is
    // logged and written once, the old ones not again.
    assert_eq!(server.terminate(), 0);
    let server = env.serve(&["--role", "admin", "--role", "audit"]);
    create_agent(&env, "auditor-3");
    let events = admin_events(&env, &server, 4);
    let records = wait_for_file(&file, &events);
    let seen = counts(&records);
    assert_eq!(seen.len(), 4);
    assert!(seen.values().all(|n| *n == 1), "exported twice: {seen:?}");
    let exported = export_cli(&env, start, "2999-12-31");
    assert_eq!(exported.lines().count(), 4, "logged twice: {exported}");
    assert_eq!(server.terminate(), 0);
}

#[test]
fn audit_export_refuses_a_range_that_ends_before_it_starts() {
    let env = Env::new();
    let run = env.cli(&[
        "audit",
        "export",
        "--start",
        "2026-02-02",
        "--end",
        "2026-02-01",
    ]);
    assert!(run.user_error().contains("--end must be after --start"));
}

#[test]
fn a_failing_destination_is_counted_and_holds_up_neither_the_log_nor_other_destinations() {
    let env = Env::new();
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let file = env.dir.path().join("audit.jsonl");
    let yaml = format!(
        "consumers:\n  auditLogger:\n    destinations:\n      - syslog+tcp://{closed}\n      - file://{}\n",
        file.display(),
    );
    std::fs::write(env.dir.path().join("caracal.yaml"), yaml).unwrap();
    let server = env.serve(&["--role", "admin", "--role", "audit"]);
    create_agent(&env, "auditor-1");
    let events = admin_events(&env, &server, 1);
    wait_for_file(&file, &events);
    let label =
        format!("caracal_audit_export_failures_total{{destination=\"syslog+tcp://{closed}\"}}");
    wait_for("the failure to be counted", DEADLINE, || {
        let metrics = request("GET", &server.telemetry_url("/metrics"), &[], None).body;
        metrics
            .lines()
            .find(|l| l.starts_with(&label))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .filter(|n| *n >= 1.0)
    });
    assert!(server.log().contains("audit export failed; retrying"));
    assert_eq!(server.terminate(), 0);
}

#[test]
fn several_export_formats_for_a_file_destination_are_refused_not_half_applied() {
    let env = Env::new();
    let file = env.dir.path().join("audit.log");
    std::fs::write(
        env.dir.path().join("caracal.yaml"),
        format!(
            "consumers:\n  auditLogger:\n    exportFormats: [json, syslog]\n    destinations: [\"file://{}\"]\n",
            file.display()
        ),
    )
    .unwrap();
    let refused = env.cli_within(&["serve", "--role", "audit"], Duration::from_secs(20));
    let line = refused.user_error();
    assert!(
        line.contains("consumers.auditLogger.exportFormats lists several formats"),
        "{line}"
    );
    assert!(!file.exists(), "the destination was written");
}
