//! Interop: Python's fastavro (an implementation we did not write) decodes our datums and
//! single-object messages to exactly the values of the Rust structs, and computes our fingerprints.
//! Needs `CARACAL_PYTHON` pointing at a Python with fastavro; without it the test fails, never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value as Json};
use uuid::Uuid;

use caracal::bus::avro::{canonical_form, encode_event, fingerprint, frame, schema_json, Framing};
use caracal::core::agent::AgentId;
use caracal::core::events::*;
use caracal::core::money::{Currency, Micros};
use caracal::core::policy::{PolicyId, PolicySpec, TimeWindow, WindowType};

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs tests/python/avro_decode.py with `CARACAL_PYTHON`; fails loudly on anything but success.
fn run_python(args: &[&Path]) -> String {
    let python = std::env::var_os("CARACAL_PYTHON").unwrap_or_else(|| {
        panic!(
            "CARACAL_PYTHON is not set. The Avro interop test needs a Python 3 with fastavro: \
             `python3 -m venv /tmp/venv && /tmp/venv/bin/pip install fastavro` then \
             `CARACAL_PYTHON=/tmp/venv/bin/python cargo test`"
        )
    });
    let script = repo_path("tests/python/avro_decode.py");
    let output = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run CARACAL_PYTHON={python:?}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}): {stderr}",
        script.display(),
        output.status
    );
    String::from_utf8(output.stdout).unwrap()
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn metering_full() -> MeteringEvent {
    MeteringEvent {
        event_id: Uuid::now_v7(),
        occurred_at: UnixMicros(1_714_000_000_123_456),
        request_id: Uuid::new_v4(),
        correlation_id: Some("corr-é-✓".into()),
        agent_id: AgentId(id(3)),
        parent_id: Some(AgentId(id(4))),
        root_agent_id: AgentId(id(5)),
        ancestor_ids: vec![AgentId(id(4)), AgentId(id(5))],
        source: Source::Gateway,
        provider: "openai".into(),
        resource: "gpt-4o".into(),
        operation: "chat.completions".into(),
        input_tokens: 1200,
        cached_input_tokens: 300,
        cache_write_input_tokens: 64,
        output_tokens: 450,
        calls: 1,
        cost_micros: Micros(7_875),
        reserved_micros: Micros(20_000),
        currency: Currency::USD,
        estimated: false,
        outcome: Outcome::ClientDisconnected,
        upstream_status: Some(200),
        reservation_id: id(6),
        policy_ids: vec![PolicyId(id(7)), PolicyId(id(8))],
        pricebook_version: 42,
        instance: "gateway-0".into(),
        upstream_latency_micros: 812_345,
        metadata: BTreeMap::from([
            ("team".to_owned(), "platform".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
        ]),
    }
}

fn metering_minimal() -> MeteringEvent {
    MeteringEvent {
        correlation_id: None,
        parent_id: None,
        ancestor_ids: vec![],
        source: Source::Mcp,
        resource: "search/web".into(),
        operation: "tools/call".into(),
        input_tokens: i64::MAX as u64,
        cost_micros: Micros(i64::MIN),
        reserved_micros: Micros(-1),
        currency: Currency::parse("JPY").unwrap(),
        estimated: true,
        outcome: Outcome::UpstreamError,
        upstream_status: None,
        policy_ids: vec![],
        metadata: BTreeMap::new(),
        ..metering_full()
    }
}

fn metering_json(e: &MeteringEvent) -> Json {
    json!({
        "event_id": e.event_id.to_string(),
        "occurred_at": e.occurred_at.0,
        "request_id": e.request_id.to_string(),
        "correlation_id": e.correlation_id,
        "agent_id": e.agent_id.to_string(),
        "parent_id": e.parent_id.map(|a| a.to_string()),
        "root_agent_id": e.root_agent_id.to_string(),
        "ancestor_ids": e.ancestor_ids.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "source": e.source.as_str(),
        "provider": e.provider,
        "resource": e.resource,
        "operation": e.operation,
        "input_tokens": e.input_tokens,
        "cached_input_tokens": e.cached_input_tokens,
        "cache_write_input_tokens": e.cache_write_input_tokens,
        "output_tokens": e.output_tokens,
        "calls": e.calls,
        "cost_micros": e.cost_micros.0,
        "reserved_micros": e.reserved_micros.0,
        "currency": e.currency.as_str(),
        "estimated": e.estimated,
        "outcome": e.outcome.as_str(),
        "upstream_status": e.upstream_status,
        "reservation_id": e.reservation_id.to_string(),
        "policy_ids": e.policy_ids.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "pricebook_version": e.pricebook_version,
        "instance": e.instance,
        "upstream_latency_micros": e.upstream_latency_micros,
        "metadata": e.metadata,
    })
}

fn decision_full() -> PolicyDecision {
    let evaluation = PolicyEvaluationRecord {
        policy_id: PolicyId(id(15)),
        policy_version: 3,
        agent_id: AgentId(id(16)),
        time_window: TimeWindow::Weekly,
        window_start: UnixMicros(1_713_744_000_000_000),
        limit_micros: Micros(100_000_000),
        spent_micros: Micros(99_000_000),
        reserved_micros: Micros(500_000),
        remaining_micros: Micros(-10),
    };
    PolicyDecision {
        event_id: id(11),
        occurred_at: UnixMicros(1_714_000_000_000_001),
        request_id: id(12),
        correlation_id: Some("c-1".into()),
        agent_id: AgentId(id(13)),
        root_agent_id: AgentId(id(14)),
        decision: DecisionKind::Deny,
        reason: Some("budget_exceeded".into()),
        provider: "anthropic".into(),
        resource: "claude-sonnet-4".into(),
        estimated_cost_micros: Micros(1_500_000),
        currency: Currency::parse("EUR").unwrap(),
        policies: vec![
            evaluation.clone(),
            PolicyEvaluationRecord {
                time_window: TimeWindow::Total,
                ..evaluation
            },
        ],
        allowlist_match: Some("anthropic:claude-*".into()),
        evaluation_micros: 37,
    }
}

fn decision_minimal() -> PolicyDecision {
    PolicyDecision {
        correlation_id: None,
        decision: DecisionKind::Allow,
        reason: None,
        policies: vec![],
        allowlist_match: None,
        ..decision_full()
    }
}

fn window_symbol(w: TimeWindow) -> String {
    w.as_str().to_ascii_uppercase()
}

fn decision_json(e: &PolicyDecision) -> Json {
    let policies: Vec<Json> = e
        .policies
        .iter()
        .map(|p| {
            json!({
                "policy_id": p.policy_id.to_string(),
                "policy_version": p.policy_version,
                "agent_id": p.agent_id.to_string(),
                "time_window": window_symbol(p.time_window),
                "window_start": p.window_start.0,
                "limit_micros": p.limit_micros.0,
                "spent_micros": p.spent_micros.0,
                "reserved_micros": p.reserved_micros.0,
                "remaining_micros": p.remaining_micros.0,
            })
        })
        .collect();
    json!({
        "event_id": e.event_id.to_string(),
        "occurred_at": e.occurred_at.0,
        "request_id": e.request_id.to_string(),
        "correlation_id": e.correlation_id,
        "agent_id": e.agent_id.to_string(),
        "root_agent_id": e.root_agent_id.to_string(),
        "decision": e.decision.as_str(),
        "reason": e.reason,
        "provider": e.provider,
        "resource": e.resource,
        "estimated_cost_micros": e.estimated_cost_micros.0,
        "currency": e.currency.as_str(),
        "policies": policies,
        "allowlist_match": e.allowlist_match,
        "evaluation_micros": e.evaluation_micros,
    })
}

fn lifecycle_full() -> AgentLifecycle {
    AgentLifecycle {
        event_id: id(21),
        occurred_at: UnixMicros(0),
        agent_id: AgentId(id(22)),
        parent_id: Some(AgentId(id(23))),
        root_agent_id: AgentId(id(23)),
        action: LifecycleAction::KeyRevoked,
        before: Some(r#"{"status":"active"}"#.into()),
        after: Some(r#"{"status":"suspended"}"#.into()),
        reason: Some("rotated".into()),
        actor: "admin@example.com".into(),
    }
}

fn lifecycle_minimal() -> AgentLifecycle {
    AgentLifecycle {
        parent_id: None,
        action: LifecycleAction::Created,
        before: None,
        after: None,
        reason: None,
        ..lifecycle_full()
    }
}

fn lifecycle_json(e: &AgentLifecycle) -> Json {
    json!({
        "event_id": e.event_id.to_string(),
        "occurred_at": e.occurred_at.0,
        "agent_id": e.agent_id.to_string(),
        "parent_id": e.parent_id.map(|a| a.to_string()),
        "root_agent_id": e.root_agent_id.to_string(),
        "action": e.action.as_str(),
        "before": e.before,
        "after": e.after,
        "reason": e.reason,
        "actor": e.actor,
    })
}

fn snapshot(limit: i64) -> PolicySnapshot {
    PolicySpec {
        limit_micros: Micros(limit),
        currency: Currency::USD,
        time_window: TimeWindow::Monthly,
        window_type: WindowType::Rolling,
        allow: vec!["openai:gpt-4o*".into(), "mcp:search/*".into()],
        active: true,
    }
}

fn change_full() -> PolicyChange {
    PolicyChange {
        event_id: id(31),
        occurred_at: UnixMicros(1_714_000_000_000_000),
        policy_id: PolicyId(id(32)),
        agent_id: AgentId(id(33)),
        root_agent_id: AgentId(id(34)),
        version: 2,
        action: ChangeAction::Updated,
        before: Some(snapshot(1_000_000_000)),
        after: Some(PolicySpec {
            allow: vec![],
            active: false,
            time_window: TimeWindow::Hourly,
            window_type: WindowType::Calendar,
            ..snapshot(5)
        }),
        reason: Some("raise".into()),
        actor: "cli".into(),
    }
}

fn change_minimal() -> PolicyChange {
    PolicyChange {
        action: ChangeAction::Deleted,
        before: None,
        after: None,
        reason: None,
        ..change_full()
    }
}

fn snapshot_json(s: &Option<PolicySnapshot>) -> Json {
    match s {
        None => Json::Null,
        Some(s) => json!({
            "limit_micros": s.limit_micros.0,
            "currency": s.currency.as_str(),
            "time_window": window_symbol(s.time_window),
            "window_type": s.window_type.as_str().to_ascii_uppercase(),
            "allow": s.allow,
            "active": s.active,
        }),
    }
}

fn change_json(e: &PolicyChange) -> Json {
    json!({
        "event_id": e.event_id.to_string(),
        "occurred_at": e.occurred_at.0,
        "policy_id": e.policy_id.to_string(),
        "agent_id": e.agent_id.to_string(),
        "root_agent_id": e.root_agent_id.to_string(),
        "version": e.version,
        "action": e.action.as_str(),
        "before": snapshot_json(&e.before),
        "after": snapshot_json(&e.after),
        "reason": e.reason,
        "actor": e.actor,
    })
}

/// (file name without extension, event, the values fastavro must report)
fn cases() -> Vec<(&'static str, Event, Json)> {
    let (m1, m2) = (metering_full(), metering_minimal());
    let (d1, d2) = (decision_full(), decision_minimal());
    let (l1, l2) = (lifecycle_full(), lifecycle_minimal());
    let (c1, c2) = (change_full(), change_minimal());
    vec![
        (
            "metering-event.full",
            Event::Metering(m1.clone()),
            metering_json(&m1),
        ),
        (
            "metering-event.minimal",
            Event::Metering(m2.clone()),
            metering_json(&m2),
        ),
        (
            "policy-decision.full",
            Event::Decision(d1.clone()),
            decision_json(&d1),
        ),
        (
            "policy-decision.minimal",
            Event::Decision(d2.clone()),
            decision_json(&d2),
        ),
        (
            "agent-lifecycle.full",
            Event::Lifecycle(l1.clone()),
            lifecycle_json(&l1),
        ),
        (
            "agent-lifecycle.minimal",
            Event::Lifecycle(l2.clone()),
            lifecycle_json(&l2),
        ),
        (
            "policy-change.full",
            Event::Change(c1.clone()),
            change_json(&c1),
        ),
        (
            "policy-change.minimal",
            Event::Change(c2.clone()),
            change_json(&c2),
        ),
    ]
}

fn decoded_by_name(stdout: &str) -> BTreeMap<String, Json> {
    let mut out = BTreeMap::new();
    for line in stdout.lines() {
        let Json::Object(object) = serde_json::from_str::<Json>(line).unwrap() else {
            panic!("not a JSON object: {line}")
        };
        out.extend(object);
    }
    out
}

#[test]
fn fastavro_decodes_every_event_to_the_rust_values() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    for (name, event, _) in &cases {
        let datum = encode_event(event).unwrap();
        std::fs::write(dir.path().join(format!("{name}.bin")), &datum).unwrap();
        let message = frame(event.kind(), Framing::SingleObject, &datum).unwrap();
        std::fs::write(dir.path().join(format!("framed.{name}.so")), message).unwrap();
    }
    let decoded = decoded_by_name(&run_python(&[dir.path(), &repo_path("schemas")]));
    assert_eq!(
        decoded.len(),
        2 * cases.len(),
        "one line per file: {decoded:#?}"
    );
    for (name, _, expected) in &cases {
        assert_eq!(decoded.get(*name), Some(expected), "datum {name}");
        let framed = format!("framed.{name}");
        assert_eq!(decoded.get(&framed), Some(expected), "single-object {name}");
    }
}

#[test]
fn fastavro_computes_our_canonical_forms_and_fingerprints() {
    let stdout = run_python(&[Path::new("--fingerprints"), &repo_path("schemas")]);
    let theirs: Json = serde_json::from_str(stdout.trim()).unwrap();
    for kind in EventKind::ALL {
        let stem = match kind {
            EventKind::MeteringEvent => "metering-event",
            EventKind::PolicyDecision => "policy-decision",
            EventKind::AgentLifecycle => "agent-lifecycle",
            EventKind::PolicyChange => "policy-change",
        };
        let ours: String = fingerprint(kind)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            theirs[stem]["canonical_form"],
            canonical_form(kind).unwrap(),
            "{stem}"
        );
        assert_eq!(theirs[stem]["fingerprint"], ours, "{stem}");
        assert!(schema_json(kind).contains(&format!("\"name\": \"{}\"", kind.name())));
    }
}
