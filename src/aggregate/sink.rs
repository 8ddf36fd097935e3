//! The metrics role's sink for the consumer runtime: each metering event becomes its aggregate
//! increments (`keys::increments`), and a batch is applied with its next offset by the
//! aggregate store's one fenced script. A message that is not a metering event goes to the DLQ.

use std::sync::Arc;

use async_trait::async_trait;

use super::{keys, AggregateStore, EventIncrements};
use crate::bus::avro;
use crate::bus::ConsumedMessage;
use crate::consume::Sink;
use crate::core::events::{EventKind, MeteringEvent, TOPIC_METERING_EVENTS};
use crate::store::leases::Fence;
use crate::store::StoreError;

/// The consumer name of the metrics role (lease namespace, metric label).
pub const CONSUMER: &str = "metrics";

pub struct AggregateSink {
    store: Arc<dyn AggregateStore>,
}

impl AggregateSink {
    pub fn new(store: Arc<dyn AggregateStore>) -> AggregateSink {
        AggregateSink { store }
    }
}

/// Decodes a metering event from a message of `caracal.metering.events`.
pub fn decode(message: &ConsumedMessage) -> Result<MeteringEvent, String> {
    let unframed =
        avro::unframe(&message.value, avro::registered_kind).map_err(|e| e.to_string())?;
    if unframed.kind != EventKind::MeteringEvent {
        return Err(format!(
            "expected a MeteringEvent on {TOPIC_METERING_EVENTS}, found a {}",
            unframed.kind.name()
        ));
    }
    avro::decode_datum::<MeteringEvent>(unframed.datum).map_err(|e| e.to_string())
}

#[async_trait]
impl Sink for AggregateSink {
    type Item = EventIncrements;

    fn accept(&self, message: &ConsumedMessage) -> Result<EventIncrements, String> {
        let event = decode(message)?;
        Ok(EventIncrements {
            event_id: event.event_id,
            increments: keys::increments(message.partition, &event),
        })
    }

    async fn commit(
        &self,
        fence: &Fence,
        items: Vec<EventIncrements>,
        next_offset: i64,
    ) -> Result<usize, StoreError> {
        self.store.apply(fence, items, next_offset).await
    }
}
