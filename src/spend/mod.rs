//! The spend cache: atomic reservations (holds) over every window of every policy of an agent's
//! chain, their settlement, and the settled spend per policy bucket. The trait and its types live
//! here; `local` is the in-process implementation (Redis implements the same trait), and
//! `conformance` is the behaviour every implementation must show.
//! Knows nothing of HTTP or Kafka; reads no clock (every instant is an argument).

#[cfg(test)]
pub mod conformance;
pub mod local;
pub mod nonces;
pub mod redis;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::core::agent::{AgentChain, AgentId};
use crate::core::decision::{Decision, PolicyUsage};
use crate::core::events::Source;
use crate::core::money::{Currency, Micros, Money};
use crate::core::policy::{BudgetPolicy, PolicyId};

/// The id of one hold (a provisional charge); also the MeteringEvent's `reservation_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HoldId(pub Uuid);

impl fmt::Display for HoldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How a hold is addressed: its tree's root agent (every key of a tree shares it, so a Redis
/// implementation keeps one tree in one hash slot) and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HoldKey {
    pub root_agent_id: AgentId,
    pub hold_id: HoldId,
}

impl fmt::Display for HoldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.root_agent_id, self.hold_id)
    }
}

/// One call to reserve for: who, what, how much, until when.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    /// Chosen by the caller (UUIDv7), so a caller that lost the answer can still void it.
    pub hold_id: HoldId,
    pub chain: AgentChain,
    /// Every live policy of every chain member; inactive ones are ignored.
    pub policies: Vec<BudgetPolicy>,
    /// `provider:model` or `mcp:server/tool`, matched against allowlists.
    pub resource: String,
    /// The front door that admitted the call; an expired hold is metered as this source.
    pub source: Source,
    /// The operation (`chat.completions`, `tools/call`), kept for the expired hold's event.
    pub operation: String,
    pub estimate: Money,
    pub now: DateTime<Utc>,
    /// When the sweeper may post the hold as charged; must be after `now`.
    pub expires_at: DateTime<Utc>,
}

impl ReserveRequest {
    /// Refuses a request no implementation may record: an expiry not after `now`, a resource
    /// name over `resource_bytes_max`, more than `hold_policies_max` active policies.
    pub fn check(
        &self,
        resource_bytes_max: usize,
        hold_policies_max: usize,
    ) -> Result<(), SpendError> {
        if self.expires_at <= self.now {
            return Err(SpendError::Invalid(format!(
                "hold expires at {} which is not after now ({})",
                self.expires_at, self.now
            )));
        }
        if self.resource.len() > resource_bytes_max {
            return Err(SpendError::Invalid(format!(
                "resource name longer than {resource_bytes_max} bytes"
            )));
        }
        let active = self.policies.iter().filter(|p| p.spec.active).count();
        if active > hold_policies_max {
            return Err(SpendError::Invalid(format!(
                "{active} active policies on the chain; at most {hold_policies_max} per hold"
            )));
        }
        Ok(())
    }
}

/// A hold that was recorded: the call may go ahead.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub hold_id: HoldId,
    pub root_agent_id: AgentId,
    /// The allowing decision (`allowed == true`), with every policy's usage before this hold.
    pub decision: Decision,
    /// The bucket of each active policy the hold counts in; settlement posts to exactly these.
    pub charged: Vec<(PolicyId, DateTime<Utc>)>,
    /// What is held: the estimate, never negative.
    pub amount: Micros,
}

impl Reservation {
    pub fn key(&self) -> HoldKey {
        HoldKey {
            root_agent_id: self.root_agent_id,
            hold_id: self.hold_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReserveOutcome {
    Reserved(Reservation),
    /// Nothing was held; the decision names the reason (`budget_exceeded`, ...).
    Denied(Decision),
}

/// What a settle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub hold_id: HoldId,
    /// The amount that was held.
    pub reserved: Micros,
    /// The amount posted to each of the hold's buckets (the actual cost; may exceed `reserved`).
    pub posted: Micros,
}

/// A live hold as recorded: enough to list it, or to meter it when it expires unsettled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldInfo {
    pub hold_id: HoldId,
    pub agent_id: AgentId,
    /// The agent's ancestors, nearest first.
    pub ancestor_ids: Vec<AgentId>,
    pub root_agent_id: AgentId,
    pub resource: String,
    pub source: Source,
    pub operation: String,
    pub amount: Micros,
    pub currency: Currency,
    pub charged: Vec<(PolicyId, DateTime<Utc>)>,
    pub reserved_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl HoldInfo {
    pub fn key(&self) -> HoldKey {
        HoldKey {
            root_agent_id: self.root_agent_id,
            hold_id: self.hold_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpendError {
    /// Settled, swept, or never reserved here. Nothing was posted.
    #[error("hold {0} not found: already settled, expired, or never reserved")]
    HoldNotFound(HoldId),
    #[error("hold {0} already exists")]
    DuplicateHold(HoldId),
    /// A memory bound was reached; the caller fails closed (503).
    #[error("spend cache full: {what} at its limit of {max}")]
    Full { what: &'static str, max: usize },
    /// The journal queue is full; the caller fails closed (503) and may retry later.
    #[error("spend journal overloaded: {max} operations already pending")]
    Overloaded { max: usize },
    #[error("invalid spend request: {0}")]
    Invalid(String),
    /// The backend cannot serve (journal failed or closed, lock poisoned, timeout).
    #[error("spend cache unavailable: {0}")]
    Unavailable(String),
    #[error("spend journal is inconsistent: {0}")]
    Corrupt(String),
}

/// Where a shared spend cache stands after a data loss (`SpendCache::check_epoch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochState {
    /// Bumped each time this process finds the cache's data was lost (a new epoch); a process
    /// re-asserts its live holds once per generation.
    pub generation: u64,
    /// False while the cache waits for every live process to re-assert its holds: `reserve`
    /// refuses meanwhile.
    pub admitting: bool,
}

/// What is recorded, outside the cache, as spent against a policy: the source a shared cache
/// that lost its data rebuilds settled spend from (the ledger, and metering events the ledger
/// has not applied yet).
#[async_trait]
pub trait SpendRecord: Send + Sync {
    /// The recorded spend of `policy` (its agent and every descendant, in the policy's
    /// currency) in each bucket of its frame at `now`: `(bucket start, micro-units)`, buckets
    /// with nothing left out. Read fresh on every call.
    async fn recorded(
        &self,
        policy: &BudgetPolicy,
        now: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, Micros)>, SpendError>;
}

/// Atomic reservations over an agent chain's budgets. Every method that changes state is durable
/// before it returns `Ok`. An `Err` from `reserve` other than a denial may still have recorded the
/// hold (e.g. a commit timeout): a caller that does not forward the call voids it with
/// `settle(hold_id, 0, at)`, and `HoldNotFound` then just means there was nothing to void.
#[async_trait]
pub trait SpendCache: Send + Sync {
    /// One atomic check-and-hold: computes every active policy's usage in its current frame
    /// (settled + reserved by live holds), runs `core::decision::decide`, and records the hold in
    /// each active policy's current bucket only if the call is allowed.
    async fn reserve(&self, req: ReserveRequest) -> Result<ReserveOutcome, SpendError>;

    /// Posts `actual` (which may exceed the hold) to the hold's buckets and voids the rest. A hold
    /// that is no longer live (settled, swept) is `HoldNotFound` and nothing is posted twice. A
    /// hold past its expiry that the sweeper has not taken yet still settles at `actual`. `at` is
    /// when the call ended; the charge goes to the buckets of the reservation whatever `at` is,
    /// so a call reserved before midnight is charged to the day it was allowed in.
    async fn settle(
        &self,
        hold: &HoldKey,
        actual: Micros,
        at: DateTime<Utc>,
    ) -> Result<Settlement, SpendError>;

    /// Moves a live hold's expiry (a stream still flowing); `HoldNotFound` if it is gone.
    async fn extend(&self, hold: &HoldKey, expires_at: DateTime<Utc>) -> Result<(), SpendError>;

    /// How many expiry shards `expired` reads; every hold is in exactly one. Several sweepers
    /// (one per gateway replica) each read every shard; no single key is hot.
    fn expiry_shards(&self) -> u32 {
        1
    }

    /// Up to `max` live holds of `shard` with `expires_at <= now`, earliest expiry first. Removes
    /// and posts nothing: a hold that outlived its expiry belongs to a request whose settlement
    /// never came (a crash, a lost task), so the caller publishes its `estimated` MeteringEvent
    /// durably first and only then settles it at its full amount. A hold settled meanwhile by
    /// another process is then `HoldNotFound` and is not charged twice. An implementation may
    /// drop buckets that have aged out of every frame here (nothing a policy can see changes).
    async fn expired(
        &self,
        shard: u32,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<HoldInfo>, SpendError>;

    /// Usage of each policy of `root`'s tree in its frame at `now`, as `reserve` would see it.
    /// Changes nothing.
    async fn spent(
        &self,
        root: AgentId,
        policies: &[BudgetPolicy],
        now: DateTime<Utc>,
    ) -> Result<Vec<PolicyUsage>, SpendError>;

    /// Up to `max` live holds, earliest expiry first (`provisional-charges list`).
    async fn list_holds(&self, max: usize) -> Result<Vec<HoldInfo>, SpendError>;

    /// Replay protection: records `nonce` until `expires_at`; false when it was already seen
    /// within its window (shared by every gateway that shares this cache).
    async fn remember_nonce(
        &self,
        nonce: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, SpendError>;

    /// Ok when the cache can serve and persist right now (readiness).
    async fn ping(&self) -> Result<(), SpendError>;

    /// How often a process should call `check_epoch`; `None` for a cache that cannot lose its
    /// data behind the process's back (the in-process one, rebuilt from its journal).
    fn epoch_check_every(&self) -> Option<std::time::Duration> {
        None
    }

    /// Finds whether the cache lost its data since this process last looked (its epoch is gone
    /// or changed) and starts a new epoch if so. A process whose generation moved re-asserts
    /// every hold it still tracks (`reassert`); `reserve` refuses until `admitting`.
    async fn check_epoch(&self) -> Result<EpochState, SpendError> {
        Ok(EpochState {
            generation: 0,
            admitting: true,
        })
    }

    /// Records `hold` again, with its reservation in each of its buckets, if the cache lost
    /// it: true when it was recreated. Changes nothing (false) when the hold is there, or was
    /// settled or swept in the last while (a hold is never resurrected after its settlement).
    async fn reassert(&self, hold: &HoldInfo) -> Result<bool, SpendError> {
        let _ = hold;
        Ok(false)
    }
}
