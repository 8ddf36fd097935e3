//! `caracal agent create|list|get|update|suspend|reactivate|delete|token`.

use std::path::PathBuf;

use argh::FromArgs;

use super::output::{print_json, print_record, print_table, Output};
use super::{actor, ops};
use crate::config::Config;
use crate::core::agent::{Agent, AgentStatus};
use crate::ops::{audit, token::TokenRequest, AgentInput, AgentUpdateInput};

/// manage agents
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "agent")]
pub struct AgentCmd {
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
    Suspend(Suspend),
    Reactivate(Reactivate),
    Delete(Delete),
    Token(Token),
}

/// create an agent
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "create")]
struct Create {
    /// agent name
    #[argh(option)]
    name: String,
    /// agent type, free-form (e.g. openai, worker)
    #[argh(option, long = "type")]
    agent_type: Option<String>,
    /// metadata as a JSON object, e.g. '{"team":"platform"}'
    #[argh(option)]
    metadata: Option<String>,
    /// parent agent id: the new agent's spend also counts against the parent's policies
    #[argh(option)]
    parent: Option<String>,
    /// why (recorded in the lifecycle event)
    #[argh(option)]
    reason: Option<String>,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// list agents
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
struct List {
    /// only the children of this agent
    #[argh(option)]
    parent: Option<String>,
    /// include deleted agents
    #[argh(switch)]
    all: bool,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// show one agent
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "get")]
struct Get {
    /// agent id
    #[argh(positional)]
    id: String,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// change an agent's name, type or metadata
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "update")]
struct Update {
    /// agent id
    #[argh(positional)]
    id: String,
    /// new name
    #[argh(option)]
    name: Option<String>,
    /// new type
    #[argh(option, long = "type")]
    agent_type: Option<String>,
    /// new metadata (replaces the old), a JSON object
    #[argh(option)]
    metadata: Option<String>,
    /// why (recorded in the lifecycle event)
    #[argh(option)]
    reason: Option<String>,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// Defines a `<verb> <id> [--reason] [--output]` status command.
macro_rules! status_cmd {
    ($name:ident, $verb:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(FromArgs, Debug)]
        #[argh(subcommand, name = $verb)]
        struct $name {
            /// agent id
            #[argh(positional)]
            id: String,
            /// why (recorded in the lifecycle event)
            #[argh(option)]
            reason: Option<String>,
            /// table or json
            #[argh(option, default = "Output::Table")]
            output: Output,
        }
    };
}

status_cmd!(
    Suspend,
    "suspend",
    "suspend an agent (and so every request of its subtree)"
);
status_cmd!(Reactivate, "reactivate", "reactivate a suspended agent");
status_cmd!(
    Delete,
    "delete",
    "delete an agent (soft: its ledger history stays resolvable)"
);

/// sign a JWT for an agent (for gateway.authMode jwt)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "token")]
struct Token {
    /// agent id
    #[argh(option)]
    agent_id: String,
    /// PEM private key (RSA for RS256, PKCS#8 EC P-256 for ES256)
    #[argh(option)]
    private_key: PathBuf,
    /// RS256 (default) or ES256
    #[argh(option, default = "String::from(\"RS256\")")]
    algorithm: String,
    /// lifetime in seconds (default 3600)
    #[argh(option, default = "3600")]
    ttl: i64,
    /// iss claim
    #[argh(option)]
    issuer: Option<String>,
    /// aud claim
    #[argh(option)]
    audience: Option<String>,
    /// kid header
    #[argh(option)]
    key_id: Option<String>,
}

pub async fn run(cmd: AgentCmd, config: &Config) -> anyhow::Result<()> {
    let ops = ops(config).await?;
    match cmd.cmd {
        Sub::Create(c) => {
            let metadata = c
                .metadata
                .as_deref()
                .map(crate::ops::parse_metadata_arg)
                .transpose()?;
            let input = AgentInput {
                name: c.name,
                agent_type: c.agent_type,
                metadata,
                parent_id: c.parent,
            };
            let agent = ops.create_agent(input, &audit(actor(), c.reason)).await?;
            print_record(c.output, &agent)
        }
        Sub::List(c) => {
            let agents = ops.list_agents(c.parent.as_deref(), c.all).await?;
            print_agents(c.output, &agents)
        }
        Sub::Get(c) => print_record(c.output, &ops.get_agent(&c.id).await?),
        Sub::Update(c) => {
            let metadata = c
                .metadata
                .as_deref()
                .map(crate::ops::parse_metadata_arg)
                .transpose()?;
            let input = AgentUpdateInput {
                name: c.name,
                agent_type: c.agent_type,
                metadata,
            };
            let agent = ops
                .update_agent(&c.id, input, &audit(actor(), c.reason))
                .await?;
            print_record(c.output, &agent)
        }
        Sub::Suspend(c) => status(&ops, c.id, c.reason, c.output, AgentStatus::Suspended).await,
        Sub::Reactivate(c) => status(&ops, c.id, c.reason, c.output, AgentStatus::Active).await,
        Sub::Delete(c) => status(&ops, c.id, c.reason, c.output, AgentStatus::Deleted).await,
        Sub::Token(c) => {
            let req = TokenRequest {
                agent_id: c.agent_id,
                algorithm: c.algorithm,
                ttl_seconds: c.ttl,
                issuer: c.issuer,
                audience: c.audience,
                key_id: c.key_id,
            };
            println!("{}", ops.agent_token(&req, &c.private_key).await?);
            Ok(())
        }
    }
}

async fn status(
    ops: &crate::ops::Ops,
    id: String,
    reason: Option<String>,
    output: Output,
    to: AgentStatus,
) -> anyhow::Result<()> {
    let agent = ops
        .set_agent_status(&id, to, &audit(actor(), reason))
        .await?;
    print_record(output, &agent)
}

fn print_agents(output: Output, agents: &[Agent]) -> anyhow::Result<()> {
    if output == Output::Json {
        return print_json(agents);
    }
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                a.name.clone(),
                a.agent_type.clone(),
                a.parent_id.map_or_else(|| "-".into(), |p| p.to_string()),
                a.status.as_str().to_owned(),
            ]
        })
        .collect();
    print_table(&["ID", "NAME", "TYPE", "PARENT", "STATUS"], &rows);
    Ok(())
}
