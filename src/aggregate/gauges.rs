//! Prometheus gauges of each active policy's current spend against its limit, read from the
//! aggregates on a timer: `caracal_policy_spend_micros` and `caracal_policy_limit_micros`
//! (labels `policy_id`, `agent_id`, `agent`, `time_window`, `window_type`, `currency`), so a
//! dashboard or an alert can show "team at 93 % of its daily budget" as their ratio. The spend
//! is the policy agent's tree (the agent and every descendant), as the budget counts it.
//! Never decides anything; a policy that disappears has its spend gauge set to 0.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::keys::{window_periods, Scope};
use super::AggregateStore;
use crate::core::policy::BudgetPolicy;
use crate::http::Shutdown;
use crate::store::{AgentFilter, Store, StoreError};

/// How the gauges are refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaugeSettings {
    pub refresh: Duration,
    /// Most policies given gauges (the rest are skipped, with a warning): each is two series.
    pub policies_max: usize,
}

/// The label values of one policy's gauges.
type Labels = [(&'static str, String); 6];

fn labels(policy: &BudgetPolicy, agent_name: &str) -> Labels {
    [
        ("policy_id", policy.id.to_string()),
        ("agent_id", policy.agent_id.to_string()),
        ("agent", agent_name.to_owned()),
        ("time_window", policy.spec.time_window.as_str().to_owned()),
        ("window_type", policy.spec.window_type.as_str().to_owned()),
        ("currency", policy.spec.currency.to_string()),
    ]
}

/// The current spend of `policy`'s window at `now`, in its currency.
pub async fn policy_spend(
    aggregates: &dyn AggregateStore,
    policy: &BudgetPolicy,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let periods = window_periods(policy.spec.time_window, policy.spec.window_type, now);
    let totals = aggregates
        .read(Scope::Tree, policy.agent_id, &periods)
        .await?;
    Ok(totals.spend(policy.spec.currency))
}

/// One refresh: sets every active policy's gauges; returns the label sets set.
async fn refresh(
    store: &dyn Store,
    aggregates: &dyn AggregateStore,
    settings: GaugeSettings,
) -> Result<BTreeSet<Labels>, StoreError> {
    let now = Utc::now();
    let names: HashMap<_, _> = store
        .list_agents(&AgentFilter::default())
        .await?
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();
    let mut policies: Vec<BudgetPolicy> = store
        .list_policies(None)
        .await?
        .into_iter()
        .filter(|p| p.spec.active)
        .collect();
    if policies.len() > settings.policies_max {
        tracing::warn!(
            policies = policies.len(),
            max = settings.policies_max,
            "more active policies than consumers.metricsAggregator.policyGaugesMax; the rest have no gauges"
        );
        policies.truncate(settings.policies_max);
    }
    let mut set = BTreeSet::new();
    for policy in &policies {
        let spend = policy_spend(aggregates, policy, now).await?;
        let name = names.get(&policy.agent_id).map_or("", String::as_str);
        let labels = labels(policy, name);
        metrics::gauge!("caracal_policy_spend_micros", &labels).set(spend as f64);
        metrics::gauge!("caracal_policy_limit_micros", &labels)
            .set(policy.spec.limit_micros.get() as f64);
        set.insert(labels);
    }
    Ok(set)
}

/// Refreshes the gauges every `settings.refresh` until shutdown.
pub async fn run(
    store: Arc<dyn Store>,
    aggregates: Arc<dyn AggregateStore>,
    settings: GaugeSettings,
    mut shutdown: Shutdown,
) {
    let mut previous: BTreeSet<Labels> = BTreeSet::new();
    loop {
        match refresh(store.as_ref(), aggregates.as_ref(), settings).await {
            Ok(now) => {
                for gone in previous.difference(&now) {
                    metrics::gauge!("caracal_policy_spend_micros", gone).set(0.0);
                }
                previous = now;
            }
            Err(e) => tracing::warn!(error = %e, "policy gauges not refreshed; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(settings.refresh) => {}
            () = shutdown.wait() => return,
        }
    }
}
