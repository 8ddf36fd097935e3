//! `caracal policy create|list|get|update|delete|history`: budget policies, versioned.

use argh::FromArgs;

use super::output::{print_json, print_record, print_table, Output};
use super::{actor, ops};
use crate::config::Config;
use crate::core::policy::PolicySpec;
use crate::ops::{audit, PolicyInput, PolicyUpdateInput, PolicyView};

/// manage budget policies
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "policy")]
pub struct PolicyCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Create(Create),
    List(List),
    Get(Get),
    Update(Update),
    Delete(Delete),
    History(History),
}

/// create a budget policy for an agent
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "create")]
struct Create {
    /// agent id
    #[argh(option)]
    agent_id: String,
    /// spending limit, a decimal such as 1000.00
    #[argh(option)]
    limit: String,
    /// ISO 4217 currency (default USD)
    #[argh(option)]
    currency: Option<String>,
    /// hourly, daily, weekly, monthly or total
    #[argh(option)]
    time_window: String,
    /// calendar (default: resets at UTC boundaries) or rolling
    #[argh(option)]
    window_type: Option<String>,
    /// resource glob the policy allows (repeatable), e.g. openai:gpt-4o* or mcp:search/*
    #[argh(option)]
    allow: Vec<String>,
    /// why (recorded in the change event)
    #[argh(option)]
    reason: Option<String>,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// list live policies
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
struct List {
    /// only this agent's policies
    #[argh(option)]
    agent_id: Option<String>,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// show one policy
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "get")]
struct Get {
    /// policy id
    #[argh(positional)]
    id: String,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// change a policy (writes a new version)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "update")]
struct Update {
    /// policy id
    #[argh(positional)]
    id: String,
    /// new limit
    #[argh(option)]
    limit: Option<String>,
    /// new currency
    #[argh(option)]
    currency: Option<String>,
    /// new time window
    #[argh(option)]
    time_window: Option<String>,
    /// new window type
    #[argh(option)]
    window_type: Option<String>,
    /// replaces the allow list (repeatable)
    #[argh(option)]
    allow: Vec<String>,
    /// remove every allow pattern (allow all resources)
    #[argh(switch)]
    clear_allow: bool,
    /// true or false
    #[argh(option)]
    active: Option<bool>,
    /// fail if the policy is no longer at this version
    #[argh(option)]
    expected_version: Option<i64>,
    /// why (recorded in the change event)
    #[argh(option)]
    reason: Option<String>,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// delete a policy (its history is kept)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "delete")]
struct Delete {
    /// policy id
    #[argh(positional)]
    id: String,
    /// why (recorded in the change event)
    #[argh(option)]
    reason: Option<String>,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// every version of a policy with its before and after
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "history")]
struct History {
    /// policy id
    #[argh(positional)]
    id: String,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

pub async fn run(cmd: PolicyCmd, config: &Config) -> anyhow::Result<()> {
    let ops = ops(config).await?;
    match cmd.cmd {
        Sub::Create(c) => {
            let input = PolicyInput {
                agent_id: c.agent_id,
                limit: c.limit,
                currency: c.currency,
                time_window: c.time_window,
                window_type: c.window_type,
                allow: c.allow,
                active: None,
            };
            print_record(
                c.output,
                &ops.create_policy(input, &audit(actor(), c.reason)).await?,
            )
        }
        Sub::List(c) => print_policies(c.output, &ops.list_policies(c.agent_id.as_deref()).await?),
        Sub::Get(c) => print_record(c.output, &ops.get_policy(&c.id).await?),
        Sub::Update(c) => {
            if c.clear_allow && !c.allow.is_empty() {
                anyhow::bail!("--clear-allow and --allow contradict each other");
            }
            let allow = if c.clear_allow {
                Some(Vec::new())
            } else if c.allow.is_empty() {
                None
            } else {
                Some(c.allow)
            };
            let input = PolicyUpdateInput {
                limit: c.limit,
                currency: c.currency,
                time_window: c.time_window,
                window_type: c.window_type,
                allow,
                active: c.active,
                expected_version: c.expected_version,
            };
            let view = ops
                .update_policy(&c.id, input, &audit(actor(), c.reason))
                .await?;
            print_record(c.output, &view)
        }
        Sub::Delete(c) => print_record(
            c.output,
            &ops.delete_policy(&c.id, &audit(actor(), c.reason)).await?,
        ),
        Sub::History(c) => {
            let versions = ops.policy_history(&c.id).await?;
            if c.output == Output::Json {
                return print_json(&versions);
            }
            let rows: Vec<Vec<String>> = versions
                .iter()
                .map(|v| {
                    vec![
                        v.version.to_string(),
                        format!("{:?}", v.action).to_lowercase(),
                        spec_summary(v.before.as_ref()),
                        spec_summary(v.after.as_ref()),
                        v.actor.clone(),
                        v.reason.clone().unwrap_or_else(|| "-".into()),
                        v.at.to_rfc3339(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "VERSION", "ACTION", "BEFORE", "AFTER", "ACTOR", "REASON", "AT",
                ],
                &rows,
            );
            Ok(())
        }
    }
}

fn spec_summary(spec: Option<&PolicySpec>) -> String {
    spec.map_or_else(
        || "-".into(),
        |s| {
            let allow = if s.allow.is_empty() {
                String::new()
            } else {
                format!(" allow={}", s.allow.join(","))
            };
            let state = if s.active { "" } else { " inactive" };
            format!(
                "{} {} {}/{}{allow}{state}",
                s.limit_micros,
                s.currency,
                s.time_window.as_str(),
                s.window_type.as_str()
            )
        },
    )
}

fn print_policies(output: Output, policies: &[PolicyView]) -> anyhow::Result<()> {
    if output == Output::Json {
        return print_json(policies);
    }
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                p.agent_id.to_string(),
                format!("{} {}", p.limit, p.currency),
                p.time_window.as_str().to_owned(),
                p.window_type.as_str().to_owned(),
                if p.allow.is_empty() {
                    "*".into()
                } else {
                    p.allow.join(",")
                },
                p.version.to_string(),
                p.active.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "AGENT", "LIMIT", "WINDOW", "TYPE", "ALLOW", "VERSION", "ACTIVE",
        ],
        &rows,
    );
    Ok(())
}
