//! `caracal key create|list|revoke`: API keys for the gateway's `api_key` auth mode.

use argh::FromArgs;

use super::output::{print_json, print_record, print_table, Output};
use super::{actor, ops};
use crate::config::Config;
use crate::ops::{audit, KeyInput};

/// manage agents' API keys
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "key")]
pub struct KeyCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Create(Create),
    List(List),
    Revoke(Revoke),
}

/// create an API key for an agent; the secret is printed once and never stored
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "create")]
struct Create {
    /// agent id
    #[argh(option)]
    agent_id: String,
    /// a label for the key
    #[argh(option)]
    name: Option<String>,
    /// lifetime in days (default: no expiry)
    #[argh(option)]
    expires_in_days: Option<i64>,
    /// why (recorded in the lifecycle event)
    #[argh(option)]
    reason: Option<String>,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// list API keys (never their secrets)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
struct List {
    /// only this agent's keys
    #[argh(option)]
    agent_id: Option<String>,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// revoke an API key
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "revoke")]
struct Revoke {
    /// key id
    #[argh(positional)]
    id: String,
    /// why (recorded in the lifecycle event)
    #[argh(option)]
    reason: Option<String>,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

pub async fn run(cmd: KeyCmd, config: &Config) -> anyhow::Result<()> {
    let ops = ops(config).await?;
    match cmd.cmd {
        Sub::Create(c) => {
            let input = KeyInput {
                agent_id: c.agent_id,
                name: c.name,
                expires_in_days: c.expires_in_days,
            };
            let created = ops.create_key(input, &audit(actor(), c.reason)).await?;
            if c.output == Output::Table {
                eprintln!("Store this key now: it is shown once and cannot be recovered.");
            }
            print_record(c.output, &created)
        }
        Sub::List(c) => {
            let keys = ops.list_keys(c.agent_id.as_deref()).await?;
            if c.output == Output::Json {
                return print_json(&keys);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.id.0.to_string(),
                        k.agent_id.to_string(),
                        k.name.clone(),
                        format!("{}…", k.prefix),
                        k.expires_at.map_or_else(|| "-".into(), |t| t.to_rfc3339()),
                        k.revoked_at.map_or_else(|| "-".into(), |t| t.to_rfc3339()),
                    ]
                })
                .collect();
            print_table(
                &["ID", "AGENT", "NAME", "PREFIX", "EXPIRES", "REVOKED"],
                &rows,
            );
            Ok(())
        }
        Sub::Revoke(c) => {
            let key = ops.revoke_key(&c.id, &audit(actor(), c.reason)).await?;
            print_record(c.output, &key)
        }
    }
}
