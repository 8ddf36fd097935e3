//! Admin operations shared by the CLI and the admin HTTP API: parse and validate user input,
//! build domain values, call the store. Knows nothing of argv, HTTP or output formats, so the
//! two front ends cannot drift; business rules about admin changes live here and only here.

mod agents;
mod keys;
mod policies;
mod prices;
pub mod token;

use std::sync::Arc;

use crate::store::{Audit, Store, StoreError};

pub use agents::{parse_agent_id, parse_metadata_arg, AgentInput, AgentUpdateInput};
pub use keys::{hash_key, CreatedKey, KeyInput, API_KEY_PREFIX};
pub use policies::{PolicyInput, PolicyUpdateInput, PolicyVersionView, PolicyView};
pub use prices::{PriceInput, PriceView};

/// What went wrong with an admin operation, in terms the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The input is malformed or breaks a rule; nothing was written.
    #[error("{0}")]
    Invalid(String),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
}

impl OpsError {
    /// Machine-readable code used in API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            OpsError::Invalid(_) => "invalid_request",
            OpsError::NotFound { .. } => "not_found",
            OpsError::Conflict(_) => "conflict",
            OpsError::Unavailable(_) => "dependency_unavailable",
        }
    }

    /// HTTP status for the admin API.
    pub fn http_status(&self) -> u16 {
        match self {
            OpsError::Invalid(_) => 400,
            OpsError::NotFound { .. } => 404,
            OpsError::Conflict(_) => 409,
            OpsError::Unavailable(_) => 503,
        }
    }
}

impl From<StoreError> for OpsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, id } => OpsError::NotFound { kind, id },
            StoreError::Conflict(m) | StoreError::Fenced(m) => OpsError::Conflict(m),
            StoreError::Unavailable(m) => OpsError::Unavailable(format!("store unavailable: {m}")),
            StoreError::Corrupt(m) => {
                OpsError::Unavailable(format!("store data inconsistent: {m}"))
            }
        }
    }
}

pub(crate) fn invalid(e: impl std::fmt::Display) -> OpsError {
    OpsError::Invalid(e.to_string())
}

/// The admin operations over one store.
#[derive(Clone)]
pub struct Ops {
    store: Arc<dyn Store>,
}

impl Ops {
    pub fn new(store: Arc<dyn Store>) -> Ops {
        Ops { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// The current time at the store's precision (microseconds), so what a change returns is
/// exactly what reading it back returns.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Builds the audit record of a change, trimming an empty reason to none.
pub fn audit(actor: impl Into<String>, reason: Option<String>) -> Audit {
    Audit {
        actor: actor.into(),
        reason: reason.filter(|r| !r.trim().is_empty()),
    }
}
