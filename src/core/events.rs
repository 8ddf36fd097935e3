//! The four events of the bus (MeteringEvent, PolicyDecision, AgentLifecycle, PolicyChange),
//! their enums, the topics they travel on and the admin outbox envelope (`AdminEvent`, JSON).
//! Pure data: no Avro here (that is `bus::avro`), no clock reads; callers fill every field.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::agent::AgentId;
use crate::core::money::{Currency, Micros};
use crate::core::policy::{PolicyId, PolicySpec, TimeWindow};

/// Topic of MeteringEvent.
pub const TOPIC_METERING_EVENTS: &str = "caracal.metering.events";
/// Topic of PolicyDecision.
pub const TOPIC_POLICY_DECISIONS: &str = "caracal.policy.decisions";
/// Topic of AgentLifecycle.
pub const TOPIC_AGENT_LIFECYCLE: &str = "caracal.agent.lifecycle";
/// Topic of PolicyChange.
pub const TOPIC_POLICY_CHANGES: &str = "caracal.policy.changes";
/// Messages that could not be decoded or applied, with headers naming where they came from.
pub const TOPIC_DLQ: &str = "caracal.dlq";

/// A topic and the partition count `kafka create-topics` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: &'static str,
    pub partitions: i32,
}

/// Every topic Caracal writes, with its partition count (DESIGN.md §5).
pub const TOPICS: [TopicSpec; 5] = [
    TopicSpec {
        name: TOPIC_METERING_EVENTS,
        partitions: 10,
    },
    TopicSpec {
        name: TOPIC_POLICY_DECISIONS,
        partitions: 5,
    },
    TopicSpec {
        name: TOPIC_AGENT_LIFECYCLE,
        partitions: 3,
    },
    TopicSpec {
        name: TOPIC_POLICY_CHANGES,
        partitions: 3,
    },
    TopicSpec {
        name: TOPIC_DLQ,
        partitions: 3,
    },
];

/// The partition count of one of `TOPICS`, or `None` for a topic that is not ours.
pub fn topic_partitions(name: &str) -> Option<i32> {
    TOPICS.iter().find(|t| t.name == name).map(|t| t.partitions)
}

/// A point in time as microseconds since the Unix epoch, UTC: Avro's `timestamp-micros`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixMicros(pub i64);

impl UnixMicros {
    pub fn from_datetime(time: DateTime<Utc>) -> UnixMicros {
        UnixMicros(time.timestamp_micros())
    }

    /// `None` only for values beyond chrono's range (about ±262,000 years).
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.0)
    }
}

/// Declares an event enum whose serde names are its Avro symbols, with `ALL` in symbol order
/// (the index in `ALL` is the value written on the wire, so the order must never change;
/// new symbols go at the end).
macro_rules! symbol_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $symbol:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $symbol)] $variant,)+
        }

        impl $name {
            /// Every value, in the order of the Avro enum's symbols.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The Avro symbol.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $symbol,)+
                }
            }

            pub fn from_symbol(symbol: &str) -> Option<$name> {
                match symbol {
                    $($symbol => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

symbol_enum! {
    /// Which front door metered the call.
    Source {
        Gateway = "GATEWAY",
        Mcp = "MCP",
    }
}

symbol_enum! {
    /// How the metered call ended.
    Outcome {
        Completed = "COMPLETED",
        /// The client went away mid-response; what was consumed is still charged.
        ClientDisconnected = "CLIENT_DISCONNECTED",
        UpstreamError = "UPSTREAM_ERROR",
        Timeout = "TIMEOUT",
    }
}

symbol_enum! {
    DecisionKind {
        Allow = "ALLOW",
        Deny = "DENY",
    }
}

symbol_enum! {
    LifecycleAction {
        Created = "CREATED",
        Updated = "UPDATED",
        Suspended = "SUSPENDED",
        Reactivated = "REACTIVATED",
        Deleted = "DELETED",
        KeyCreated = "KEY_CREATED",
        KeyRevoked = "KEY_REVOKED",
    }
}

symbol_enum! {
    ChangeAction {
        Created = "CREATED",
        Updated = "UPDATED",
        Deleted = "DELETED",
    }
}

/// One metered call: what it consumed, what it cost, against which chain it was charged.
/// Its Avro datum is the ledger's canonical bytes and a Merkle leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeteringEvent {
    /// UUIDv7; sinks are idempotent on it.
    pub event_id: Uuid,
    pub occurred_at: UnixMicros,
    pub request_id: Uuid,
    /// `x-correlation-id` as the client sent it (any string) or as we made it.
    pub correlation_id: Option<String>,
    pub agent_id: AgentId,
    pub parent_id: Option<AgentId>,
    pub root_agent_id: AgentId,
    /// The agent's ancestors, nearest first; the last is the root. Empty for a root agent.
    pub ancestor_ids: Vec<AgentId>,
    pub source: Source,
    pub provider: String,
    /// Model name, or `server/tool` for MCP.
    pub resource: String,
    /// e.g. `chat.completions`, `messages`, `tools/call`.
    pub operation: String,
    /// Input tokens not served from the provider's cache.
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    /// Input tokens written into the provider's prompt cache (Anthropic's cache creation).
    pub cache_write_input_tokens: u64,
    pub output_tokens: u64,
    pub calls: u64,
    pub cost_micros: Micros,
    pub reserved_micros: Micros,
    pub currency: Currency,
    /// No usage was known: the reservation was posted as the cost.
    pub estimated: bool,
    pub outcome: Outcome,
    /// HTTP status of the upstream response; `None` when none arrived.
    pub upstream_status: Option<u16>,
    pub reservation_id: Uuid,
    /// Every policy of the chain the call was charged against.
    pub policy_ids: Vec<PolicyId>,
    pub pricebook_version: i64,
    /// The process that metered the call (pod name or host).
    pub instance: String,
    pub upstream_latency_micros: u64,
    /// Free-form labels; sorted by key, so the encoding is deterministic.
    pub metadata: BTreeMap<String, String>,
}

/// One policy's state as the decision saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEvaluationRecord {
    pub policy_id: PolicyId,
    pub policy_version: i64,
    /// The agent of the chain that owns the policy.
    pub agent_id: AgentId,
    pub time_window: TimeWindow,
    pub window_start: UnixMicros,
    pub limit_micros: Micros,
    pub spent_micros: Micros,
    pub reserved_micros: Micros,
    pub remaining_micros: Micros,
}

/// The allow/deny verdict on one request, before it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecision {
    pub event_id: Uuid,
    pub occurred_at: UnixMicros,
    pub request_id: Uuid,
    pub correlation_id: Option<String>,
    pub agent_id: AgentId,
    pub root_agent_id: AgentId,
    pub decision: DecisionKind,
    /// Machine-readable deny reason (`budget_exceeded`, `resource_not_allowed`, ...).
    pub reason: Option<String>,
    pub provider: String,
    pub resource: String,
    pub estimated_cost_micros: Micros,
    pub currency: Currency,
    pub policies: Vec<PolicyEvaluationRecord>,
    /// The allow pattern that admitted the resource; `None` when no policy restricts resources.
    pub allowlist_match: Option<String>,
    pub evaluation_micros: u64,
}

/// A change to an agent or one of its keys, written in the same transaction as the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentLifecycle {
    pub event_id: Uuid,
    pub occurred_at: UnixMicros,
    pub agent_id: AgentId,
    pub parent_id: Option<AgentId>,
    pub root_agent_id: AgentId,
    pub action: LifecycleAction,
    /// JSON of the agent before the change (see `agent_json`); never a secret.
    pub before: Option<String>,
    pub after: Option<String>,
    pub reason: Option<String>,
    pub actor: String,
}

/// A policy as carried in `PolicyChange.before` / `after`.
pub type PolicySnapshot = PolicySpec;

/// A change to a policy, written in the same transaction as the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    pub event_id: Uuid,
    pub occurred_at: UnixMicros,
    pub policy_id: PolicyId,
    /// The agent the policy belongs to.
    pub agent_id: AgentId,
    pub root_agent_id: AgentId,
    /// The version this change made.
    pub version: i64,
    pub action: ChangeAction,
    pub before: Option<PolicySnapshot>,
    pub after: Option<PolicySnapshot>,
    pub reason: Option<String>,
    pub actor: String,
}

/// JSON of an agent for `AgentLifecycle.before` / `after`. `Agent` holds no secret (keys are
/// stored apart, as hashes), so the whole record is safe to publish.
pub fn agent_json(agent: &crate::core::agent::Agent) -> Result<String, serde_json::Error> {
    serde_json::to_string(agent)
}

/// Which of the four events; names the Avro record, its schema and its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    MeteringEvent,
    PolicyDecision,
    AgentLifecycle,
    PolicyChange,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::MeteringEvent,
        EventKind::PolicyDecision,
        EventKind::AgentLifecycle,
        EventKind::PolicyChange,
    ];

    /// The Avro record name (namespace `caracal.v1`).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::MeteringEvent => "MeteringEvent",
            EventKind::PolicyDecision => "PolicyDecision",
            EventKind::AgentLifecycle => "AgentLifecycle",
            EventKind::PolicyChange => "PolicyChange",
        }
    }

    pub fn topic(self) -> &'static str {
        match self {
            EventKind::MeteringEvent => TOPIC_METERING_EVENTS,
            EventKind::PolicyDecision => TOPIC_POLICY_DECISIONS,
            EventKind::AgentLifecycle => TOPIC_AGENT_LIFECYCLE,
            EventKind::PolicyChange => TOPIC_POLICY_CHANGES,
        }
    }
}

/// Any one event, as a consumer of several topics (audit) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Metering(MeteringEvent),
    Decision(PolicyDecision),
    Lifecycle(AgentLifecycle),
    Change(PolicyChange),
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Metering(_) => EventKind::MeteringEvent,
            Event::Decision(_) => EventKind::PolicyDecision,
            Event::Lifecycle(_) => EventKind::AgentLifecycle,
            Event::Change(_) => EventKind::PolicyChange,
        }
    }

    pub fn event_id(&self) -> Uuid {
        match self {
            Event::Metering(e) => e.event_id,
            Event::Decision(e) => e.event_id,
            Event::Lifecycle(e) => e.event_id,
            Event::Change(e) => e.event_id,
        }
    }

    /// The message key: the agent tree's root, so one tree's events stay in one partition.
    pub fn partition_key(&self) -> AgentId {
        match self {
            Event::Metering(e) => e.root_agent_id,
            Event::Decision(e) => e.root_agent_id,
            Event::Lifecycle(e) => e.root_agent_id,
            Event::Change(e) => e.root_agent_id,
        }
    }
}

/// An admin change's event as stored in the outbox (JSON) until it is relayed to the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminEvent {
    AgentLifecycle(AgentLifecycle),
    PolicyChange(PolicyChange),
}

impl AdminEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            AdminEvent::AgentLifecycle(_) => EventKind::AgentLifecycle,
            AdminEvent::PolicyChange(_) => EventKind::PolicyChange,
        }
    }

    pub fn topic(&self) -> &'static str {
        self.kind().topic()
    }

    /// The root agent id of the tree the change belongs to.
    pub fn partition_key(&self) -> AgentId {
        match self {
            AdminEvent::AgentLifecycle(e) => e.root_agent_id,
            AdminEvent::PolicyChange(e) => e.root_agent_id,
        }
    }

    pub fn event_id(&self) -> Uuid {
        match self {
            AdminEvent::AgentLifecycle(e) => e.event_id,
            AdminEvent::PolicyChange(e) => e.event_id,
        }
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    pub fn from_json(text: &str) -> Result<AdminEvent, serde_json::Error> {
        serde_json::from_str(text)
    }
}

impl From<AdminEvent> for Event {
    fn from(event: AdminEvent) -> Event {
        match event {
            AdminEvent::AgentLifecycle(e) => Event::Lifecycle(e),
            AdminEvent::PolicyChange(e) => Event::Change(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::policy::WindowType;

    fn id(n: u128) -> AgentId {
        AgentId(Uuid::from_u128(n))
    }

    fn policy_change() -> PolicyChange {
        let snapshot = PolicySpec {
            limit_micros: Micros(1_000_000_000),
            currency: Currency::USD,
            time_window: TimeWindow::Daily,
            window_type: WindowType::Calendar,
            allow: vec!["openai:gpt-4o*".into()],
            active: true,
        };
        PolicyChange {
            event_id: Uuid::from_u128(1),
            occurred_at: UnixMicros(1_700_000_000_000_000),
            policy_id: PolicyId(Uuid::from_u128(2)),
            agent_id: id(3),
            root_agent_id: id(4),
            version: 2,
            action: ChangeAction::Updated,
            before: Some(snapshot.clone()),
            after: Some(PolicySpec {
                limit_micros: Micros(5),
                ..snapshot
            }),
            reason: None,
            actor: "admin".into(),
        }
    }

    fn lifecycle() -> AgentLifecycle {
        AgentLifecycle {
            event_id: Uuid::from_u128(5),
            occurred_at: UnixMicros(-1),
            agent_id: id(6),
            parent_id: Some(id(7)),
            root_agent_id: id(7),
            action: LifecycleAction::KeyRevoked,
            before: None,
            after: Some(r#"{"name":"a"}"#.into()),
            reason: Some("rotated".into()),
            actor: "cli".into(),
        }
    }

    #[test]
    fn admin_events_round_trip_through_outbox_json() {
        for event in [
            AdminEvent::PolicyChange(policy_change()),
            AdminEvent::AgentLifecycle(lifecycle()),
        ] {
            let json = event.to_json().unwrap();
            assert_eq!(AdminEvent::from_json(&json).unwrap(), event);
        }
        let json = AdminEvent::AgentLifecycle(lifecycle()).to_json().unwrap();
        assert!(json.contains(r#""type":"agent_lifecycle""#), "{json}");
        assert!(json.contains(r#""action":"KEY_REVOKED""#), "{json}");
    }

    #[test]
    fn admin_events_go_to_their_topic_keyed_by_the_root() {
        let change = AdminEvent::PolicyChange(policy_change());
        assert_eq!(change.topic(), "caracal.policy.changes");
        assert_eq!(change.partition_key(), id(4));
        let agent = AdminEvent::AgentLifecycle(lifecycle());
        assert_eq!(agent.topic(), "caracal.agent.lifecycle");
        assert_eq!(agent.partition_key(), id(7));
        assert_eq!(Event::from(agent).partition_key(), id(7));
    }

    #[test]
    fn topics_have_the_designed_partition_counts() {
        assert_eq!(topic_partitions("caracal.metering.events"), Some(10));
        assert_eq!(topic_partitions("caracal.policy.decisions"), Some(5));
        assert_eq!(topic_partitions("caracal.agent.lifecycle"), Some(3));
        assert_eq!(topic_partitions("caracal.policy.changes"), Some(3));
        assert_eq!(topic_partitions("caracal.dlq"), Some(3));
        assert_eq!(topic_partitions("caracal.other"), None);
    }

    #[test]
    fn symbols_parse_back() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_symbol(o.as_str()), Some(*o));
        }
        assert_eq!(LifecycleAction::ALL.len(), 7);
        assert_eq!(LifecycleAction::from_symbol("created"), None);
    }

    #[test]
    fn unix_micros_converts_from_and_to_chrono() {
        let t = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        assert_eq!(
            UnixMicros::from_datetime(t),
            UnixMicros(1_700_000_000_123_456)
        );
        assert_eq!(UnixMicros(1_700_000_000_123_456).to_datetime(), Some(t));
        assert_eq!(UnixMicros(i64::MAX).to_datetime(), None);
    }
}
