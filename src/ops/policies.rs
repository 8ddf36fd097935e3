//! Policy operations: create, read, list, update (a new version), delete, history.
//! Amounts arrive as decimal strings and leave as both the exact decimal and integer micros.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::agents::parse_agent_id;
use super::{invalid, Ops, OpsError};
use crate::core::agent::AgentStatus;
use crate::core::money::{Currency, Micros};
use crate::core::policy::{BudgetPolicy, PolicyId, PolicySpec, TimeWindow, WindowType};
use crate::store::{Audit, ChangeKind, PolicyVersion};

/// `policy create` / `POST /v1/policies`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    pub agent_id: String,
    /// Decimal amount, e.g. "1000.00".
    pub limit: String,
    /// ISO 4217 code; USD when absent.
    #[serde(default)]
    pub currency: Option<String>,
    pub time_window: String,
    /// calendar (default) or rolling.
    #[serde(default)]
    pub window_type: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub active: Option<bool>,
}

/// `policy update` / `PATCH /v1/policies/{id}`: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdateInput {
    #[serde(default)]
    pub limit: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub time_window: Option<String>,
    #[serde(default)]
    pub window_type: Option<String>,
    /// Replaces the allow list; an empty list allows every resource.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub active: Option<bool>,
    /// Refuse the update if the policy is no longer at this version.
    #[serde(default)]
    pub expected_version: Option<i64>,
}

/// A policy as shown to users: the limit both as an exact decimal and as integer micros.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    pub id: PolicyId,
    pub agent_id: crate::core::agent::AgentId,
    pub version: i64,
    pub limit: String,
    pub limit_micros: i64,
    pub currency: Currency,
    pub time_window: TimeWindow,
    pub window_type: WindowType,
    pub allow: Vec<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&BudgetPolicy> for PolicyView {
    fn from(p: &BudgetPolicy) -> Self {
        PolicyView {
            id: p.id,
            agent_id: p.agent_id,
            version: p.version,
            limit: p.spec.limit_micros.to_string(),
            limit_micros: p.spec.limit_micros.get(),
            currency: p.spec.currency,
            time_window: p.spec.time_window,
            window_type: p.spec.window_type,
            allow: p.spec.allow.clone(),
            active: p.spec.active,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// One entry of `policy history`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyVersionView {
    pub version: i64,
    pub action: ChangeKind,
    pub before: Option<PolicySpec>,
    pub after: Option<PolicySpec>,
    pub actor: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

impl From<PolicyVersion> for PolicyVersionView {
    fn from(v: PolicyVersion) -> Self {
        PolicyVersionView {
            version: v.version,
            action: v.action,
            before: v.before,
            after: v.after,
            actor: v.actor,
            reason: v.reason,
            at: v.at,
        }
    }
}

pub fn parse_policy_id(text: &str) -> Result<PolicyId, OpsError> {
    text.parse().map_err(invalid)
}

fn parse_limit(text: &str) -> Result<Micros, OpsError> {
    Micros::parse(text.trim()).map_err(|e| OpsError::Invalid(format!("invalid limit: {e}")))
}

impl Ops {
    pub async fn create_policy(
        &self,
        input: PolicyInput,
        audit: &Audit,
    ) -> Result<PolicyView, OpsError> {
        let agent_id = parse_agent_id(&input.agent_id)?;
        let spec = PolicySpec {
            limit_micros: parse_limit(&input.limit)?,
            currency: Currency::parse(input.currency.as_deref().unwrap_or("USD"))
                .map_err(invalid)?,
            time_window: input.time_window.parse().map_err(invalid)?,
            window_type: input
                .window_type
                .as_deref()
                .unwrap_or("calendar")
                .parse()
                .map_err(invalid)?,
            allow: input.allow,
            active: input.active.unwrap_or(true),
        };
        spec.validate().map_err(invalid)?;
        match self.store.get_agent(agent_id).await? {
            None => return Err(OpsError::Invalid(format!("unknown agent {agent_id}"))),
            Some(a) if a.status == AgentStatus::Deleted => {
                return Err(OpsError::Conflict(format!("agent {agent_id} is deleted")))
            }
            Some(_) => {}
        }
        let policy = self
            .store
            .create_policy(PolicyId::new(), agent_id, spec, super::now(), audit)
            .await?;
        Ok(PolicyView::from(&policy))
    }

    pub async fn get_policy(&self, id: &str) -> Result<PolicyView, OpsError> {
        let id = parse_policy_id(id)?;
        let policy = self
            .store
            .get_policy(id)
            .await?
            .ok_or_else(|| OpsError::NotFound {
                kind: "policy",
                id: id.to_string(),
            })?;
        Ok(PolicyView::from(&policy))
    }

    pub async fn list_policies(&self, agent_id: Option<&str>) -> Result<Vec<PolicyView>, OpsError> {
        let agent_id = agent_id.map(parse_agent_id).transpose()?;
        let policies = self.store.list_policies(agent_id).await?;
        Ok(policies.iter().map(PolicyView::from).collect())
    }

    pub async fn update_policy(
        &self,
        id: &str,
        input: PolicyUpdateInput,
        audit: &Audit,
    ) -> Result<PolicyView, OpsError> {
        let id = parse_policy_id(id)?;
        let current = self
            .store
            .get_policy(id)
            .await?
            .ok_or_else(|| OpsError::NotFound {
                kind: "policy",
                id: id.to_string(),
            })?;
        let mut spec = current.spec.clone();
        if let Some(limit) = &input.limit {
            spec.limit_micros = parse_limit(limit)?;
        }
        if let Some(currency) = &input.currency {
            spec.currency = Currency::parse(currency).map_err(invalid)?;
        }
        if let Some(window) = &input.time_window {
            spec.time_window = window.parse().map_err(invalid)?;
        }
        if let Some(kind) = &input.window_type {
            spec.window_type = kind.parse().map_err(invalid)?;
        }
        if let Some(allow) = input.allow {
            spec.allow = allow;
        }
        if let Some(active) = input.active {
            spec.active = active;
        }
        spec.validate().map_err(invalid)?;
        if spec == current.spec {
            return Err(OpsError::Invalid(
                "nothing to update: the policy already says that".into(),
            ));
        }
        let expected = input.expected_version.or(Some(current.version));
        let policy = self
            .store
            .update_policy(id, spec, expected, super::now(), audit)
            .await?;
        Ok(PolicyView::from(&policy))
    }

    pub async fn delete_policy(&self, id: &str, audit: &Audit) -> Result<PolicyView, OpsError> {
        let id = parse_policy_id(id)?;
        let policy = self.store.delete_policy(id, super::now(), audit).await?;
        Ok(PolicyView::from(&policy))
    }

    pub async fn policy_history(&self, id: &str) -> Result<Vec<PolicyVersionView>, OpsError> {
        let id = parse_policy_id(id)?;
        let versions = self.store.policy_history(id).await?;
        Ok(versions.into_iter().map(PolicyVersionView::from).collect())
    }
}
