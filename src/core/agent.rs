//! Agents, their identity and status, and the ancestor chain a request is charged against.
//! Plain data and invariants only: loading a chain is the store's job.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Deepest agent hierarchy accepted (an agent plus up to 15 ancestors). Bounds the work of
/// every reservation, which touches each policy of the chain.
pub const HIERARCHY_DEPTH_MAX: usize = 16;
/// Longest agent name, in bytes.
pub const NAME_BYTES_MAX: usize = 200;
/// Largest metadata object, serialized, in bytes.
pub const METADATA_BYTES_MAX: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(pub Uuid);

impl AgentId {
    pub fn new() -> AgentId {
        AgentId(Uuid::now_v7())
    }
}

impl Default for AgentId {
    fn default() -> Self {
        AgentId::new()
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AgentId {
    type Err = AgentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(AgentId)
            .map_err(|_| AgentError::MalformedId(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("malformed agent id {0:?}: expected a UUID")]
    MalformedId(String),
    #[error("agent name must be 1 to {NAME_BYTES_MAX} bytes")]
    BadName,
    #[error("metadata must be a JSON object of at most {METADATA_BYTES_MAX} bytes")]
    BadMetadata,
    #[error("unknown agent status {0:?}: expected active, suspended or deleted")]
    UnknownStatus(String),
    #[error("agent hierarchy deeper than {HIERARCHY_DEPTH_MAX} levels")]
    TooDeep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Active,
    Suspended,
    /// Soft-deleted: kept so the ledger's references stay resolvable; never authenticates.
    Deleted,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
            AgentStatus::Deleted => "deleted",
        }
    }
}

impl FromStr for AgentStatus {
    type Err = AgentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(AgentStatus::Active),
            "suspended" => Ok(AgentStatus::Suspended),
            "deleted" => Ok(AgentStatus::Deleted),
            other => Err(AgentError::UnknownStatus(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub name: String,
    /// Free-form kind of agent, as v0.3's `--type` ("openai", "worker", ...).
    #[serde(rename = "type")]
    pub agent_type: String,
    pub parent_id: Option<AgentId>,
    pub status: AgentStatus,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Checks a name and metadata before they are stored.
pub fn validate_fields(
    name: &str,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), AgentError> {
    if name.trim().is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(AgentError::BadName);
    }
    let size = serde_json::to_vec(metadata).map_or(usize::MAX, |v| v.len());
    if size > METADATA_BYTES_MAX {
        return Err(AgentError::BadMetadata);
    }
    Ok(())
}

/// Parses `--metadata '{json}'`: must be a JSON object.
pub fn parse_metadata(
    text: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, AgentError> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(AgentError::BadMetadata),
    }
}

/// An agent and its ancestors, nearest first: `agents[0]` is the agent itself and the last
/// element is the root of its tree. A request is charged against every member.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentChain {
    agents: Vec<Agent>,
}

impl AgentChain {
    /// Builds a chain, checking that each element is the parent of the one before it.
    pub fn new(agents: Vec<Agent>) -> Result<AgentChain, AgentError> {
        if agents.is_empty() || agents.len() > HIERARCHY_DEPTH_MAX {
            return Err(AgentError::TooDeep);
        }
        debug_assert!(
            agents.windows(2).all(|w| w[0].parent_id == Some(w[1].id)),
            "chain links must follow parent ids"
        );
        debug_assert!(agents.last().is_some_and(|root| root.parent_id.is_none()));
        Ok(AgentChain { agents })
    }

    pub fn agent(&self) -> &Agent {
        &self.agents[0]
    }

    pub fn root(&self) -> &Agent {
        &self.agents[self.agents.len() - 1]
    }

    /// Ancestors nearest first, not including the agent itself.
    pub fn ancestors(&self) -> &[Agent] {
        &self.agents[1..]
    }

    pub fn members(&self) -> &[Agent] {
        &self.agents
    }

    /// The first member (the agent itself or an ancestor) that is not active, if any: a
    /// suspended team suspends all its agents.
    pub fn first_inactive(&self) -> Option<&Agent> {
        self.agents.iter().find(|a| a.status != AgentStatus::Active)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn agent(id: u128, parent: Option<u128>, status: AgentStatus) -> Agent {
        Agent {
            id: AgentId(Uuid::from_u128(id)),
            name: format!("a{id}"),
            agent_type: "worker".into(),
            parent_id: parent.map(|p| AgentId(Uuid::from_u128(p))),
            status,
            metadata: Default::default(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[test]
    fn chain_exposes_root_and_ancestors() {
        let chain = AgentChain::new(vec![
            agent(3, Some(2), AgentStatus::Active),
            agent(2, Some(1), AgentStatus::Active),
            agent(1, None, AgentStatus::Active),
        ])
        .unwrap();
        assert_eq!(chain.agent().id, AgentId(Uuid::from_u128(3)));
        assert_eq!(chain.root().id, AgentId(Uuid::from_u128(1)));
        assert_eq!(chain.ancestors().len(), 2);
        assert!(chain.first_inactive().is_none());
    }

    #[test]
    fn a_suspended_parent_makes_the_chain_inactive() {
        let chain = AgentChain::new(vec![
            agent(2, Some(1), AgentStatus::Active),
            agent(1, None, AgentStatus::Suspended),
        ])
        .unwrap();
        assert_eq!(
            chain.first_inactive().unwrap().id,
            AgentId(Uuid::from_u128(1))
        );
    }

    #[test]
    fn metadata_must_be_an_object() {
        assert!(parse_metadata(r#"{"team":"platform","env":"prod"}"#).is_ok());
        assert!(parse_metadata("[1,2]").is_err());
        assert!(parse_metadata("{bad").is_err());
    }
}
