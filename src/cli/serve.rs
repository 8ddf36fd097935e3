//! `caracal serve`: runs roles in this process (all available roles by default), after the
//! checks only `serve` needs: the upstream credentials of the roles that send them, security
//! settings that would be ignored (refused), and warnings about the topology (logged, `/ready`).

use anyhow::bail;
use argh::FromArgs;

use crate::config::{startup, Config};
use crate::roles::Role;

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
    if cmd.role.is_empty() || cmd.role.iter().any(|r| r == "all") {
        // `all` leaves out the consumers the config disables, and the MCP adapter when no
        // server is configured (it would have nothing to serve); naming one always runs it.
        let consumers = &config.consumers;
        roles.retain(|role| match role {
            Role::Mcp => !config.mcp_adapter.servers.is_empty(),
            Role::Ledger => consumers.ledger_writer.enabled,
            Role::Audit => consumers.audit_logger.enabled,
            // The metrics role keeps everything in Redis: without it, `all` leaves it out.
            Role::Metrics => consumers.metrics_aggregator.enabled && config.redis.is_configured(),
            _ => true,
        });
    }
    preflight(&config, &roles)?;
    crate::roles::serve(config, roles).await?;
    Ok(())
}

/// Refuses what `serve` cannot honour before anything opens; logs and publishes the warnings.
fn preflight(config: &Config, roles: &[Role]) -> anyhow::Result<()> {
    if roles.contains(&Role::Gateway) {
        config.gateway_credentials()?;
    }
    if roles.contains(&Role::Mcp) {
        config.mcp_credentials()?;
    }
    if let Some(problem) = startup::ignored_security_settings(config)
        .into_iter()
        .next()
    {
        bail!("{problem}");
    }
    let warnings = startup::gateway_warnings(config, roles.contains(&Role::Gateway));
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    crate::telemetry::set_warnings(warnings);
    Ok(())
}
