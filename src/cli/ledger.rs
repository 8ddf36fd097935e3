//! `caracal ledger query`: an agent's (and optionally its descendants') metered charges over
//! a UTC range, with totals per currency over the whole range.

use std::str::FromStr;

use argh::FromArgs;
use serde::Serialize;

use super::output::{print_json, print_table};
use super::time::{parse_range, show};
use crate::config::Config;
use crate::core::money::Micros;
use crate::store::ledger::{CurrencyTotal, LedgerQuery, StoredRow};
use crate::store::LIST_ROWS_MAX;

/// query the ledger
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ledger")]
pub struct LedgerCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Query(Query),
}

/// an agent's charges between two dates (UTC; the end date's whole day is included)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "query")]
struct Query {
    /// agent id
    #[argh(option)]
    agent_id: String,
    /// first day (YYYY-MM-DD) or instant (RFC 3339)
    #[argh(option)]
    start_date: String,
    /// last day (YYYY-MM-DD, included) or instant (RFC 3339, excluded)
    #[argh(option)]
    end_date: String,
    /// also the charges of every descendant of the agent
    #[argh(switch)]
    include_children: bool,
    /// most rows to list (default 10000); totals always cover the whole range
    #[argh(option, default = "LIST_ROWS_MAX")]
    limit: usize,
    /// table, json or csv
    #[argh(option, default = "Format::Table")]
    output: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Csv,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            other => Err(format!(
                "unknown output format {other:?}: expected table, json or csv"
            )),
        }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    agent_id: &'a str,
    include_children: bool,
    start: String,
    end: String,
    rows: Vec<RowView<'a>>,
    truncated: bool,
    totals: Vec<TotalView<'a>>,
}

#[derive(Serialize)]
struct RowView<'a> {
    occurred_at: String,
    event_id: &'a str,
    agent_id: &'a str,
    provider: &'a str,
    resource: &'a str,
    operation: &'a str,
    input_tokens: i64,
    cached_input_tokens: i64,
    output_tokens: i64,
    calls: i64,
    cost: String,
    cost_micros: i64,
    currency: &'a str,
    estimated: bool,
    outcome: &'a str,
    partition: i32,
    seq: i64,
}

#[derive(Serialize)]
struct TotalView<'a> {
    currency: &'a str,
    events: i64,
    total: String,
    total_micros: i64,
}

fn row_view(row: &StoredRow) -> RowView<'_> {
    let c = &row.columns;
    RowView {
        occurred_at: show(c.occurred_at_micros),
        event_id: &c.event_id,
        agent_id: &c.agent_id,
        provider: &c.provider,
        resource: &c.resource,
        operation: &c.operation,
        input_tokens: c.input_tokens,
        cached_input_tokens: c.cached_input_tokens,
        output_tokens: c.output_tokens,
        calls: c.calls,
        cost: Micros(c.cost_micros).to_string(),
        cost_micros: c.cost_micros,
        currency: &c.currency,
        estimated: c.estimated,
        outcome: &c.outcome,
        partition: row.partition,
        seq: row.seq,
    }
}

fn total_view(total: &CurrencyTotal) -> TotalView<'_> {
    TotalView {
        currency: &total.currency,
        events: total.events,
        total: Micros(total.cost_micros).to_string(),
        total_micros: total.cost_micros,
    }
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

pub async fn run(cmd: LedgerCmd, config: &Config) -> anyhow::Result<()> {
    let Sub::Query(q) = cmd.cmd;
    let (start_micros, end_micros) =
        parse_range(&q.start_date, &q.end_date).map_err(anyhow::Error::msg)?;
    let limit = q.limit.clamp(1, LIST_ROWS_MAX);
    let stores = crate::roles::open_stores(config).await?;
    let query = LedgerQuery {
        agent_id: q.agent_id.clone(),
        include_children: q.include_children,
        start_micros,
        end_micros,
        limit,
    };
    let (rows, totals) = stores.ledger.query_ledger(&query).await?;
    let events: i64 = totals.iter().map(|t| t.events).sum();
    let report = Report {
        agent_id: &q.agent_id,
        include_children: q.include_children,
        start: show(start_micros),
        end: show(end_micros),
        truncated: i64::try_from(rows.len()).unwrap_or(i64::MAX) < events,
        rows: rows.iter().map(row_view).collect(),
        totals: totals.iter().map(total_view).collect(),
    };
    match q.output {
        Format::Json => print_json(&report)?,
        Format::Csv => {
            println!("occurred_at,event_id,agent_id,provider,resource,operation,input_tokens,cached_input_tokens,output_tokens,calls,cost,currency,estimated,outcome");
            for r in &report.rows {
                let fields = [
                    r.occurred_at.clone(),
                    r.event_id.to_owned(),
                    r.agent_id.to_owned(),
                    r.provider.to_owned(),
                    r.resource.to_owned(),
                    r.operation.to_owned(),
                    r.input_tokens.to_string(),
                    r.cached_input_tokens.to_string(),
                    r.output_tokens.to_string(),
                    r.calls.to_string(),
                    r.cost.clone(),
                    r.currency.to_owned(),
                    r.estimated.to_string(),
                    r.outcome.to_owned(),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                println!("{}", line.join(","));
            }
            for t in &report.totals {
                eprintln!("total {} {} over {} events", t.total, t.currency, t.events);
            }
        }
        Format::Table => {
            let table: Vec<Vec<String>> = report
                .rows
                .iter()
                .map(|r| {
                    vec![
                        r.occurred_at.clone(),
                        r.agent_id.to_owned(),
                        format!("{}/{}", r.provider, r.resource),
                        format!(
                            "{}+{}/{}",
                            r.input_tokens, r.cached_input_tokens, r.output_tokens
                        ),
                        format!("{} {}", r.cost, r.currency),
                        r.outcome.to_owned(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "OCCURRED_AT",
                    "AGENT",
                    "RESOURCE",
                    "TOKENS IN+CACHED/OUT",
                    "COST",
                    "OUTCOME",
                ],
                &table,
            );
            if report.truncated {
                println!("(first {} rows shown; totals cover all)", report.rows.len());
            }
            if report.totals.is_empty() {
                println!("no charges in range");
            }
            for t in &report.totals {
                println!("total {} {} over {} events", t.total, t.currency, t.events);
            }
        }
    }
    Ok(())
}
