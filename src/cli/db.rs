//! `caracal db init|migrate up|status`: the system of record's schema. On Postgres: create the
//! database, apply the numbered migrations (locked, checksummed), show their state. The
//! embedded SQLite store migrates itself when opened; these commands open it and say so.

use anyhow::bail;
use argh::FromArgs;

use super::output::{print_json, print_table, Output};
use crate::config::Config;
use crate::store::postgres::{self, migrate};

/// manage the database schema
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

/// create the database if missing, then apply every migration
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "init")]
struct Init {}

/// apply migrations: `caracal db migrate up`
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "migrate")]
struct Migrate {
    /// up: apply every pending migration (idempotent)
    #[argh(positional)]
    direction: String,
}

/// show each migration: applied, pending, or changed since it was applied
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
struct Status {
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

pub async fn run(cmd: DbCmd, config: &Config) -> anyhow::Result<()> {
    if !config.postgresql.is_configured() {
        return embedded(cmd, config).await;
    }
    let target = postgres::pg_config(&config.postgresql, None)?;
    match cmd.cmd {
        Sub::Init(Init {}) => {
            let database = target.get_dbname().unwrap_or("caracal").to_owned();
            let maintenance = postgres::pg_config(&config.postgresql, Some("postgres"))?;
            let admin = postgres::connect(&maintenance).await?;
            if migrate::create_database(&admin, &database).await? {
                println!("created database {database}");
            } else {
                println!("database {database} exists");
            }
            apply(&target).await
        }
        Sub::Migrate(m) => {
            if m.direction != "up" {
                bail!("unknown direction {:?}: only `caracal db migrate up` exists (migrations are forward-only)", m.direction);
            }
            apply(&target).await
        }
        Sub::Status(s) => {
            let client = postgres::connect(&target).await?;
            let states = migrate::status(&client).await?;
            match s.output {
                Output::Json => print_json(&states)?,
                Output::Table => {
                    let rows: Vec<Vec<String>> = states
                        .iter()
                        .map(|m| {
                            vec![
                                m.version.to_string(),
                                m.name.clone(),
                                m.state.to_owned(),
                                m.checksum[..16].to_owned(),
                            ]
                        })
                        .collect();
                    print_table(&["VERSION", "FILE", "STATE", "CHECKSUM"], &rows);
                }
            }
            if let Some(changed) = states.iter().find(|m| m.state == "changed") {
                bail!(
                    "migration {} was changed after it was applied",
                    changed.name
                );
            }
            Ok(())
        }
    }
}

async fn apply(target: &tokio_postgres::Config) -> anyhow::Result<()> {
    let mut client = postgres::connect(target).await?;
    let applied = migrate::up(&mut client).await?;
    if applied.is_empty() {
        println!("{}: schema up to date", postgres::describe(target));
    } else {
        for name in &applied {
            println!("{}: applied {name}", postgres::describe(target));
        }
    }
    Ok(())
}

async fn embedded(cmd: DbCmd, config: &Config) -> anyhow::Result<()> {
    if let Sub::Migrate(m) = &cmd.cmd {
        if m.direction != "up" {
            bail!("unknown direction {:?}: only `caracal db migrate up` exists (migrations are forward-only)", m.direction);
        }
    }
    crate::roles::open_stores(config).await?;
    println!(
        "embedded store {}: schema up to date (SQLite migrates itself when opened; set postgresql.* for Postgres)",
        config.data_dir.join(crate::store::sqlite::DB_FILE).display()
    );
    Ok(())
}
