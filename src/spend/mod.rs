//! The spend cache: atomic reservations (holds) over every window of every policy of an agent's
//! chain, their settlement, and the settled spend per policy bucket. The trait and its types live
//! here; `local` is the in-process implementation (Redis implements the same trait).
//! Knows nothing of HTTP or Kafka; reads no clock (every instant is an argument).

pub mod local;
pub mod nonces;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::core::agent::{AgentChain, AgentId};
use crate::core::decision::{Decision, PolicyUsage};
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
    pub estimate: Money,
    pub now: DateTime<Utc>,
    /// When the sweeper may post the hold as charged; must be after `now`.
    pub expires_at: DateTime<Utc>,
}

/// A hold that was recorded: the call may go ahead.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub hold_id: HoldId,
    /// The allowing decision (`allowed == true`), with every policy's usage before this hold.
    pub decision: Decision,
    /// The bucket of each active policy the hold counts in; settlement posts to exactly these.
    pub charged: Vec<(PolicyId, DateTime<Utc>)>,
    /// What is held: the estimate, never negative.
    pub amount: Micros,
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

/// A live hold as recorded: enough to list it, or to meter it once the sweeper has posted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldInfo {
    pub hold_id: HoldId,
    pub agent_id: AgentId,
    /// The agent's ancestors, nearest first.
    pub ancestor_ids: Vec<AgentId>,
    pub root_agent_id: AgentId,
    pub resource: String,
    pub amount: Micros,
    pub currency: Currency,
    pub charged: Vec<(PolicyId, DateTime<Utc>)>,
    pub reserved_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A hold the sweeper removed; its full `amount` has been posted to its buckets, and the caller
/// owes the ledger an `estimated` MeteringEvent for it.
pub type ExpiredHold = HoldInfo;

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
        hold: HoldId,
        actual: Micros,
        at: DateTime<Utc>,
    ) -> Result<Settlement, SpendError>;

    /// Moves a live hold's expiry (a stream still flowing); `HoldNotFound` if it is gone.
    async fn extend(&self, hold: HoldId, expires_at: DateTime<Utc>) -> Result<(), SpendError>;

    /// Removes up to `max` holds with `expires_at <= now`, oldest expiry first, and posts each
    /// one's full amount as settled. A hold that outlived its expiry belongs to a request whose
    /// settlement never came (a crash, a lost task): charging the reservation is the "never lose
    /// a charge" choice. The caller emits an `estimated` MeteringEvent for each one returned.
    async fn take_expired(
        &self,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<ExpiredHold>, SpendError>;

    /// Usage of each policy in its frame at `now`, as `reserve` would see it. Changes nothing.
    async fn spent(
        &self,
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
}
