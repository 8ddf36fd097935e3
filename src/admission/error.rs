//! Why admission refuses a call, in terms every entry point maps to its own protocol (the
//! gateway to an HTTP status and an OpenAI-style body, the MCP adapter to a JSON-RPC error).
//! Builds no response itself.

use crate::core::decision::{Decision, DenyReason};
use crate::core::money::Micros;
use crate::core::policy::PolicyId;

#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No valid credential, or one naming no known agent.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A policy decision: over budget, resource not allowed, suspended, unknown price.
    #[error("request denied: {reason}")]
    Denied {
        reason: DenyReason,
        policy_id: Option<PolicyId>,
        remaining: Option<Micros>,
    },
    /// A dependency (store, spend cache, event bus) could not serve in time: fail closed.
    #[error("{what} unavailable: {detail}")]
    Unavailable { what: &'static str, detail: String },
}

impl Refusal {
    pub fn unavailable(what: &'static str, error: impl std::fmt::Display) -> Refusal {
        Refusal::Unavailable {
            what,
            detail: error.to_string(),
        }
    }

    /// The refusal of a denying decision.
    pub fn denied(decision: &Decision) -> Refusal {
        debug_assert!(!decision.allowed, "a refusal needs a denying decision");
        Refusal::Denied {
            reason: decision.reason.unwrap_or(DenyReason::BudgetExceeded),
            policy_id: decision.policy_id,
            remaining: decision.remaining,
        }
    }
}
