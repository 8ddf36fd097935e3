//! One way to open a fred connection pool from a `RedisTarget` and `RedisLimits`: standalone
//! or Cluster, password, TLS, fail-fast commands with their deadline, bounded reconnects. Used
//! by the spend cache and the metrics role's aggregates, so both reach Redis the same way.
//! Knows nothing of keys or scripts.

use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config, Pool, ReconnectPolicy, ServerConfig};

use super::{tls, RedisLimits, RedisTarget};
use crate::spend::SpendError;

fn unavailable(e: impl std::fmt::Display) -> SpendError {
    SpendError::Unavailable(format!("redis: {e}"))
}

/// Connects a pool of `limits.connections` and waits at most `connect_timeout_ms` for it.
pub(crate) async fn connect(
    target: &RedisTarget,
    limits: &RedisLimits,
) -> Result<Pool, SpendError> {
    let mut config = match &target.url {
        Some(url) => Config::from_url(url).map_err(unavailable)?,
        None => Config {
            server: match target.cluster {
                true => ServerConfig::new_clustered(vec![(target.host.as_str(), target.port)]),
                false => ServerConfig::new_centralized(&target.host, target.port),
            },
            ..Config::default()
        },
    };
    if target.password.is_some() {
        config.password = target.password.clone();
    }
    if let Some(files) = &target.tls {
        config.tls = Some(tls::connector(files)?.into());
    }
    config.fail_fast = true;
    let command = Duration::from_millis(limits.command_timeout_ms);
    let connect = Duration::from_millis(limits.connect_timeout_ms);
    let pool = Builder::from_config(config)
        .with_performance_config(|p| p.default_command_timeout = command)
        .with_connection_config(|c| {
            c.connection_timeout = connect;
            c.internal_command_timeout = command;
            c.max_command_attempts = 1;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build_pool(limits.connections.max(1))
        .map_err(unavailable)?;
    tokio::time::timeout(connect, pool.init())
        .await
        .map_err(|_| unavailable(format!("no connection within {connect:?}")))?
        .map_err(unavailable)?;
    Ok(pool)
}
