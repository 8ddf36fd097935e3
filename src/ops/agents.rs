//! Agent operations: create, read, list, update, suspend, reactivate, delete.
//! Validation of names, metadata and parent ids happens here, before the store is touched.

use serde::Deserialize;

use super::{invalid, Ops, OpsError};
use crate::core::agent::{parse_metadata, validate_fields, Agent, AgentId, AgentStatus};
use crate::store::{AgentFilter, AgentPatch, Audit, NewAgent};

type Metadata = serde_json::Map<String, serde_json::Value>;

/// `agent create` / `POST /v1/agents`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    pub name: String,
    #[serde(rename = "type", default)]
    pub agent_type: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default, alias = "parent")]
    pub parent_id: Option<String>,
}

/// `agent update` / `PATCH /v1/agents/{id}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentUpdateInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub agent_type: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

/// Parses an agent id given by a user.
pub fn parse_agent_id(text: &str) -> Result<AgentId, OpsError> {
    text.parse().map_err(invalid)
}

/// Parses `--metadata '{json}'`.
pub fn parse_metadata_arg(text: &str) -> Result<Metadata, OpsError> {
    parse_metadata(text).map_err(invalid)
}

impl Ops {
    pub async fn create_agent(&self, input: AgentInput, audit: &Audit) -> Result<Agent, OpsError> {
        let metadata = input.metadata.unwrap_or_default();
        let name = input.name.trim().to_owned();
        validate_fields(&name, &metadata).map_err(invalid)?;
        let parent_id = match input.parent_id.as_deref() {
            Some(text) => {
                let id = parse_agent_id(text)?;
                // A missing parent is the user's mistake, not a missing route: say so as 400.
                match self.store.get_agent(id).await? {
                    Some(_) => Some(id),
                    None => return Err(OpsError::Invalid(format!("unknown parent agent {id}"))),
                }
            }
            None => None,
        };
        let new = NewAgent {
            id: AgentId::new(),
            name,
            agent_type: input.agent_type.unwrap_or_else(|| "generic".into()),
            parent_id,
            metadata,
            at: super::now(),
        };
        Ok(self.store.create_agent(new, audit).await?)
    }

    pub async fn get_agent(&self, id: &str) -> Result<Agent, OpsError> {
        let id = parse_agent_id(id)?;
        self.store
            .get_agent(id)
            .await?
            .ok_or_else(|| OpsError::NotFound {
                kind: "agent",
                id: id.to_string(),
            })
    }

    pub async fn list_agents(
        &self,
        parent: Option<&str>,
        include_deleted: bool,
    ) -> Result<Vec<Agent>, OpsError> {
        let parent_id = parent.map(parse_agent_id).transpose()?;
        Ok(self
            .store
            .list_agents(&AgentFilter {
                parent_id,
                include_deleted,
            })
            .await?)
    }

    pub async fn update_agent(
        &self,
        id: &str,
        input: AgentUpdateInput,
        audit: &Audit,
    ) -> Result<Agent, OpsError> {
        let id = parse_agent_id(id)?;
        if input.name.is_none() && input.agent_type.is_none() && input.metadata.is_none() {
            return Err(OpsError::Invalid(
                "nothing to update: give a name, type or metadata".into(),
            ));
        }
        let current = self
            .store
            .get_agent(id)
            .await?
            .ok_or_else(|| OpsError::NotFound {
                kind: "agent",
                id: id.to_string(),
            })?;
        let name = input
            .name
            .as_deref()
            .map(str::trim)
            .unwrap_or(&current.name)
            .to_owned();
        let metadata = input
            .metadata
            .clone()
            .unwrap_or_else(|| current.metadata.clone());
        validate_fields(&name, &metadata).map_err(invalid)?;
        let patch = AgentPatch {
            name: input.name.map(|n| n.trim().to_owned()),
            agent_type: input.agent_type,
            metadata: input.metadata,
        };
        Ok(self
            .store
            .update_agent(id, patch, super::now(), audit)
            .await?)
    }

    pub async fn set_agent_status(
        &self,
        id: &str,
        status: AgentStatus,
        audit: &Audit,
    ) -> Result<Agent, OpsError> {
        let id = parse_agent_id(id)?;
        Ok(self
            .store
            .set_agent_status(id, status, super::now(), audit)
            .await?)
    }
}
