//! Each event struct as an Avro record, field by field, in the order of its `.avsc` (that
//! order defines the bytes): one `write_*` function per record serves both writers of
//! `writers.rs`, one `read_*` takes a decoded record apart. A field added to a struct must be
//! added to both, to the schema (at the end, with a default) and to the golden and interop
//! tests.

use std::collections::BTreeMap;

use apache_avro::types::Value;

use super::fields::RecordReader;
use super::writers::{DatumWriter, FieldWriter, ValueWriter};
use super::{AvroError, AvroRecord};
use crate::core::agent::AgentId;
use crate::core::events::{
    AgentLifecycle, EventKind, MeteringEvent, PolicyChange, PolicyDecision, PolicyEvaluationRecord,
    PolicySnapshot,
};
use crate::core::policy::PolicyId;

/// Implements `AvroRecord` for `$ty` from its field writer and its reader.
macro_rules! avro_record {
    ($ty:ty, $kind:ident, $write:ident, $read:ident) => {
        impl AvroRecord for $ty {
            const KIND: EventKind = EventKind::$kind;

            fn to_avro(&self) -> Result<Value, AvroError> {
                let mut w = ValueWriter::new(Self::KIND.name());
                $write(self, &mut w);
                w.finish()
            }

            fn write_datum(&self, prefix: &[u8]) -> Result<Vec<u8>, AvroError> {
                let mut w = DatumWriter::after(Self::KIND.name(), prefix);
                $write(self, &mut w);
                w.finish()
            }

            fn from_avro(value: Value) -> Result<Self, AvroError> {
                $read(value)
            }
        }
    };
}

avro_record!(MeteringEvent, MeteringEvent, write_metering, read_metering);
avro_record!(
    PolicyDecision,
    PolicyDecision,
    write_decision,
    read_decision
);
avro_record!(
    AgentLifecycle,
    AgentLifecycle,
    write_lifecycle,
    read_lifecycle
);
avro_record!(PolicyChange, PolicyChange, write_change, read_change);

fn write_metering<W: FieldWriter>(e: &MeteringEvent, w: &mut W) {
    w.uuid("event_id", e.event_id);
    w.time("occurred_at", e.occurred_at);
    w.uuid("request_id", e.request_id);
    w.opt_string("correlation_id", e.correlation_id.as_deref());
    w.uuid("agent_id", e.agent_id.0);
    w.opt_uuid("parent_id", e.parent_id.map(|a| a.0));
    w.uuid("root_agent_id", e.root_agent_id.0);
    w.uuids("ancestor_ids", e.ancestor_ids.iter().map(|a| a.0));
    w.symbol("source", e.source);
    w.string("provider", &e.provider);
    w.string("resource", &e.resource);
    w.string("operation", &e.operation);
    w.count("input_tokens", e.input_tokens);
    w.count("cached_input_tokens", e.cached_input_tokens);
    w.count("cache_write_input_tokens", e.cache_write_input_tokens);
    w.count("output_tokens", e.output_tokens);
    w.count("calls", e.calls);
    w.micros("cost_micros", e.cost_micros);
    w.micros("reserved_micros", e.reserved_micros);
    w.currency("currency", e.currency);
    w.boolean("estimated", e.estimated);
    w.symbol("outcome", e.outcome);
    w.opt_int("upstream_status", e.upstream_status.map(i32::from));
    w.uuid("reservation_id", e.reservation_id);
    w.uuids("policy_ids", e.policy_ids.iter().map(|p| p.0));
    w.long("pricebook_version", e.pricebook_version);
    w.string("instance", &e.instance);
    w.count("upstream_latency_micros", e.upstream_latency_micros);
    w.string_map("metadata", &e.metadata);
}

fn read_metering(value: Value) -> Result<MeteringEvent, AvroError> {
    let mut r = RecordReader::new(EventKind::MeteringEvent.name(), value)?;
    Ok(MeteringEvent {
        event_id: r.uuid("event_id")?,
        occurred_at: r.time("occurred_at")?,
        request_id: r.uuid("request_id")?,
        correlation_id: r.opt_string("correlation_id")?,
        agent_id: AgentId(r.uuid("agent_id")?),
        parent_id: r.opt_uuid("parent_id")?.map(AgentId),
        root_agent_id: AgentId(r.uuid("root_agent_id")?),
        ancestor_ids: r.uuids("ancestor_ids")?.into_iter().map(AgentId).collect(),
        source: r.symbol("source")?,
        provider: r.string("provider")?,
        resource: r.string("resource")?,
        operation: r.string("operation")?,
        input_tokens: r.count("input_tokens")?,
        cached_input_tokens: r.count("cached_input_tokens")?,
        cache_write_input_tokens: r.count("cache_write_input_tokens")?,
        output_tokens: r.count("output_tokens")?,
        calls: r.count("calls")?,
        cost_micros: r.micros("cost_micros")?,
        reserved_micros: r.micros("reserved_micros")?,
        currency: r.currency("currency")?,
        estimated: r.boolean("estimated")?,
        outcome: r.symbol("outcome")?,
        upstream_status: upstream_status(&mut r)?,
        reservation_id: r.uuid("reservation_id")?,
        policy_ids: r.uuids("policy_ids")?.into_iter().map(PolicyId).collect(),
        pricebook_version: r.long("pricebook_version")?,
        instance: r.string("instance")?,
        upstream_latency_micros: r.count("upstream_latency_micros")?,
        metadata: metadata(&mut r)?,
    })
}

fn upstream_status(r: &mut RecordReader) -> Result<Option<u16>, AvroError> {
    const FIELD: &str = "upstream_status";
    let mismatch = |detail: String| AvroError::Mismatch {
        record: EventKind::MeteringEvent.name(),
        field: FIELD,
        detail,
    };
    match r.optional(FIELD)? {
        None => Ok(None),
        Some(Value::Int(n)) => u16::try_from(n)
            .map(Some)
            .map_err(|_| mismatch(format!("{n} is not an HTTP status"))),
        Some(other) => Err(mismatch(format!("expected an int, found {other:?}"))),
    }
}

fn metadata(r: &mut RecordReader) -> Result<BTreeMap<String, String>, AvroError> {
    const FIELD: &str = "metadata";
    let entries = r.string_map(FIELD)?;
    entries
        .into_iter()
        .map(|(key, value)| Ok((key, r.as_string(FIELD, value)?)))
        .collect()
}

const EVALUATION: &str = "PolicyEvaluationRecord";

fn write_evaluation<W: FieldWriter>(p: &PolicyEvaluationRecord, w: &mut W) {
    w.uuid("policy_id", p.policy_id.0);
    w.long("policy_version", p.policy_version);
    w.uuid("agent_id", p.agent_id.0);
    w.symbol("time_window", p.time_window);
    w.time("window_start", p.window_start);
    w.micros("limit_micros", p.limit_micros);
    w.micros("spent_micros", p.spent_micros);
    w.micros("reserved_micros", p.reserved_micros);
    w.micros("remaining_micros", p.remaining_micros);
}

fn read_evaluation(value: Value) -> Result<PolicyEvaluationRecord, AvroError> {
    let mut r = RecordReader::new(EVALUATION, value)?;
    Ok(PolicyEvaluationRecord {
        policy_id: PolicyId(r.uuid("policy_id")?),
        policy_version: r.long("policy_version")?,
        agent_id: AgentId(r.uuid("agent_id")?),
        time_window: r.symbol("time_window")?,
        window_start: r.time("window_start")?,
        limit_micros: r.micros("limit_micros")?,
        spent_micros: r.micros("spent_micros")?,
        reserved_micros: r.micros("reserved_micros")?,
        remaining_micros: r.micros("remaining_micros")?,
    })
}

fn write_decision<W: FieldWriter>(e: &PolicyDecision, w: &mut W) {
    w.uuid("event_id", e.event_id);
    w.time("occurred_at", e.occurred_at);
    w.uuid("request_id", e.request_id);
    w.opt_string("correlation_id", e.correlation_id.as_deref());
    w.uuid("agent_id", e.agent_id.0);
    w.uuid("root_agent_id", e.root_agent_id.0);
    w.symbol("decision", e.decision);
    w.opt_string("reason", e.reason.as_deref());
    w.string("provider", &e.provider);
    w.string("resource", &e.resource);
    w.micros("estimated_cost_micros", e.estimated_cost_micros);
    w.currency("currency", e.currency);
    w.records("policies", EVALUATION, &e.policies, write_evaluation);
    w.opt_string("allowlist_match", e.allowlist_match.as_deref());
    w.count("evaluation_micros", e.evaluation_micros);
}

fn read_decision(value: Value) -> Result<PolicyDecision, AvroError> {
    let mut r = RecordReader::new(EventKind::PolicyDecision.name(), value)?;
    Ok(PolicyDecision {
        event_id: r.uuid("event_id")?,
        occurred_at: r.time("occurred_at")?,
        request_id: r.uuid("request_id")?,
        correlation_id: r.opt_string("correlation_id")?,
        agent_id: AgentId(r.uuid("agent_id")?),
        root_agent_id: AgentId(r.uuid("root_agent_id")?),
        decision: r.symbol("decision")?,
        reason: r.opt_string("reason")?,
        provider: r.string("provider")?,
        resource: r.string("resource")?,
        estimated_cost_micros: r.micros("estimated_cost_micros")?,
        currency: r.currency("currency")?,
        policies: r
            .array("policies")?
            .into_iter()
            .map(read_evaluation)
            .collect::<Result<_, _>>()?,
        allowlist_match: r.opt_string("allowlist_match")?,
        evaluation_micros: r.count("evaluation_micros")?,
    })
}

fn write_lifecycle<W: FieldWriter>(e: &AgentLifecycle, w: &mut W) {
    w.uuid("event_id", e.event_id);
    w.time("occurred_at", e.occurred_at);
    w.uuid("agent_id", e.agent_id.0);
    w.opt_uuid("parent_id", e.parent_id.map(|a| a.0));
    w.uuid("root_agent_id", e.root_agent_id.0);
    w.symbol("action", e.action);
    w.opt_string("before", e.before.as_deref());
    w.opt_string("after", e.after.as_deref());
    w.opt_string("reason", e.reason.as_deref());
    w.string("actor", &e.actor);
}

fn read_lifecycle(value: Value) -> Result<AgentLifecycle, AvroError> {
    let mut r = RecordReader::new(EventKind::AgentLifecycle.name(), value)?;
    Ok(AgentLifecycle {
        event_id: r.uuid("event_id")?,
        occurred_at: r.time("occurred_at")?,
        agent_id: AgentId(r.uuid("agent_id")?),
        parent_id: r.opt_uuid("parent_id")?.map(AgentId),
        root_agent_id: AgentId(r.uuid("root_agent_id")?),
        action: r.symbol("action")?,
        before: r.opt_string("before")?,
        after: r.opt_string("after")?,
        reason: r.opt_string("reason")?,
        actor: r.string("actor")?,
    })
}

const SNAPSHOT: &str = "PolicySnapshot";

fn write_snapshot<W: FieldWriter>(s: &PolicySnapshot, w: &mut W) {
    w.micros("limit_micros", s.limit_micros);
    w.currency("currency", s.currency);
    w.symbol("time_window", s.time_window);
    w.symbol("window_type", s.window_type);
    w.strings("allow", &s.allow);
    w.boolean("active", s.active);
}

fn read_snapshot(value: Option<Value>) -> Result<Option<PolicySnapshot>, AvroError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let mut r = RecordReader::new(SNAPSHOT, value)?;
    Ok(Some(PolicySnapshot {
        limit_micros: r.micros("limit_micros")?,
        currency: r.currency("currency")?,
        time_window: r.symbol("time_window")?,
        window_type: r.symbol("window_type")?,
        allow: r.strings("allow")?,
        active: r.boolean("active")?,
    }))
}

fn write_change<W: FieldWriter>(e: &PolicyChange, w: &mut W) {
    w.uuid("event_id", e.event_id);
    w.time("occurred_at", e.occurred_at);
    w.uuid("policy_id", e.policy_id.0);
    w.uuid("agent_id", e.agent_id.0);
    w.uuid("root_agent_id", e.root_agent_id.0);
    w.long("version", e.version);
    w.symbol("action", e.action);
    w.opt_record("before", SNAPSHOT, e.before.as_ref(), write_snapshot);
    w.opt_record("after", SNAPSHOT, e.after.as_ref(), write_snapshot);
    w.opt_string("reason", e.reason.as_deref());
    w.string("actor", &e.actor);
}

fn read_change(value: Value) -> Result<PolicyChange, AvroError> {
    let mut r = RecordReader::new(EventKind::PolicyChange.name(), value)?;
    Ok(PolicyChange {
        event_id: r.uuid("event_id")?,
        occurred_at: r.time("occurred_at")?,
        policy_id: PolicyId(r.uuid("policy_id")?),
        agent_id: AgentId(r.uuid("agent_id")?),
        root_agent_id: AgentId(r.uuid("root_agent_id")?),
        version: r.long("version")?,
        action: r.symbol("action")?,
        before: read_snapshot(r.optional("before")?)?,
        after: read_snapshot(r.optional("after")?)?,
        reason: r.opt_string("reason")?,
        actor: r.string("actor")?,
    })
}
