//! `caracal db init | migrate up | status`: the schema of the configured store. Postgres gets
//! its numbered migrations (see `store/postgres/migrate.rs`); the embedded SQLite store
//! migrates itself on open, so there the commands open it and say so.

use argh::FromArgs;

use super::output::{print_json, print_table, Output};
use super::time::show;
use crate::config::Config;
use crate::roles::db::{self, MigrateReport, Target};

/// create and migrate the database schema
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "db")]
pub struct DbCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Init(Init),
    Migrate(Migrate),
    Status(Status),
}

/// create the database if missing, then apply every pending migration
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "init")]
struct Init {
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// apply migrations
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "migrate")]
struct Migrate {
    #[argh(subcommand)]
    cmd: MigrateSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum MigrateSub {
    Up(Up),
}

/// apply every pending migration (idempotent; concurrent runs are serialised)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "up")]
struct Up {
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// list migrations: applied or pending, and whether applied files are unchanged
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
struct Status {
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

pub async fn run(cmd: DbCmd, config: &Config) -> anyhow::Result<()> {
    match cmd.cmd {
        Sub::Init(c) => print_migrate(c.output, &db::init(config).await?),
        Sub::Migrate(Migrate {
            cmd: MigrateSub::Up(c),
        }) => print_migrate(c.output, &db::migrate_up(config).await?),
        Sub::Status(c) => status(c.output, config).await,
    }
}

fn print_migrate(output: Output, report: &MigrateReport) -> anyhow::Result<()> {
    if output == Output::Json {
        return print_json(report);
    }
    if report.database_created {
        println!("{}: created the database", report.target);
    }
    match (&report.target, report.applied.is_empty()) {
        (Target::Embedded { .. }, _) => println!(
            "{}: up to date (the embedded store applies its migrations whenever it is opened)",
            report.target
        ),
        (_, true) => println!("{}: up to date", report.target),
        (_, false) => {
            for file in &report.applied {
                println!("{}: applied {file}", report.target);
            }
        }
    }
    Ok(())
}

async fn status(output: Output, config: &Config) -> anyhow::Result<()> {
    let report = db::status(config).await?;
    if output == Output::Json {
        print_json(&report)?;
    } else {
        println!("{}", report.target);
        let rows: Vec<Vec<String>> = report
            .migrations
            .iter()
            .map(|m| {
                vec![
                    m.version.to_string(),
                    m.file.clone(),
                    m.state.to_owned(),
                    m.checksum.to_owned(),
                    m.applied_at_micros.map_or_else(|| "-".into(), show),
                ]
            })
            .collect();
        print_table(
            &["VERSION", "FILE", "STATE", "CHECKSUM", "APPLIED_AT"],
            &rows,
        );
    }
    let mismatched = report.mismatched();
    if !mismatched.is_empty() {
        anyhow::bail!(
            "migration {} changed after it was applied (checksum mismatch)",
            mismatched.join(", ")
        );
    }
    Ok(())
}
