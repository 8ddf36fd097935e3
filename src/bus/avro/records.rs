//! Each event struct as an Avro record, field by field, in the order of its `.avsc` (that
//! order defines the bytes). A field added to a struct must be added here, to the schema (at
//! the end, with a default) and to the golden and interop tests.

use std::collections::BTreeMap;

use apache_avro::types::Value;

use super::fields::{null, some, RecordReader, RecordWriter};
use super::{AvroError, AvroRecord};
use crate::core::agent::AgentId;
use crate::core::events::{
    AgentLifecycle, EventKind, MeteringEvent, PolicyChange, PolicyDecision, PolicyEvaluationRecord,
    PolicySnapshot,
};
use crate::core::policy::PolicyId;

impl AvroRecord for MeteringEvent {
    const KIND: EventKind = EventKind::MeteringEvent;

    fn to_avro(&self) -> Result<Value, AvroError> {
        let mut w = RecordWriter::new(Self::KIND.name());
        w.uuid("event_id", self.event_id);
        w.time("occurred_at", self.occurred_at);
        w.uuid("request_id", self.request_id);
        w.opt_string("correlation_id", self.correlation_id.as_deref());
        w.uuid("agent_id", self.agent_id.0);
        w.opt_uuid("parent_id", self.parent_id.map(|a| a.0));
        w.uuid("root_agent_id", self.root_agent_id.0);
        w.uuids("ancestor_ids", self.ancestor_ids.iter().map(|a| a.0));
        w.symbol("source", self.source);
        w.string("provider", &self.provider);
        w.string("resource", &self.resource);
        w.string("operation", &self.operation);
        w.count("input_tokens", self.input_tokens);
        w.count("cached_input_tokens", self.cached_input_tokens);
        w.count("cache_write_input_tokens", self.cache_write_input_tokens);
        w.count("output_tokens", self.output_tokens);
        w.count("calls", self.calls);
        w.micros("cost_micros", self.cost_micros);
        w.micros("reserved_micros", self.reserved_micros);
        w.currency("currency", self.currency);
        w.boolean("estimated", self.estimated);
        w.symbol("outcome", self.outcome);
        let status = self.upstream_status.map(|s| Value::Int(i32::from(s)));
        w.put("upstream_status", status.map_or_else(null, some));
        w.uuid("reservation_id", self.reservation_id);
        w.uuids("policy_ids", self.policy_ids.iter().map(|p| p.0));
        w.long("pricebook_version", self.pricebook_version);
        w.string("instance", &self.instance);
        w.count("upstream_latency_micros", self.upstream_latency_micros);
        let metadata = self.metadata.iter();
        let entries = metadata.map(|(k, v)| (k.clone(), Value::String(v.clone())));
        w.put("metadata", Value::Map(entries.collect()));
        w.finish()
    }

    fn from_avro(value: Value) -> Result<Self, AvroError> {
        let mut r = RecordReader::new(Self::KIND.name(), value)?;
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

fn evaluation_to_avro(p: &PolicyEvaluationRecord) -> Result<Value, AvroError> {
    let mut w = RecordWriter::new(EVALUATION);
    w.uuid("policy_id", p.policy_id.0);
    w.long("policy_version", p.policy_version);
    w.uuid("agent_id", p.agent_id.0);
    w.symbol("time_window", p.time_window);
    w.time("window_start", p.window_start);
    w.micros("limit_micros", p.limit_micros);
    w.micros("spent_micros", p.spent_micros);
    w.micros("reserved_micros", p.reserved_micros);
    w.micros("remaining_micros", p.remaining_micros);
    w.finish()
}

fn evaluation_from_avro(value: Value) -> Result<PolicyEvaluationRecord, AvroError> {
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

impl AvroRecord for PolicyDecision {
    const KIND: EventKind = EventKind::PolicyDecision;

    fn to_avro(&self) -> Result<Value, AvroError> {
        let mut w = RecordWriter::new(Self::KIND.name());
        w.uuid("event_id", self.event_id);
        w.time("occurred_at", self.occurred_at);
        w.uuid("request_id", self.request_id);
        w.opt_string("correlation_id", self.correlation_id.as_deref());
        w.uuid("agent_id", self.agent_id.0);
        w.uuid("root_agent_id", self.root_agent_id.0);
        w.symbol("decision", self.decision);
        w.opt_string("reason", self.reason.as_deref());
        w.string("provider", &self.provider);
        w.string("resource", &self.resource);
        w.micros("estimated_cost_micros", self.estimated_cost_micros);
        w.currency("currency", self.currency);
        let policies: Result<Vec<Value>, AvroError> =
            self.policies.iter().map(evaluation_to_avro).collect();
        w.put_result("policies", policies.map(Value::Array));
        w.opt_string("allowlist_match", self.allowlist_match.as_deref());
        w.count("evaluation_micros", self.evaluation_micros);
        w.finish()
    }

    fn from_avro(value: Value) -> Result<Self, AvroError> {
        let mut r = RecordReader::new(Self::KIND.name(), value)?;
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
                .map(evaluation_from_avro)
                .collect::<Result<_, _>>()?,
            allowlist_match: r.opt_string("allowlist_match")?,
            evaluation_micros: r.count("evaluation_micros")?,
        })
    }
}

impl AvroRecord for AgentLifecycle {
    const KIND: EventKind = EventKind::AgentLifecycle;

    fn to_avro(&self) -> Result<Value, AvroError> {
        let mut w = RecordWriter::new(Self::KIND.name());
        w.uuid("event_id", self.event_id);
        w.time("occurred_at", self.occurred_at);
        w.uuid("agent_id", self.agent_id.0);
        w.opt_uuid("parent_id", self.parent_id.map(|a| a.0));
        w.uuid("root_agent_id", self.root_agent_id.0);
        w.symbol("action", self.action);
        w.opt_string("before", self.before.as_deref());
        w.opt_string("after", self.after.as_deref());
        w.opt_string("reason", self.reason.as_deref());
        w.string("actor", &self.actor);
        w.finish()
    }

    fn from_avro(value: Value) -> Result<Self, AvroError> {
        let mut r = RecordReader::new(Self::KIND.name(), value)?;
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
}

const SNAPSHOT: &str = "PolicySnapshot";

fn snapshot_to_avro(snapshot: Option<&PolicySnapshot>) -> Result<Value, AvroError> {
    let Some(s) = snapshot else {
        return Ok(null());
    };
    let mut w = RecordWriter::new(SNAPSHOT);
    w.micros("limit_micros", s.limit_micros);
    w.currency("currency", s.currency);
    w.symbol("time_window", s.time_window);
    w.symbol("window_type", s.window_type);
    let allow = s.allow.iter().map(|p| Value::String(p.clone()));
    w.put("allow", Value::Array(allow.collect()));
    w.boolean("active", s.active);
    w.finish().map(some)
}

fn snapshot_from_avro(value: Option<Value>) -> Result<Option<PolicySnapshot>, AvroError> {
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

impl AvroRecord for PolicyChange {
    const KIND: EventKind = EventKind::PolicyChange;

    fn to_avro(&self) -> Result<Value, AvroError> {
        let mut w = RecordWriter::new(Self::KIND.name());
        w.uuid("event_id", self.event_id);
        w.time("occurred_at", self.occurred_at);
        w.uuid("policy_id", self.policy_id.0);
        w.uuid("agent_id", self.agent_id.0);
        w.uuid("root_agent_id", self.root_agent_id.0);
        w.long("version", self.version);
        w.symbol("action", self.action);
        w.put_result("before", snapshot_to_avro(self.before.as_ref()));
        w.put_result("after", snapshot_to_avro(self.after.as_ref()));
        w.opt_string("reason", self.reason.as_deref());
        w.string("actor", &self.actor);
        w.finish()
    }

    fn from_avro(value: Value) -> Result<Self, AvroError> {
        let mut r = RecordReader::new(Self::KIND.name(), value)?;
        Ok(PolicyChange {
            event_id: r.uuid("event_id")?,
            occurred_at: r.time("occurred_at")?,
            policy_id: PolicyId(r.uuid("policy_id")?),
            agent_id: AgentId(r.uuid("agent_id")?),
            root_agent_id: AgentId(r.uuid("root_agent_id")?),
            version: r.long("version")?,
            action: r.symbol("action")?,
            before: snapshot_from_avro(r.optional("before")?)?,
            after: snapshot_from_avro(r.optional("after")?)?,
            reason: r.opt_string("reason")?,
            actor: r.string("actor")?,
        })
    }
}
