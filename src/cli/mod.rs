//! The command line: argh definitions, one file per command group, and output formatting
//! (table or JSON). No business rules here: every command calls `ops` or a role.

mod agent;
mod argv;
mod audit;
mod config_cmd;
mod consumers;
mod db;
mod dlq;
mod kafka;
mod key;
mod ledger;
mod merkle;
mod output;
mod policy;
mod pricebook;
mod serve;
mod spend;
mod time;

use std::path::PathBuf;

use argh::FromArgs;

pub use output::Output;

/// Caracal: the gateway between AI agents and the paid APIs they call. Run `caracal serve` to
/// start everything on embedded storage; the other commands administer the configured backends.
#[derive(FromArgs, Debug)]
pub struct Cli {
    /// configuration file (default: $CARACAL_CONFIG, then ./caracal.yaml, then ./config.yaml);
    /// accepted before or after the command
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print the version (and the git commit it was built from) and exit
    #[argh(switch, short = 'V')]
    pub version: bool,
    #[argh(subcommand)]
    pub command: Option<Command>,
}

/// What the command line asks for before any command runs.
pub enum Parsed {
    /// Run this command line.
    Run(Box<Cli>),
    /// Print this text (help, version, or a usage error) and exit with this code.
    Exit { text: String, code: u8 },
}

/// Parses `args` (the program name first), accepting global options after the subcommand too.
pub fn parse(args: &[String]) -> Parsed {
    let program = args.first().map_or("caracal", String::as_str);
    let program = std::path::Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("caracal");
    let rest = argv::hoist_global_options(args.get(1..).unwrap_or_default());
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match Cli::from_args(&[program], &rest) {
        Ok(cli) if cli.version => Parsed::Exit {
            text: crate::version::long(),
            code: 0,
        },
        Ok(Cli { command: None, .. }) => Parsed::Exit {
            text: format!("error: no command given; run `{program} --help` to list them"),
            code: 1,
        },
        Ok(cli) => Parsed::Run(Box::new(cli)),
        Err(early) => Parsed::Exit {
            text: early.output.trim_end().to_owned(),
            code: u8::from(early.status.is_err()),
        },
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Serve(serve::ServeCmd),
    Agent(agent::AgentCmd),
    Key(key::KeyCmd),
    Policy(policy::PolicyCmd),
    Pricebook(pricebook::PricebookCmd),
    Audit(audit::AuditCmd),
    Config(config_cmd::ConfigCmd),
    Ledger(ledger::LedgerCmd),
    Merkle(merkle::MerkleCmd),
    Dlq(dlq::DlqCmd),
    Consumers(consumers::ConsumersCmd),
    Spend(spend::SpendCmd),
    Db(db::DbCmd),
    Kafka(kafka::KafkaCmd),
}

/// Runs a parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Some(command) = cli.command else {
        anyhow::bail!("no command given; run `caracal --help` to list them");
    };
    let config = crate::config::load(cli.config.as_deref())?;
    let json_logs = config.telemetry.log_format == crate::config::LogFormat::Json;
    crate::telemetry::init_logging(json_logs);
    match command {
        Command::Serve(cmd) => serve::run(cmd, config).await,
        Command::Agent(cmd) => agent::run(cmd, &config).await,
        Command::Key(cmd) => key::run(cmd, &config).await,
        Command::Policy(cmd) => policy::run(cmd, &config).await,
        Command::Pricebook(cmd) => pricebook::run(cmd, &config).await,
        Command::Audit(cmd) => audit::run(cmd, &config).await,
        Command::Config(cmd) => config_cmd::run(cmd, &config),
        Command::Ledger(cmd) => ledger::run(cmd, &config).await,
        Command::Merkle(cmd) => merkle::run(cmd, &config).await,
        Command::Dlq(cmd) => dlq::run(cmd, &config).await,
        Command::Consumers(cmd) => consumers::run(cmd, &config).await,
        Command::Spend(cmd) => spend::run(cmd, &config).await,
        Command::Db(cmd) => db::run(cmd, &config).await,
        Command::Kafka(cmd) => kafka::run(cmd, &config).await,
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
