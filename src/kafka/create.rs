//! `kafka create-topics` as a plan run against a cluster: creates the missing topics, reports
//! the ones that exist and how they differ from the plan. `dry_run` only reads.
//! Never alters or deletes an existing topic (drift is reported for the operator to decide).

use serde::Serialize;

use super::topics::{differences, Difference, TopicPlan};
use super::{Admin, KafkaError};

/// What happened to one topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Created,
    WouldCreate,
    /// Exists with the planned settings.
    Exists,
    /// Exists with other settings (see `differences`).
    Differs,
}

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub topic: String,
    pub action: Action,
    pub differences: Vec<Difference>,
}

/// Creates what is missing of `plans` (nothing when `dry_run`), one outcome per plan.
pub async fn ensure(
    admin: &mut Admin,
    plans: &[TopicPlan],
    dry_run: bool,
) -> Result<Vec<Outcome>, KafkaError> {
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    let existing = admin.existing(&names).await?;
    let missing: Vec<TopicPlan> = plans
        .iter()
        .filter(|p| !existing.contains_key(&p.name))
        .cloned()
        .collect();
    if !dry_run {
        admin.create_topics(&missing).await?;
    }
    Ok(plans
        .iter()
        .map(|plan| match existing.get(&plan.name) {
            None => Outcome {
                topic: plan.name.clone(),
                action: if dry_run {
                    Action::WouldCreate
                } else {
                    Action::Created
                },
                differences: Vec::new(),
            },
            Some(have) => {
                let differences = differences(plan, have);
                Outcome {
                    topic: plan.name.clone(),
                    action: if differences.is_empty() {
                        Action::Exists
                    } else {
                        Action::Differs
                    },
                    differences,
                }
            }
        })
        .collect())
}
