//! Budget policies: their versioned specification (limit, currency, window, allowlist) and
//! validation. Window arithmetic lives in `window.rs`, the decision over a chain in `decision.rs`.
//! Pure data: no clock is read here; callers pass `now`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::agent::AgentId;
use crate::core::money::{Currency, Micros};

/// Most allowlist patterns on one policy.
pub const ALLOW_PATTERNS_MAX: usize = 64;
/// Longest allowlist pattern, in bytes.
pub const ALLOW_PATTERN_BYTES_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PolicyId(pub Uuid);

impl PolicyId {
    pub fn new() -> PolicyId {
        PolicyId(Uuid::now_v7())
    }
}

impl Default for PolicyId {
    fn default() -> Self {
        PolicyId::new()
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for PolicyId {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(PolicyId)
            .map_err(|_| PolicyError::MalformedId(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("malformed policy id {0:?}: expected a UUID")]
    MalformedId(String),
    #[error("unknown time window {0:?}: expected hourly, daily, weekly, monthly or total")]
    UnknownWindow(String),
    #[error("unknown window type {0:?}: expected calendar or rolling")]
    UnknownWindowType(String),
    #[error("limit must not be negative (got {0})")]
    NegativeLimit(Micros),
    #[error("a total window has no rolling form: use --window-type calendar")]
    RollingTotal,
    #[error(
        "invalid allow pattern {0:?}: expected provider:model or mcp:server/tool globs (*, ?)"
    )]
    BadPattern(String),
    #[error("at most {ALLOW_PATTERNS_MAX} allow patterns per policy")]
    TooManyPatterns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeWindow {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Total,
}

impl TimeWindow {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeWindow::Hourly => "hourly",
            TimeWindow::Daily => "daily",
            TimeWindow::Weekly => "weekly",
            TimeWindow::Monthly => "monthly",
            TimeWindow::Total => "total",
        }
    }
}

impl FromStr for TimeWindow {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hourly" => Ok(TimeWindow::Hourly),
            "daily" => Ok(TimeWindow::Daily),
            "weekly" => Ok(TimeWindow::Weekly),
            "monthly" => Ok(TimeWindow::Monthly),
            "total" => Ok(TimeWindow::Total),
            other => Err(PolicyError::UnknownWindow(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowType {
    /// Resets at UTC boundaries (hour, midnight, ISO Monday, first of the month).
    Calendar,
    /// The trailing duration ending now, counted in fixed sub-buckets (see `window.rs`).
    Rolling,
}

impl WindowType {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowType::Calendar => "calendar",
            WindowType::Rolling => "rolling",
        }
    }
}

impl FromStr for WindowType {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "calendar" => Ok(WindowType::Calendar),
            "rolling" => Ok(WindowType::Rolling),
            other => Err(PolicyError::UnknownWindowType(other.to_owned())),
        }
    }
}

/// What a policy says, as one version of it. This is also the `PolicySnapshot` carried as
/// `before`/`after` in PolicyChange events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySpec {
    pub limit_micros: Micros,
    pub currency: Currency,
    pub time_window: TimeWindow,
    pub window_type: WindowType,
    /// Globs over `provider:model` / `mcp:server/tool`; empty means every resource.
    pub allow: Vec<String>,
    pub active: bool,
}

impl PolicySpec {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.limit_micros.is_negative() {
            return Err(PolicyError::NegativeLimit(self.limit_micros));
        }
        if self.time_window == TimeWindow::Total && self.window_type == WindowType::Rolling {
            return Err(PolicyError::RollingTotal);
        }
        if self.allow.len() > ALLOW_PATTERNS_MAX {
            return Err(PolicyError::TooManyPatterns);
        }
        for pattern in &self.allow {
            validate_pattern(pattern)?;
        }
        Ok(())
    }
}

/// An allow pattern is `<provider glob>:<resource glob>`, printable ASCII without spaces.
fn validate_pattern(pattern: &str) -> Result<(), PolicyError> {
    let bad = || PolicyError::BadPattern(pattern.to_owned());
    if pattern.is_empty() || pattern.len() > ALLOW_PATTERN_BYTES_MAX {
        return Err(bad());
    }
    if !pattern.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    match pattern.split_once(':') {
        Some((provider, resource)) if !provider.is_empty() && !resource.is_empty() => Ok(()),
        _ => Err(bad()),
    }
}

/// A policy at its current version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetPolicy {
    pub id: PolicyId,
    pub agent_id: AgentId,
    /// Starts at 1; every update or delete makes a new version.
    pub version: i64,
    #[serde(flatten)]
    pub spec: PolicySpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec() -> PolicySpec {
        PolicySpec {
            limit_micros: Micros(100_000),
            currency: Currency::USD,
            time_window: TimeWindow::Daily,
            window_type: WindowType::Calendar,
            allow: vec![],
            active: true,
        }
    }

    #[test]
    fn validation_names_what_is_wrong() {
        assert!(spec().validate().is_ok());
        let negative = PolicySpec {
            limit_micros: Micros(-1),
            ..spec()
        };
        assert_eq!(
            negative.validate(),
            Err(PolicyError::NegativeLimit(Micros(-1)))
        );
        let rolling_total = PolicySpec {
            time_window: TimeWindow::Total,
            window_type: WindowType::Rolling,
            ..spec()
        };
        assert_eq!(rolling_total.validate(), Err(PolicyError::RollingTotal));
        let pattern = PolicySpec {
            allow: vec!["gpt-4o".into()],
            ..spec()
        };
        assert!(matches!(
            pattern.validate(),
            Err(PolicyError::BadPattern(_))
        ));
        let ok = PolicySpec {
            allow: vec!["openai:gpt-4o*".into(), "mcp:search/*".into()],
            ..spec()
        };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn windows_parse_from_cli_words() {
        assert_eq!("weekly".parse::<TimeWindow>().unwrap(), TimeWindow::Weekly);
        assert!("fortnightly".parse::<TimeWindow>().is_err());
        assert!("sliding".parse::<WindowType>().is_err());
    }
}
