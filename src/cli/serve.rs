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
    let mut roles = crate::roles::select_roles(&cmd.role).map_err(anyhow::Error::msg)?;
    let everything = cmd.role.is_empty() || cmd.role.iter().any(|r| r == "all");
    if everything && !config.consumers.audit_logger.enabled {
        roles.retain(|r| *r != crate::roles::Role::Audit);
    }
    crate::roles::serve(config, roles).await?;
    Ok(())
}
