//! `caracal serve`: runs roles in this process (all available roles by default).

use argh::FromArgs;

use crate::config::Config;

/// run Caracal roles (default: every role, embedded storage)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "serve")]
pub struct ServeCmd {
    /// role to run, repeatable: gateway, mcp, ledger, metrics, audit, admin, or all (default)
    #[argh(option)]
    role: Vec<String>,
}

pub async fn run(cmd: ServeCmd, config: Config) -> anyhow::Result<()> {
    let roles = crate::roles::select_roles(&cmd.role).map_err(anyhow::Error::msg)?;
    crate::roles::serve(config, roles).await?;
    Ok(())
}
