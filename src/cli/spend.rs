//! `caracal spend show`: an agent's real-time spend from the metrics role's aggregates in Redis
//! (today, UTC) and each of its policies' current window against the limit. Formatting only:
//! the windows and sums come from `aggregate`.

use argh::FromArgs;
use serde::Serialize;

use super::output::{print_json, print_table, Output};
use crate::aggregate::gauges::policy_spend;
use crate::aggregate::keys::{Period, Scope, Totals};
use crate::aggregate::AggregateStore;
use crate::config::Config;
use crate::core::money::Micros;

/// real-time spend from the metrics role's aggregates (Redis)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "spend")]
pub struct SpendCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Show(Show),
}

/// an agent's spend today (UTC) and each of its policies' current window
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "show")]
struct Show {
    /// agent id
    #[argh(option)]
    agent_id: String,
    /// today's figures include every descendant of the agent (policies always do)
    #[argh(switch)]
    include_children: bool,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

#[derive(Serialize)]
struct PolicyRow {
    policy_id: String,
    time_window: &'static str,
    window_type: &'static str,
    currency: String,
    limit: String,
    spent: String,
    remaining: String,
    limit_micros: i64,
    spent_micros: i64,
    remaining_micros: i64,
}

#[derive(Serialize)]
struct Report {
    agent_id: String,
    include_children: bool,
    /// The UTC day `today` covers.
    day: String,
    today: Totals,
    policies: Vec<PolicyRow>,
}

pub async fn run(cmd: SpendCmd, config: &Config) -> anyhow::Result<()> {
    let Sub::Show(c) = cmd.cmd;
    let agent = crate::ops::parse_agent_id(&c.agent_id)?;
    let stores = crate::roles::open_stores(config).await?;
    let aggregates = crate::roles::metrics::open_aggregates(config, stores.leases).await?;
    let now = chrono::Utc::now();
    let scope = match c.include_children {
        true => Scope::Tree,
        false => Scope::Own,
    };
    let today = aggregates.read(scope, agent, &[Period::day(now)]).await?;
    let mut policies = Vec::new();
    for policy in stores.store.list_policies(Some(agent)).await? {
        if !policy.spec.active {
            continue;
        }
        let spent = policy_spend(aggregates.as_ref(), &policy, now).await?;
        let limit = policy.spec.limit_micros.get();
        let remaining = limit.saturating_sub(spent);
        policies.push(PolicyRow {
            policy_id: policy.id.to_string(),
            time_window: policy.spec.time_window.as_str(),
            window_type: policy.spec.window_type.as_str(),
            currency: policy.spec.currency.to_string(),
            limit: Micros(limit).to_string(),
            spent: Micros(spent).to_string(),
            remaining: Micros(remaining).to_string(),
            limit_micros: limit,
            spent_micros: spent,
            remaining_micros: remaining,
        });
    }
    let report = Report {
        agent_id: agent.to_string(),
        include_children: c.include_children,
        day: now.format("%Y-%m-%d").to_string(),
        today,
        policies,
    };
    match c.output {
        Output::Json => print_json(&report),
        Output::Table => {
            print_table_report(&report);
            Ok(())
        }
    }
}

fn print_table_report(report: &Report) {
    let t = &report.today;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let spend: Vec<String> = t
        .spend_micros
        .iter()
        .map(|(currency, micros)| format!("{} {currency}", Micros(*micros)))
        .collect();
    rows.push(vec![
        format!("today {}", report.day),
        if spend.is_empty() {
            "0".into()
        } else {
            spend.join(", ")
        },
        "-".into(),
        t.input_tokens.to_string(),
        t.output_tokens.to_string(),
        t.events.to_string(),
    ]);
    for (model, m) in &t.models {
        let spend: Vec<String> = m
            .spend_micros
            .iter()
            .map(|(currency, micros)| format!("{} {currency}", Micros(*micros)))
            .collect();
        rows.push(vec![
            format!("  {model}"),
            spend.join(", "),
            "-".into(),
            m.input_tokens.to_string(),
            m.output_tokens.to_string(),
            m.events.to_string(),
        ]);
    }
    for p in &report.policies {
        rows.push(vec![
            format!(
                "policy {} ({} {})",
                p.policy_id, p.window_type, p.time_window
            ),
            format!("{} {}", p.spent, p.currency),
            format!("{} {}", p.limit, p.currency),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    print_table(
        &[
            "WINDOW",
            "SPENT",
            "LIMIT",
            "INPUT_TOKENS",
            "OUTPUT_TOKENS",
            "EVENTS",
        ],
        &rows,
    );
}
