//! Unit tests of the Avro codec: schemas against structs, round trips with every optional field
//! set and unset, and a property test. Wire-level tests (golden bytes, framing) are in `wire.rs`.
//! Test code only; samples here are free to change (the golden event is pinned in `wire.rs`).
#![allow(clippy::unwrap_used, clippy::panic)]

mod reference;
mod wire;

use std::collections::{BTreeMap, HashMap};

use apache_avro::schema::{RecordSchema, Schema};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::core::agent::AgentId;
use crate::core::events::*;
use crate::core::money::{Currency, Micros};
use crate::core::policy::{PolicyId, TimeWindow, WindowType};

fn agent(n: u128) -> AgentId {
    AgentId(Uuid::from_u128(n))
}

pub(crate) fn metering_full() -> MeteringEvent {
    MeteringEvent {
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
        occurred_at: UnixMicros(1_714_000_000_123_456),
        request_id: Uuid::from_u128(2),
        correlation_id: Some("corr-é-1".into()),
        agent_id: agent(3),
        parent_id: Some(agent(4)),
        root_agent_id: agent(5),
        ancestor_ids: vec![agent(4), agent(5)],
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
        reservation_id: Uuid::from_u128(6),
        policy_ids: vec![PolicyId(Uuid::from_u128(7)), PolicyId(Uuid::from_u128(8))],
        pricebook_version: 42,
        instance: "gateway-0".into(),
        upstream_latency_micros: 812_345,
        metadata: BTreeMap::from([
            ("team".to_owned(), "platform".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
            ("a".to_owned(), String::new()),
        ]),
    }
}

pub(super) fn metering_minimal() -> MeteringEvent {
    MeteringEvent {
        correlation_id: None,
        parent_id: None,
        ancestor_ids: vec![],
        source: Source::Mcp,
        input_tokens: 0,
        cached_input_tokens: 0,
        cache_write_input_tokens: 0,
        output_tokens: 0,
        estimated: true,
        outcome: Outcome::Timeout,
        upstream_status: None,
        policy_ids: vec![],
        metadata: BTreeMap::new(),
        ..metering_full()
    }
}

fn evaluation(n: u128, window: TimeWindow) -> PolicyEvaluationRecord {
    PolicyEvaluationRecord {
        policy_id: PolicyId(Uuid::from_u128(n)),
        policy_version: 3,
        agent_id: agent(n + 1),
        time_window: window,
        window_start: UnixMicros(1_714_000_000_000_000),
        limit_micros: Micros(100_000_000),
        spent_micros: Micros(99_000_000),
        reserved_micros: Micros(500_000),
        remaining_micros: Micros(-10),
    }
}

pub(super) fn decision_full() -> PolicyDecision {
    PolicyDecision {
        event_id: Uuid::from_u128(11),
        occurred_at: UnixMicros(1_714_000_000_000_001),
        request_id: Uuid::from_u128(12),
        correlation_id: Some("c-1".into()),
        agent_id: agent(13),
        root_agent_id: agent(14),
        decision: DecisionKind::Deny,
        reason: Some("budget_exceeded".into()),
        provider: "anthropic".into(),
        resource: "claude-sonnet-4".into(),
        estimated_cost_micros: Micros(1_500_000),
        currency: Currency::parse("EUR").unwrap(),
        policies: vec![
            evaluation(15, TimeWindow::Daily),
            evaluation(17, TimeWindow::Total),
        ],
        allowlist_match: Some("anthropic:claude-*".into()),
        evaluation_micros: 37,
    }
}

pub(super) fn decision_minimal() -> PolicyDecision {
    PolicyDecision {
        correlation_id: None,
        decision: DecisionKind::Allow,
        reason: None,
        policies: vec![],
        allowlist_match: None,
        ..decision_full()
    }
}

pub(super) fn lifecycle_full() -> AgentLifecycle {
    AgentLifecycle {
        event_id: Uuid::from_u128(21),
        occurred_at: UnixMicros(0),
        agent_id: agent(22),
        parent_id: Some(agent(23)),
        root_agent_id: agent(23),
        action: LifecycleAction::Suspended,
        before: Some(r#"{"status":"active"}"#.into()),
        after: Some(r#"{"status":"suspended"}"#.into()),
        reason: Some("over budget".into()),
        actor: "admin@example.com".into(),
    }
}

pub(super) fn lifecycle_minimal() -> AgentLifecycle {
    AgentLifecycle {
        parent_id: None,
        root_agent_id: agent(22),
        action: LifecycleAction::Created,
        before: None,
        after: None,
        reason: None,
        ..lifecycle_full()
    }
}

fn snapshot(limit: i64) -> PolicySnapshot {
    PolicySnapshot {
        limit_micros: Micros(limit),
        currency: Currency::USD,
        time_window: TimeWindow::Monthly,
        window_type: WindowType::Rolling,
        allow: vec!["openai:gpt-4o*".into(), "mcp:search/*".into()],
        active: true,
    }
}

pub(super) fn change_full() -> PolicyChange {
    PolicyChange {
        event_id: Uuid::from_u128(31),
        occurred_at: UnixMicros(-5),
        policy_id: PolicyId(Uuid::from_u128(32)),
        agent_id: agent(33),
        root_agent_id: agent(34),
        version: 2,
        action: ChangeAction::Updated,
        before: Some(snapshot(1_000_000_000)),
        after: Some(PolicySnapshot {
            allow: vec![],
            active: false,
            ..snapshot(5)
        }),
        reason: Some("raise".into()),
        actor: "cli".into(),
    }
}

pub(super) fn change_minimal() -> PolicyChange {
    PolicyChange {
        action: ChangeAction::Deleted,
        before: None,
        after: None,
        reason: None,
        ..change_full()
    }
}

pub(crate) fn all_samples() -> Vec<Event> {
    vec![
        Event::Metering(metering_full()),
        Event::Metering(metering_minimal()),
        Event::Decision(decision_full()),
        Event::Decision(decision_minimal()),
        Event::Lifecycle(lifecycle_full()),
        Event::Lifecycle(lifecycle_minimal()),
        Event::Change(change_full()),
        Event::Change(change_minimal()),
    ]
}

fn round_trip<E: AvroRecord + PartialEq + std::fmt::Debug>(event: &E) {
    let datum = encode_datum(event).unwrap();
    assert_eq!(&decode_datum::<E>(&datum).unwrap(), event);
    assert_eq!(
        encode_datum(event).unwrap(),
        datum,
        "encoding is deterministic"
    );
}

#[test]
fn every_schema_parses_and_names_its_record_in_caracal_v1() {
    check_schemas().unwrap();
    for kind in EventKind::ALL {
        let Schema::Record(RecordSchema { name, .. }) = schema(kind).unwrap() else {
            panic!("{kind:?} is not a record");
        };
        assert_eq!(name.fullname(None), format!("caracal.v1.{}", kind.name()));
    }
}

fn field_names(kind: EventKind) -> Vec<String> {
    let Schema::Record(record) = schema(kind).unwrap() else {
        panic!("not a record")
    };
    record.fields.iter().map(|f| f.name.clone()).collect()
}

#[test]
fn fields_are_in_the_designed_order() {
    let metering = "event_id occurred_at request_id correlation_id agent_id parent_id \
        root_agent_id ancestor_ids source provider resource operation input_tokens \
        cached_input_tokens cache_write_input_tokens output_tokens calls cost_micros \
        reserved_micros currency estimated outcome upstream_status reservation_id policy_ids \
        pricebook_version instance upstream_latency_micros metadata";
    let decision = "event_id occurred_at request_id correlation_id agent_id root_agent_id \
        decision reason provider resource estimated_cost_micros currency policies \
        allowlist_match evaluation_micros";
    let lifecycle = "event_id occurred_at agent_id parent_id root_agent_id action before after \
        reason actor";
    let change = "event_id occurred_at policy_id agent_id root_agent_id version action before \
        after reason actor";
    for (kind, expected) in [
        (EventKind::MeteringEvent, metering),
        (EventKind::PolicyDecision, decision),
        (EventKind::AgentLifecycle, lifecycle),
        (EventKind::PolicyChange, change),
    ] {
        let expected: Vec<&str> = expected.split_whitespace().collect();
        assert_eq!(field_names(kind), expected, "{kind:?}");
    }
}

fn collect_enums(schema: &Schema, out: &mut BTreeMap<String, Vec<String>>) {
    match schema {
        Schema::Record(r) => r.fields.iter().for_each(|f| collect_enums(&f.schema, out)),
        Schema::Array(a) => collect_enums(&a.items, out),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_enums(v, out)),
        Schema::Enum(e) => {
            out.insert(e.name.name().to_owned(), e.symbols.clone());
        }
        _ => {}
    }
}

fn symbols<E: fields::Symbol>() -> Vec<String> {
    E::all().iter().map(|v| v.symbol().to_owned()).collect()
}

#[test]
fn rust_enums_list_the_schemas_symbols_in_order() {
    let mut enums = BTreeMap::new();
    for kind in EventKind::ALL {
        collect_enums(schema(kind).unwrap(), &mut enums);
    }
    let expected = BTreeMap::from([
        ("Source".to_owned(), symbols::<Source>()),
        ("Outcome".to_owned(), symbols::<Outcome>()),
        ("DecisionKind".to_owned(), symbols::<DecisionKind>()),
        ("LifecycleAction".to_owned(), symbols::<LifecycleAction>()),
        ("ChangeAction".to_owned(), symbols::<ChangeAction>()),
        ("TimeWindow".to_owned(), symbols::<TimeWindow>()),
        ("WindowType".to_owned(), symbols::<WindowType>()),
    ]);
    assert_eq!(enums, expected);
}

#[test]
fn metering_events_round_trip_with_optionals_set_and_unset() {
    round_trip(&metering_full());
    round_trip(&metering_minimal());
    for outcome in Outcome::ALL {
        round_trip(&MeteringEvent {
            outcome: *outcome,
            ..metering_full()
        });
    }
}

#[test]
fn policy_decisions_round_trip_with_optionals_set_and_unset() {
    round_trip(&decision_full());
    round_trip(&decision_minimal());
    let windows = <TimeWindow as fields::Symbol>::all();
    let policies = windows.iter().map(|w| evaluation(40, *w)).collect();
    round_trip(&PolicyDecision {
        policies,
        ..decision_full()
    });
}

#[test]
fn agent_lifecycles_round_trip_with_optionals_set_and_unset() {
    round_trip(&lifecycle_full());
    round_trip(&lifecycle_minimal());
    for action in LifecycleAction::ALL {
        round_trip(&AgentLifecycle {
            action: *action,
            ..lifecycle_full()
        });
    }
}

#[test]
fn policy_changes_round_trip_with_optionals_set_and_unset() {
    round_trip(&change_full());
    round_trip(&change_minimal());
    let only_after = PolicyChange {
        before: None,
        ..change_full()
    };
    round_trip(&only_after);
    for action in ChangeAction::ALL {
        round_trip(&PolicyChange {
            action: *action,
            ..change_full()
        });
    }
}

#[test]
fn events_round_trip_through_the_event_enum() {
    for event in all_samples() {
        let datum = encode_event(&event).unwrap();
        assert_eq!(decode_event(event.kind(), &datum).unwrap(), event);
    }
}

/// apache-avro's own writer; it walks maps in HashMap order, so only comparable for maps of
/// at most one entry.
fn apache_bytes(kind: EventKind, value: Value) -> Vec<u8> {
    let schema = schema(kind).unwrap();
    GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap()
}

fn value_of(event: &Event) -> Value {
    match event {
        Event::Metering(e) => e.to_avro(),
        Event::Decision(e) => e.to_avro(),
        Event::Lifecycle(e) => e.to_avro(),
        Event::Change(e) => e.to_avro(),
    }
    .unwrap()
}

#[test]
fn canonical_bytes_equal_apache_avro_writer_bytes() {
    let one_key = MeteringEvent {
        metadata: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        ..metering_full()
    };
    let mut events = all_samples();
    events.retain(|e| !matches!(e, Event::Metering(m) if m.metadata.len() > 1));
    events.push(Event::Metering(one_key));
    for event in events {
        let ours = encode_event(&event).unwrap();
        assert_eq!(
            ours,
            apache_bytes(event.kind(), value_of(&event)),
            "{:?}",
            event.kind()
        );
    }
}

#[test]
fn map_entries_are_written_in_key_order_whatever_the_insertion_order() {
    let keys = ["zeta", "alpha", "mu", "beta", "omega", "k1", "k10", "k2"];
    let mut encodings = Vec::new();
    for rotation in 0..keys.len() {
        let mut map = HashMap::new();
        for key in keys.iter().cycle().skip(rotation).take(keys.len()) {
            map.insert((*key).to_owned(), Value::String(key.to_uppercase()));
        }
        let bytes = reference::encode("test", &Value::Map(map)).unwrap();
        encodings.push(bytes);
    }
    assert!(encodings.windows(2).all(|w| w[0] == w[1]));
    let event = metering_full();
    let datum = encode_datum(&event).unwrap();
    let tail = b"\x06\x02a\x00\x06env\x08prod\x08team\x10platform\x00";
    assert!(datum.ends_with(tail), "metadata is written sorted by key");
}

#[test]
fn counts_beyond_an_avro_long_are_refused_not_wrapped() {
    let event = MeteringEvent {
        output_tokens: u64::MAX,
        ..metering_full()
    };
    let err = encode_datum(&event).unwrap_err();
    assert!(
        matches!(
            err,
            AvroError::Mismatch {
                field: "output_tokens",
                ..
            }
        ),
        "{err}"
    );
}

fn arb_uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn arb_text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn arb_count() -> impl Strategy<Value = u64> {
    0..=(i64::MAX as u64)
}

prop_compose! {
    fn arb_metering()(
        ids in (arb_uuid(), any::<i64>(), arb_uuid(), arb_uuid(), arb_uuid(), arb_uuid()),
        links in (
            proptest::option::of(arb_text()),
            proptest::option::of(arb_uuid()),
            proptest::collection::vec(arb_uuid(), 0..4),
            proptest::collection::vec(arb_uuid(), 0..4),
        ),
        names in (arb_text(), arb_text(), arb_text(), arb_text()),
        counts in (arb_count(), arb_count(), arb_count(), arb_count(), arb_count(), arb_count()),
        money in (any::<i64>(), any::<i64>(), prop::sample::select(vec!["USD", "EUR", "JPY"])),
        enums in (
            prop::sample::select(Source::ALL.to_vec()),
            prop::sample::select(Outcome::ALL.to_vec()),
            any::<bool>(),
            proptest::option::of(any::<u16>()),
            any::<i64>(),
        ),
        metadata in proptest::collection::btree_map(arb_text(), arb_text(), 0..5),
    ) -> MeteringEvent {
        MeteringEvent {
            event_id: ids.0,
            occurred_at: UnixMicros(ids.1),
            request_id: ids.2,
            correlation_id: links.0,
            agent_id: AgentId(ids.3),
            parent_id: links.1.map(AgentId),
            root_agent_id: AgentId(ids.4),
            ancestor_ids: links.2.into_iter().map(AgentId).collect(),
            source: enums.0,
            provider: names.0,
            resource: names.1,
            operation: names.2,
            input_tokens: counts.0,
            cached_input_tokens: counts.1,
            cache_write_input_tokens: counts.2,
            output_tokens: counts.3,
            calls: counts.4,
            cost_micros: Micros(money.0),
            reserved_micros: Micros(money.1),
            currency: Currency::parse(money.2).unwrap(),
            estimated: enums.2,
            outcome: enums.1,
            upstream_status: enums.3,
            reservation_id: ids.5,
            policy_ids: links.3.into_iter().map(PolicyId).collect(),
            pricebook_version: enums.4,
            instance: names.3,
            upstream_latency_micros: counts.5,
            metadata,
        }
    }
}

proptest! {
    #[test]
    fn any_metering_event_round_trips(event in arb_metering()) {
        let datum = encode_datum(&event).unwrap();
        prop_assert_eq!(&decode_datum::<MeteringEvent>(&datum).unwrap(), &event);
        if event.metadata.len() <= 1 {
            let value = event.to_avro().unwrap();
            prop_assert_eq!(datum, apache_bytes(EventKind::MeteringEvent, value));
        }
    }
}
