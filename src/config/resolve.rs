//! Resolves every secret that may come from a file (`...File` key, `*_FILE` env) and the route
//! and MCP credentials, after layering. Errors name the key and the file, never the content.
//! A credential that cannot be read is not an error here: it is kept as `Unresolved` and only
//! the role that sends it (gateway, MCP) refuses to start; admin commands never need it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, Origin};
use super::load::{origin_of, Layer};
use super::secret::{read_secret_file, Secret, SecretUrl};
use super::Config;

/// A secret value key and the key naming a file that holds it.
struct Pair<'a, T> {
    value_key: &'static str,
    file_key: &'static str,
    value: &'a mut Option<T>,
    file: &'a mut Option<PathBuf>,
}

/// Resolves every `(secret, secretFile)` pair, then route and MCP server credentials.
pub(crate) fn secrets(
    config: &mut Config,
    layers: &[Layer],
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let urls = [
        Pair {
            value_key: "postgresql.url",
            file_key: "postgresql.urlFile",
            value: &mut config.postgresql.url,
            file: &mut config.postgresql.url_file,
        },
        Pair {
            value_key: "redis.url",
            file_key: "redis.urlFile",
            value: &mut config.redis.url,
            file: &mut config.redis.url_file,
        },
    ];
    for pair in urls {
        resolve_pair(pair, layers, SecretUrl::new)?;
    }
    let passwords = [
        Pair {
            value_key: "postgresql.password",
            file_key: "postgresql.passwordFile",
            value: &mut config.postgresql.password,
            file: &mut config.postgresql.password_file,
        },
        Pair {
            value_key: "redis.password",
            file_key: "redis.passwordFile",
            value: &mut config.redis.password,
            file: &mut config.redis.password_file,
        },
        Pair {
            value_key: "kafka.security.saslPassword",
            file_key: "kafka.security.saslPasswordFile",
            value: &mut config.kafka.security.sasl_password,
            file: &mut config.kafka.security.sasl_password_file,
        },
        Pair {
            value_key: "kafka.schemaRegistry.password",
            file_key: "kafka.schemaRegistry.passwordFile",
            value: &mut config.kafka.schema_registry.password,
            file: &mut config.kafka.schema_registry.password_file,
        },
        Pair {
            value_key: "admin.token",
            file_key: "admin.tokenFile",
            value: &mut config.admin.token,
            file: &mut config.admin.token_file,
        },
        Pair {
            value_key: "consumers.auditLogger.s3.accessKeyId",
            file_key: "consumers.auditLogger.s3.accessKeyIdFile",
            value: &mut config.consumers.audit_logger.s3.access_key_id,
            file: &mut config.consumers.audit_logger.s3.access_key_id_file,
        },
        Pair {
            value_key: "consumers.auditLogger.s3.secretAccessKey",
            file_key: "consumers.auditLogger.s3.secretAccessKeyFile",
            value: &mut config.consumers.audit_logger.s3.secret_access_key,
            file: &mut config.consumers.audit_logger.s3.secret_access_key_file,
        },
    ];
    for pair in passwords {
        resolve_pair(pair, layers, Secret::new)?;
    }
    credentials(config, layers, env)
}

/// The higher layer decides between a value and its file: `DB_PASSWORD` overrides a
/// `passwordFile` from the YAML, `DB_PASSWORD_FILE` overrides a `password` from it. Both set in
/// the same tier is an error.
fn resolve_pair<T>(
    pair: Pair<'_, T>,
    layers: &[Layer],
    wrap: fn(String) -> T,
) -> Result<(), ConfigError> {
    let value_at = top_layer(layers, pair.value_key);
    let file_at = top_layer(layers, pair.file_key);
    match (value_at, file_at) {
        (Some(v), Some(f)) if v.tier == f.tier => Err(ConfigError::Invalid {
            key: pair.value_key.to_owned(),
            message: format!(
                "set both {} {} and {} {}; keep one",
                pair.value_key, v.origin, pair.file_key, f.origin
            ),
            origin: None,
        }),
        (Some(v), Some(f)) if v.tier > f.tier => {
            *pair.file = None;
            Ok(())
        }
        (_, Some(f)) => {
            let Some(path) = pair.file.clone() else {
                return Ok(());
            };
            let text = read(pair.file_key, &path, Some(&f.origin))?;
            *pair.value = Some(wrap(text));
            Ok(())
        }
        (_, None) => Ok(()),
    }
}

fn top_layer<'a>(layers: &'a [Layer], key: &str) -> Option<&'a Layer> {
    let path: Vec<&str> = key.split('.').collect();
    layers.iter().rev().find(|l| l.sets(&path))
}

fn read(key: &str, path: &Path, origin: Option<&Origin>) -> Result<String, ConfigError> {
    read_secret_file(path).map_err(|reason| ConfigError::SecretFile {
        key: key.to_owned(),
        path: path.to_path_buf(),
        origin: origin.cloned(),
        reason,
    })
}

/// Reads each route's and MCP server's credential from its file or environment variable.
fn credentials(
    config: &mut Config,
    layers: &[Layer],
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let routes = config.gateway.routes.iter_mut().map(|r| {
        (
            &r.credential_file,
            &r.credential_env,
            &mut r.credential,
            &mut r.unresolved,
        )
    });
    fill(routes, "gateway.routes", layers, env)?;
    let servers = config.mcp_adapter.servers.iter_mut().map(|s| {
        (
            &s.credential_file,
            &s.credential_env,
            &mut s.credential,
            &mut s.unresolved,
        )
    });
    fill(servers, "mcpAdapter.servers", layers, env)
}

type CredentialSlot<'a> = (
    &'a Option<PathBuf>,
    &'a Option<String>,
    &'a mut Option<Secret>,
    &'a mut Option<Unresolved>,
);

/// A credential that could not be read at load time, kept so that the role that needs it
/// refuses to start with the same one-line error, while every other command runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Unresolved {
    /// `credentialEnv` names a variable that is unset or empty.
    Env {
        key: String,
        name: String,
        origin: Option<Origin>,
    },
    /// `credentialFile` cannot be read.
    File {
        key: String,
        path: PathBuf,
        origin: Option<Origin>,
        reason: String,
    },
}

impl Unresolved {
    /// The load-time error this credential would have been.
    pub(crate) fn error(&self) -> ConfigError {
        match self {
            Unresolved::Env { key, name, origin } => ConfigError::Invalid {
                key: key.clone(),
                message: format!("environment variable {name} is not set"),
                origin: origin.clone(),
            },
            Unresolved::File {
                key,
                path,
                origin,
                reason,
            } => ConfigError::SecretFile {
                key: key.clone(),
                path: path.clone(),
                origin: origin.clone(),
                reason: reason.clone(),
            },
        }
    }
}

fn fill<'a>(
    slots: impl Iterator<Item = CredentialSlot<'a>>,
    list_key: &str,
    layers: &[Layer],
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let origin = origin_of(layers, list_key);
    for (i, (file, var, credential, unresolved)) in slots.enumerate() {
        let key = |k: &str| format!("{list_key}[{i}].{k}");
        match (file, var) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: key("credentialFile"),
                    message: "set credentialFile or credentialEnv, not both".to_owned(),
                    origin,
                })
            }
            (Some(path), None) => match read_secret_file(path) {
                Ok(text) => *credential = Some(Secret::new(text)),
                Err(reason) => {
                    *unresolved = Some(Unresolved::File {
                        key: key("credentialFile"),
                        path: path.clone(),
                        origin: origin.clone(),
                        reason,
                    })
                }
            },
            (None, Some(name)) => match env.get(name).filter(|v| !v.is_empty()) {
                Some(value) => *credential = Some(Secret::new(value.clone())),
                None => {
                    *unresolved = Some(Unresolved::Env {
                        key: key("credentialEnv"),
                        name: name.clone(),
                        origin: origin.clone(),
                    })
                }
            },
            (None, None) => {}
        }
    }
    Ok(())
}
