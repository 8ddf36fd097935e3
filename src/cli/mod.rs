//! The command line: argh definitions, one file per command group, and output formatting
//! (table or JSON). No business rules here: every command calls `ops` or a role.

mod agent;
mod config_cmd;
mod consumers;
mod db;
mod dlq;
mod key;
mod ledger;
mod merkle;
mod output;
mod policy;
mod pricebook;
mod serve;
mod time;

use std::path::PathBuf;

use argh::FromArgs;

pub use output::Output;

/// Caracal: the gateway between AI agents and the paid APIs they call. Run `caracal serve` to
/// start everything on embedded storage; the other commands administer the configured backends.
#[derive(FromArgs, Debug)]
pub struct Cli {
    /// configuration file (default: $CARACAL_CONFIG, then ./caracal.yaml, then ./config.yaml)
    #[argh(option)]
    pub config: Option<PathBuf>,
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Serve(serve::ServeCmd),
    Agent(agent::AgentCmd),
    Key(key::KeyCmd),
    Policy(policy::PolicyCmd),
    Pricebook(pricebook::PricebookCmd),
    Config(config_cmd::ConfigCmd),
    Ledger(ledger::LedgerCmd),
    Merkle(merkle::MerkleCmd),
    Dlq(dlq::DlqCmd),
    Consumers(consumers::ConsumersCmd),
    Db(db::DbCmd),
}

/// Runs a parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = crate::config::load(cli.config.as_deref())?;
    let json_logs = config.telemetry.log_format == crate::config::LogFormat::Json;
    crate::telemetry::init_logging(json_logs);
    match cli.command {
        Command::Serve(cmd) => serve::run(cmd, config).await,
        Command::Agent(cmd) => agent::run(cmd, &config).await,
        Command::Key(cmd) => key::run(cmd, &config).await,
        Command::Policy(cmd) => policy::run(cmd, &config).await,
        Command::Pricebook(cmd) => pricebook::run(cmd, &config).await,
        Command::Config(cmd) => config_cmd::run(cmd, &config),
        Command::Ledger(cmd) => ledger::run(cmd, &config).await,
        Command::Merkle(cmd) => merkle::run(cmd, &config).await,
        Command::Dlq(cmd) => dlq::run(cmd, &config).await,
        Command::Consumers(cmd) => consumers::run(cmd, &config).await,
        Command::Db(cmd) => db::run(cmd, &config).await,
    }
}

/// The actor recorded for changes made from the command line.
fn actor() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => "cli".to_owned(),
    }
}

/// Opens the configured store's admin operations.
async fn ops(config: &crate::config::Config) -> anyhow::Result<crate::ops::Ops> {
    let store = crate::roles::open_store(config).await?;
    Ok(crate::ops::Ops::new(store))
}
