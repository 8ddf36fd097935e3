//! `PendingCharge`: the owner of one reserved call's hold, from the reservation until an event
//! records it, whatever the caller does. Finished explicitly, it charges the measured usage;
//! dropped unfinished (the client hung up, the future was cancelled) it settles itself: a call
//! already forwarded is charged its reservation (`estimated`, `CLIENT_DISCONNECTED`), a call
//! never forwarded is voided with no event. Settlement runs on its own task: publish the
//! MeteringEvent durably, then settle the hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::{self, Charged};
use super::{Admission, CallFacts, Priced};
use crate::core::events::{Event, Outcome};
use crate::core::money::Micros;
use crate::core::policy::PolicyId;
use crate::core::pricing::Usage;
use crate::spend::{HoldInfo, HoldKey, Reservation};

/// Attempts to publish a MeteringEvent before giving up (the hold then expires and the sweeper
/// charges the reservation, so the charge is still not lost).
const PUBLISH_ATTEMPTS_MAX: u32 = 5;
const PUBLISH_RETRY_BASE: Duration = Duration::from_millis(50);

/// How a call ended, as its entry point saw it.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub outcome: Outcome,
    /// The usage the upstream reported, if it reported any.
    pub usage: Option<Usage>,
    /// Response bytes passed to the client.
    pub bytes: u64,
}

/// The fixed facts of one hold.
pub(super) struct ChargeFacts {
    pub key: HoldKey,
    pub reserved: Micros,
    pub priced: Priced,
    pub policy_ids: Vec<PolicyId>,
}

struct Held {
    admission: Arc<Admission>,
    call: CallFacts,
    charge: ChargeFacts,
}

/// A reserved call. See the module doc for what dropping it does.
pub struct PendingCharge {
    held: Option<Held>,
    remaining: Option<Micros>,
    forwarded_at: Option<Instant>,
    upstream_status: Option<u16>,
}

/// A hold as this process tracks it while its call runs: what it re-asserts if Redis lost it.
fn live_hold(
    admission: &Admission,
    call: &CallFacts,
    priced: &Priced,
    reservation: &Reservation,
) -> HoldInfo {
    let chain = &call.chain.chain;
    let now = chrono::Utc::now();
    HoldInfo {
        hold_id: reservation.hold_id,
        agent_id: chain.agent().id,
        ancestor_ids: chain.members().iter().skip(1).map(|a| a.id).collect(),
        root_agent_id: reservation.root_agent_id,
        resource: format!("{}:{}", call.provider, call.resource),
        source: call.source,
        operation: call.operation.clone(),
        amount: reservation.amount,
        currency: priced.price.currency,
        charged: reservation.charged.clone(),
        reserved_at: now,
        expires_at: now + chrono::Duration::seconds(admission.limits.hold_seconds),
    }
}

impl PendingCharge {
    pub(super) fn new(
        admission: Arc<Admission>,
        call: CallFacts,
        priced: Priced,
        reserved: Micros,
        reservation: &Reservation,
    ) -> PendingCharge {
        let mut policy_ids: Vec<PolicyId> = reservation.charged.iter().map(|(id, _)| *id).collect();
        policy_ids.dedup();
        let key = reservation.key();
        admission.track_hold(live_hold(&admission, &call, &priced, reservation));
        PendingCharge {
            held: Some(Held {
                admission,
                call,
                charge: ChargeFacts {
                    key,
                    reserved,
                    priced,
                    policy_ids,
                },
            }),
            remaining: reservation.decision.remaining,
            forwarded_at: None,
            upstream_status: None,
        }
    }

    /// What is held for the call.
    pub fn reserved(&self) -> Micros {
        self.held
            .as_ref()
            .map_or(Micros::ZERO, |h| h.charge.reserved)
    }

    /// The tightest policy's room left after this hold, when a policy applies.
    pub fn remaining(&self) -> Option<Micros> {
        self.remaining
    }

    /// The call is about to leave for the upstream: from here on a charge is owed, even if the
    /// caller vanishes. Starts the upstream latency clock.
    pub fn forwarding(&mut self) {
        self.forwarded_at.get_or_insert_with(Instant::now);
    }

    /// The upstream answered with this status (the response may still be streaming).
    pub fn answered(&mut self, status: u16) {
        self.upstream_status = Some(status);
    }

    /// The call is over: charge what `finished` says, on a task of its own.
    pub fn finish(mut self, finished: Finished) {
        self.settle(finished);
    }

    /// The call will not be forwarded: void the hold, charge nothing, record no event.
    pub fn void(mut self) {
        debug_assert!(
            self.forwarded_at.is_none(),
            "a forwarded call is never voided"
        );
        if let Some(held) = self.held.take() {
            spawn(async move { held.void().await });
        }
    }

    fn settle(&mut self, finished: Finished) {
        let Some(held) = self.held.take() else {
            return;
        };
        let charged = charged(&held, finished, self.upstream_status, self.forwarded_at);
        spawn(async move { held.settle(charged, finished.bytes).await });
    }
}

impl Drop for PendingCharge {
    fn drop(&mut self) {
        if self.forwarded_at.is_some() {
            self.settle(Finished {
                outcome: Outcome::ClientDisconnected,
                usage: None,
                bytes: 0,
            });
        } else if let Some(held) = self.held.take() {
            spawn(async move { held.void().await });
        }
    }
}

/// Runs settlement on the current runtime. Outside one (a runtime shutting down) the hold stays
/// recorded and expires into an `estimated` charge: late, never lost.
fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(task)),
        Err(_) => tracing::error!("no runtime to settle a hold on; it will expire and be charged"),
    }
}

/// What to charge. Reported usage is priced. No usage: a success charges the reservation
/// (`estimated`; one call for a per-call price), and so does a forwarded call that was abandoned
/// before any answer (the provider may bill it); a failed or refused answer charges nothing.
fn charged(
    held: &Held,
    finished: Finished,
    upstream_status: Option<u16>,
    forwarded_at: Option<Instant>,
) -> Charged {
    let (price, reserved) = (&held.charge.priced.price, held.charge.reserved);
    let success = upstream_status.is_some_and(|s| (200..300).contains(&s));
    let abandoned = upstream_status.is_none()
        && forwarded_at.is_some()
        && matches!(
            finished.outcome,
            Outcome::ClientDisconnected | Outcome::Timeout
        );
    let usage = match (finished.usage, held.call.per_call && success) {
        (Some(usage), _) => Some(Usage {
            calls: usage.calls.max(1),
            ..usage
        }),
        (None, true) => Some(Usage {
            calls: 1,
            ..Usage::default()
        }),
        (None, false) => None,
    };
    let (usage, cost, estimated) = match usage {
        Some(usage) => match price.cost(&usage) {
            Ok(cost) => (usage, cost, false),
            Err(_) => (usage, reserved, true),
        },
        None if success || abandoned => (Usage::default(), reserved, true),
        None => (Usage::default(), Micros::ZERO, false),
    };
    Charged {
        usage,
        cost,
        estimated,
        outcome: finished.outcome,
        upstream_status,
        upstream_latency: forwarded_at.map_or(Duration::ZERO, |t| t.elapsed()),
    }
}

impl Held {
    /// Publishes the MeteringEvent durably, then settles the hold at the charged cost.
    async fn settle(self, charged: Charged, bytes: u64) {
        let admission = &self.admission;
        let key = self.charge.key;
        let event = Event::Metering(events::metering(
            &self.call,
            &self.charge,
            &charged,
            &admission.instance,
        ));
        let mut attempt = 0;
        loop {
            match admission.publish(&event).await {
                Ok(()) => break,
                Err(e) if attempt + 1 < PUBLISH_ATTEMPTS_MAX => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "metering event not yet published; retrying");
                    tokio::time::sleep(PUBLISH_RETRY_BASE * 2u32.pow(attempt)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, hold = %key,
                        "metering event could not be published; the hold stays and expires into an estimated charge");
                    admission.untrack_hold(key.hold_id);
                    return;
                }
            }
        }
        admission.untrack_hold(key.hold_id);
        if let Err(e) = admission
            .spend
            .settle(&key, charged.cost, chrono::Utc::now())
            .await
        {
            tracing::warn!(error = %e, hold = %key, "settle after publish failed");
        }
        metrics::counter!("caracal_gateway_response_bytes_total").increment(bytes);
        let outcome = charged.outcome.as_str();
        metrics::counter!("caracal_settlements_total", "outcome" => outcome).increment(1);
        let currency = self.charge.priced.price.currency.to_string();
        metrics::counter!("caracal_metered_micros_total", "currency" => currency)
            .increment(u64::try_from(charged.cost.get()).unwrap_or(0));
    }

    /// Releases the hold of a call that never left.
    async fn void(self) {
        let key = self.charge.key;
        self.admission.untrack_hold(key.hold_id);
        if let Err(e) = self
            .admission
            .spend
            .settle(&key, Micros::ZERO, chrono::Utc::now())
            .await
        {
            tracing::warn!(error = %e, hold = %key, "could not void a hold; it will expire");
        }
    }
}
