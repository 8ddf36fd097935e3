//! `caracal config show`: the effective configuration, every secret masked.

use argh::FromArgs;

use crate::config::Config;

/// inspect the configuration
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "config")]
pub struct ConfigCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Show(Show),
}

/// print the effective configuration (defaults < file < env), secrets masked
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "show")]
struct Show {}

pub fn run(cmd: ConfigCmd, config: &Config) -> anyhow::Result<()> {
    match cmd.cmd {
        Sub::Show(Show {}) => {
            print!("{}", crate::config::render_effective(config));
            Ok(())
        }
    }
}
