//! The system of record behind one trait: agents, API keys, versioned policies, the pricebook,
//! and the admin outbox. `sqlite/` is the embedded implementation; `postgres/` implements the same
//! trait. Stores validate nothing about business rules (that is `ops`), but every change they
//! make writes its admin event into the outbox in the same transaction.

pub mod audit;
pub mod leases;
pub mod ledger;
pub mod outbox;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::agent::{Agent, AgentChain, AgentId, AgentStatus};
use crate::core::events::AdminEvent;
use crate::core::policy::{BudgetPolicy, PolicyId, PolicySpec};
use crate::core::pricing::{PriceEntry, Pricebook};

/// Most rows any list call returns.
pub const LIST_ROWS_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store data is inconsistent: {0}")]
    Corrupt(String),
    /// A consumer's lease was taken over; nothing of its transaction was written.
    #[error("lease lost: {0}")]
    Fenced(String),
}

/// Who made a change and why; recorded in the change's outbox event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    pub actor: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewAgent {
    pub id: AgentId,
    pub name: String,
    pub agent_type: String,
    pub parent_id: Option<AgentId>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub at: DateTime<Utc>,
}

/// Fields an update may change; `None` keeps the current value. The parent is fixed at creation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub agent_type: Option<String>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKeyId(pub Uuid);

/// An API key as stored: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    pub id: ApiKeyId,
    pub agent_id: AgentId,
    pub name: String,
    /// The first characters of the secret, so an operator can tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub hash: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub agent_id: AgentId,
    pub name: String,
    pub prefix: String,
    pub hash: [u8; 32],
    pub expires_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// One version of a policy as kept in its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub policy_id: PolicyId,
    pub version: i64,
    pub action: ChangeKind,
    pub before: Option<PolicySpec>,
    pub after: Option<PolicySpec>,
    pub actor: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// An agent's chain and every policy of every member (the agent's and all its ancestors').
#[derive(Debug, Clone)]
pub struct ChainPolicies {
    pub chain: AgentChain,
    pub policies: Vec<BudgetPolicy>,
}

/// An outbox row: an admin event waiting to be relayed to the event bus.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub id: i64,
    pub event: AdminEvent,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    pub parent_id: Option<AgentId>,
    pub include_deleted: bool,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Creates an agent; the parent, when given, must exist and not be deleted.
    async fn create_agent(&self, new: NewAgent, audit: &Audit) -> Result<Agent, StoreError>;
    async fn get_agent(&self, id: AgentId) -> Result<Option<Agent>, StoreError>;
    async fn list_agents(&self, filter: &AgentFilter) -> Result<Vec<Agent>, StoreError>;
    async fn update_agent(
        &self,
        id: AgentId,
        patch: AgentPatch,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<Agent, StoreError>;
    /// Suspends, reactivates or (soft-)deletes. Deleting an agent with live children or
    /// changing a deleted agent is a conflict.
    async fn set_agent_status(
        &self,
        id: AgentId,
        status: AgentStatus,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<Agent, StoreError>;

    async fn create_api_key(&self, key: NewApiKey, audit: &Audit)
        -> Result<ApiKeyInfo, StoreError>;
    async fn list_api_keys(&self, agent_id: Option<AgentId>)
        -> Result<Vec<ApiKeyInfo>, StoreError>;
    async fn revoke_api_key(
        &self,
        id: ApiKeyId,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<ApiKeyInfo, StoreError>;
    /// The key whose SHA-256 is `hash`, revoked or not (the caller decides).
    async fn find_api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyInfo>, StoreError>;

    async fn create_policy(
        &self,
        id: PolicyId,
        agent_id: AgentId,
        spec: PolicySpec,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<BudgetPolicy, StoreError>;
    async fn get_policy(&self, id: PolicyId) -> Result<Option<BudgetPolicy>, StoreError>;
    /// Live (not deleted) policies, of one agent or of all.
    async fn list_policies(
        &self,
        agent_id: Option<AgentId>,
    ) -> Result<Vec<BudgetPolicy>, StoreError>;
    /// Writes `spec` as the next version. With `expected_version`, a concurrent change is a conflict.
    async fn update_policy(
        &self,
        id: PolicyId,
        spec: PolicySpec,
        expected_version: Option<i64>,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<BudgetPolicy, StoreError>;
    async fn delete_policy(
        &self,
        id: PolicyId,
        at: DateTime<Utc>,
        audit: &Audit,
    ) -> Result<BudgetPolicy, StoreError>;
    async fn policy_history(&self, id: PolicyId) -> Result<Vec<PolicyVersion>, StoreError>;

    /// The agent, its ancestors and all their live policies, read in one transaction.
    async fn load_chain(&self, agent_id: AgentId) -> Result<Option<ChainPolicies>, StoreError>;

    /// Upserts prices and bumps the pricebook version; returns the new version.
    async fn set_prices(
        &self,
        entries: Vec<PriceEntry>,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError>;
    async fn pricebook(&self) -> Result<Pricebook, StoreError>;
    async fn list_prices(&self) -> Result<Vec<PriceEntry>, StoreError>;

    /// Outbox rows with id greater than `after_id`, oldest first, at most `limit`.
    async fn outbox_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError>;

    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Constant-time equality of two hashes.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
