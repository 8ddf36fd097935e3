//! Puts events into the embedded log of a data dir from the test process, the way a gateway
//! replica beside the server would (the log file is shared safely between processes).

use std::collections::BTreeMap;
use std::path::Path;

use caracal::bus::avro::Framing;
use caracal::bus::local::{LocalBus, LocalBusLimits};
use caracal::bus::{event_message, EventBus, OutgoingMessage};
use caracal::core::agent::AgentId;
use caracal::core::events::{
    Event, MeteringEvent, Outcome, Source, UnixMicros, TOPIC_METERING_EVENTS,
};
use caracal::core::money::{Currency, Micros};
use uuid::Uuid;

/// A metering event of `agent` (under `root`) costing `cost_micros`, now.
pub fn metering(root: AgentId, agent: AgentId, cost_micros: i64) -> MeteringEvent {
    let ancestors = if root == agent { vec![] } else { vec![root] };
    MeteringEvent {
        event_id: Uuid::now_v7(),
        occurred_at: UnixMicros(chrono::Utc::now().timestamp_micros()),
        request_id: Uuid::new_v4(),
        correlation_id: None,
        agent_id: agent,
        parent_id: ancestors.first().copied(),
        root_agent_id: root,
        ancestor_ids: ancestors,
        source: Source::Gateway,
        provider: "openai".into(),
        resource: "gpt-4o-mini".into(),
        operation: "chat.completions".into(),
        input_tokens: 120,
        cached_input_tokens: 0,
        cache_write_input_tokens: 0,
        output_tokens: 40,
        calls: 1,
        cost_micros: Micros(cost_micros),
        reserved_micros: Micros(cost_micros * 2),
        currency: Currency::USD,
        estimated: false,
        outcome: Outcome::Completed,
        upstream_status: Some(200),
        reservation_id: Uuid::new_v4(),
        policy_ids: vec![],
        pricebook_version: 1,
        instance: "test".into(),
        upstream_latency_micros: 1_000,
        metadata: BTreeMap::new(),
    }
}

/// The embedded log of `data_dir`, opened by the test process.
pub struct Log {
    bus: LocalBus,
    runtime: tokio::runtime::Runtime,
}

impl Log {
    pub fn open(data_dir: &Path) -> Log {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let bus = LocalBus::open(data_dir, LocalBusLimits::default()).unwrap();
        Log { bus, runtime }
    }

    /// Publishes metering events durably.
    pub fn publish(&self, events: &[MeteringEvent]) {
        let messages: Vec<OutgoingMessage> = events
            .iter()
            .map(|e| event_message(&Event::Metering(e.clone()), Framing::SingleObject).unwrap())
            .collect();
        self.publish_raw(messages);
    }

    /// Publishes a message whose value is `value` (e.g. garbage) on the metering topic.
    pub fn publish_corrupt(&self, key: &str, value: &[u8]) {
        self.publish_raw(vec![OutgoingMessage {
            topic: TOPIC_METERING_EVENTS.into(),
            key: key.as_bytes().to_vec(),
            value: value.to_vec(),
            headers: vec![("event_type".into(), b"MeteringEvent".to_vec())],
            timestamp: chrono::Utc::now(),
        }]);
    }

    pub fn publish_raw(&self, messages: Vec<OutgoingMessage>) {
        self.runtime.block_on(self.bus.publish(messages)).unwrap();
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.runtime.block_on(self.bus.close());
    }
}
