//! What the record says a policy spent: the ledger's rows in each bucket of the policy's frame,
//! plus the metering events the ledger has not applied yet (on the bus between the ledger
//! consumer's committed offset and the high watermark). A shared spend cache that lost its data
//! is rebuilt from this. Reads only; the bucketing of events is pure (`bucket_sums`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::bus::{avro, EventBus};
use crate::core::events::{Event, MeteringEvent, TOPIC_METERING_EVENTS};
use crate::core::money::Micros;
use crate::core::policy::{BudgetPolicy, WindowType};
use crate::core::window::{charge_bucket, current_frame, rolling_bucket_secs, WindowFrame};
use crate::spend::{SpendError, SpendRecord};
use crate::store::leases::LeaseStore;
use crate::store::ledger::{LedgerQuery, LedgerStore};

/// Messages read per fetch of the unapplied tail.
const TAIL_FETCH_MAX: usize = 1_000;

/// The ledger and the bus, read as the record of spend.
pub struct LedgerRecord {
    pub ledger: Arc<dyn LedgerStore>,
    pub leases: Arc<dyn LeaseStore>,
    pub bus: Arc<dyn EventBus>,
    /// The ledger role's consumer name in the lease table (its committed offsets).
    pub consumer: String,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> SpendError {
    SpendError::Unavailable(format!("rebuilding spend from the {what}: {e}"))
}

/// The bucket starts of `frame` for a policy's window: one per rolling sub-bucket, else one.
fn buckets(policy: &BudgetPolicy, frame: WindowFrame) -> Vec<DateTime<Utc>> {
    let spec = &policy.spec;
    match (spec.window_type, rolling_bucket_secs(spec.time_window)) {
        (WindowType::Rolling, Some(size)) => {
            let step = chrono::Duration::seconds(size);
            std::iter::successors(Some(frame.start), |b| Some(*b + step))
                .take_while(|b| *b < frame.end)
                .collect()
        }
        _ => vec![frame.start],
    }
}

/// Whether `event` counts against `policy`: by its agent or a descendant, in its currency.
fn counts(policy: &BudgetPolicy, event: &MeteringEvent) -> bool {
    event.currency == policy.spec.currency
        && (event.agent_id == policy.agent_id || event.ancestor_ids.contains(&policy.agent_id))
}

/// The cost of `events` that count against `policy` in its frame at `now`, by the bucket of
/// each event's time.
pub fn bucket_sums<'a>(
    policy: &BudgetPolicy,
    now: DateTime<Utc>,
    events: impl IntoIterator<Item = &'a MeteringEvent>,
) -> BTreeMap<DateTime<Utc>, i64> {
    let spec = &policy.spec;
    let frame = current_frame(spec.time_window, spec.window_type, now);
    let mut sums = BTreeMap::new();
    for event in events.into_iter().filter(|e| counts(policy, e)) {
        let Some(at) = DateTime::from_timestamp_micros(event.occurred_at.0) else {
            continue;
        };
        if frame.contains(at) {
            let bucket = charge_bucket(spec.time_window, spec.window_type, at);
            *sums.entry(bucket).or_insert(0) += event.cost_micros.get();
        }
    }
    sums
}

impl LedgerRecord {
    /// The metering events on the bus that the ledger has not applied yet, once each.
    async fn unapplied(&self) -> Result<Vec<MeteringEvent>, SpendError> {
        let committed = self
            .leases
            .list_leases(Some(&self.consumer))
            .await
            .map_err(|e| unavailable("ledger's offsets", e))?;
        let partitions = self
            .bus
            .partition_count(TOPIC_METERING_EVENTS)
            .await
            .map_err(|e| unavailable("event bus", e))?;
        let (mut seen, mut events) = (HashSet::new(), Vec::new());
        for partition in 0..partitions {
            let mut offset = committed
                .iter()
                .find(|row| row.topic == TOPIC_METERING_EVENTS && row.partition == partition)
                .map_or(0, |row| row.next_offset);
            let high = self
                .bus
                .high_watermark(TOPIC_METERING_EVENTS, partition)
                .await
                .map_err(|e| unavailable("event bus", e))?;
            while offset < high {
                let batch = self
                    .bus
                    .fetch(TOPIC_METERING_EVENTS, partition, offset, TAIL_FETCH_MAX)
                    .await
                    .map_err(|e| unavailable("event bus", e))?;
                let Some(last) = batch.last() else { break };
                offset = last.offset + 1;
                for message in batch {
                    if let Ok(Event::Metering(event)) =
                        avro::decode_framed(&message.value, avro::registered_kind).map(|d| d.event)
                    {
                        if seen.insert(event.event_id) {
                            events.push(event);
                        }
                    }
                }
            }
        }
        Ok(events)
    }

    /// The ledger's total for `policy` over `[start, end)`, in its currency.
    async fn ledger_total(
        &self,
        policy: &BudgetPolicy,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<i64, SpendError> {
        let query = LedgerQuery {
            agent_id: policy.agent_id.to_string(),
            include_children: true,
            start_micros: start.timestamp_micros(),
            end_micros: end.timestamp_micros(),
            limit: 0,
        };
        let (_, totals) = self
            .ledger
            .query_ledger(&query)
            .await
            .map_err(|e| unavailable("ledger", e))?;
        let currency = policy.spec.currency.as_str();
        Ok(totals
            .iter()
            .filter(|t| t.currency == currency)
            .map(|t| t.cost_micros)
            .sum())
    }
}

#[async_trait]
impl SpendRecord for LedgerRecord {
    /// The unapplied tail is read and checked against the ledger first, then the ledger's
    /// totals: an event the ledger applies in between is counted twice (more, never less);
    /// read the other way round it could be missed.
    async fn recorded(
        &self,
        policy: &BudgetPolicy,
        now: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, Micros)>, SpendError> {
        let tail = self.unapplied().await?;
        let mut pending = Vec::new();
        for event in tail.iter().filter(|e| counts(policy, e)) {
            let applied = self
                .ledger
                .ledger_event(&event.event_id.to_string())
                .await
                .map_err(|e| unavailable("ledger", e))?;
            if applied.is_none() {
                pending.push(event);
            }
        }
        let mut sums = bucket_sums(policy, now, pending);
        let spec = &policy.spec;
        let frame = current_frame(spec.time_window, spec.window_type, now);
        let starts = buckets(policy, frame);
        for (i, start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(frame.end);
            let total = self.ledger_total(policy, *start, end).await?;
            if total != 0 {
                *sums.entry(*start).or_insert(0) += total;
            }
        }
        Ok(sums.into_iter().map(|(b, m)| (b, Micros(m))).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::bus::avro::tests::metering_full;
    use crate::core::agent::AgentId;
    use crate::core::events::UnixMicros;
    use crate::core::money::Currency;
    use crate::core::policy::TimeWindow;
    use crate::spend::conformance::policy;
    use uuid::Uuid;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn spent(agent: u128, ancestors: &[u128], when: &str, cost: i64) -> MeteringEvent {
        let id = |n: u128| AgentId(Uuid::from_u128(n));
        MeteringEvent {
            event_id: Uuid::now_v7(),
            agent_id: id(agent),
            ancestor_ids: ancestors.iter().map(|n| id(*n)).collect(),
            occurred_at: UnixMicros::from_datetime(at(when)),
            cost_micros: Micros(cost),
            ..metering_full()
        }
    }

    #[test]
    fn events_of_the_agent_and_its_descendants_in_the_frame_count_by_bucket() {
        let daily = policy(1, 10, 1_000, TimeWindow::Daily, WindowType::Calendar);
        let now = at("2026-12-07T12:00:00Z");
        let mut other_currency = spent(10, &[], "2026-12-07T01:00:00Z", 7);
        other_currency.currency = Currency::parse("EUR").unwrap();
        let events = [
            spent(10, &[], "2026-12-07T00:00:00Z", 100),
            spent(11, &[10], "2026-12-07T11:59:59Z", 20),
            spent(12, &[11, 10], "2026-12-07T03:00:00Z", 3),
            spent(10, &[], "2026-12-06T23:59:59Z", 5_000), // yesterday
            spent(10, &[], "2026-12-08T00:00:00Z", 5_000), // tomorrow
            spent(20, &[21], "2026-12-07T02:00:00Z", 5_000), // another tree
            spent(21, &[], "2026-12-07T02:00:00Z", 5_000),
            other_currency,
        ];
        let sums = bucket_sums(&daily, now, &events);
        assert_eq!(sums, BTreeMap::from([(at("2026-12-07T00:00:00Z"), 123)]));
    }

    #[test]
    fn a_rolling_window_sums_per_sub_bucket_and_lists_every_bucket_of_its_frame() {
        let hourly = policy(1, 10, 1_000, TimeWindow::Hourly, WindowType::Rolling);
        let now = at("2026-12-07T12:30:10Z");
        let events = [
            spent(10, &[], "2026-12-07T12:30:05Z", 1),
            spent(10, &[], "2026-12-07T12:30:59Z", 2),
            spent(10, &[], "2026-12-07T11:31:00Z", 4),
            spent(10, &[], "2026-12-07T11:30:59Z", 8), // slid out
        ];
        let sums = bucket_sums(&hourly, now, &events);
        assert_eq!(
            sums,
            BTreeMap::from([
                (at("2026-12-07T11:31:00Z"), 4),
                (at("2026-12-07T12:30:00Z"), 3),
            ])
        );
        let frame = current_frame(TimeWindow::Hourly, WindowType::Rolling, now);
        let starts = buckets(&hourly, frame);
        assert_eq!(starts.len(), 60);
        assert_eq!(starts.first(), Some(&at("2026-12-07T11:31:00Z")));
        assert_eq!(starts.last(), Some(&at("2026-12-07T12:30:00Z")));
        let daily = policy(1, 10, 1_000, TimeWindow::Daily, WindowType::Calendar);
        let frame = current_frame(TimeWindow::Daily, WindowType::Calendar, now);
        assert_eq!(buckets(&daily, frame), vec![at("2026-12-07T00:00:00Z")]);
    }
}
