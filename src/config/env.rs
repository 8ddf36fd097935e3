//! Environment variables → config layers: `CARACAL_*` (`__` nests, segments matched to keys
//! ignoring case and `_`), then the seeds' `DB_*` / `REDIS_PASSWORD`. Builds layers only; it
//! never reads the process environment itself (the caller passes the map).

use std::collections::BTreeMap;

use figment::value::{Dict, Value};
use serde_json::Value as Json;

use super::error::{join_path, ConfigError, Origin};
use super::load::{Layer, Tier};
use super::schema::{self, Node, AUDIT_ALIAS};

/// Prefix of the variables that set config keys.
pub(crate) const PREFIX: &str = "CARACAL_";
/// The variable naming the config file (not a key).
pub(crate) const CONFIG_VAR: &str = "CARACAL_CONFIG";

/// The seeds' variables and the keys they set (they win over everything else).
const SEED_VARS: &[(&str, [&str; 2])] = &[
    ("DB_HOST", ["postgresql", "host"]),
    ("DB_PORT", ["postgresql", "port"]),
    ("DB_NAME", ["postgresql", "database"]),
    ("DB_USER", ["postgresql", "username"]),
    ("DB_PASSWORD", ["postgresql", "password"]),
    ("DB_PASSWORD_FILE", ["postgresql", "passwordFile"]),
    ("REDIS_PASSWORD", ["redis", "password"]),
    ("REDIS_PASSWORD_FILE", ["redis", "passwordFile"]),
];

/// One layer per variable, so each value's origin names its variable. An empty variable is
/// treated as unset. `CARACAL_X` without `__` that names no top-level key is ignored: Kubernetes
/// injects `CARACAL_<SERVICE>_PORT`-style variables for services named `caracal-*`.
pub(crate) fn layers(
    env: &BTreeMap<String, String>,
    root: &Json,
) -> Result<Vec<Layer>, ConfigError> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in env {
        if value.is_empty() || name == CONFIG_VAR {
            continue;
        }
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let origin = Origin::Env(name.clone());
        let Some(path) = map_path(rest, root, &origin)? else {
            continue;
        };
        let key = join_path(&path);
        if let Some(other) = seen.insert(key.clone(), name.clone()) {
            return Err(ConfigError::Invalid {
                key,
                message: format!("set by both {other} and {name}; keep one"),
                origin: None,
            });
        }
        let value = env_value(value, &path, root, &origin)?;
        out.push(Layer::new(Tier::Env, origin, nest(&path, value)));
    }
    for (name, [section, key]) in SEED_VARS {
        if let Some(value) = env.get(*name).filter(|v| !v.is_empty()) {
            let path = [section.to_string(), key.to_string()];
            let origin = Origin::Env((*name).to_owned());
            out.push(Layer::new(
                Tier::SeedEnv,
                origin,
                nest(&path, Value::from(value.clone())),
            ));
        }
    }
    Ok(out)
}

/// Maps `GATEWAY__CONFIG__MAX_CONCURRENT_REQUESTS` to `gateway.config.maxConcurrentRequests`.
/// `None`: a single segment that names no top-level key (ignored, see [`layers`]).
fn map_path(rest: &str, root: &Json, origin: &Origin) -> Result<Option<Vec<String>>, ConfigError> {
    let segments: Vec<&str> = rest.split("__").collect();
    let mut path: Vec<String> = Vec::new();
    let mut at = root;
    for segment in &segments {
        let found = match schema::node(at) {
            Node::Section(section) => schema::match_key(section, segment).map(|k| (k, &section[k])),
            _ => None,
        };
        match found {
            Some((key, child)) => {
                path.push(key.to_owned());
                at = child;
            }
            None if segments.len() == 1 => return Ok(None),
            None if matches!(schema::node(at), Node::Table(_)) => {
                return Err(ConfigError::Invalid {
                    key: join_path(&path),
                    message: format!(
                        "list items cannot be set one by one; set {PREFIX}{} to the whole list",
                        segments[..path.len()].join("__")
                    ),
                    origin: Some(origin.clone()),
                })
            }
            None => {
                path.push(segment.to_ascii_lowercase());
                return Err(ConfigError::UnknownKey {
                    key: join_path(&path),
                    origin: origin.clone(),
                    hint: String::new(),
                });
            }
        }
    }
    if path.len() == 1 && matches!(schema::node(at), Node::Section(_)) {
        // `CARACAL_GATEWAY` alone: a whole section is never set from one variable.
        return Ok(None);
    }
    if path.first().map(String::as_str) == Some(AUDIT_ALIAS) {
        path.splice(0..1, ["consumers".to_owned(), "auditLogger".to_owned()]);
    }
    Ok(Some(path))
}

/// The value of a variable for the key at `path`: scalars stay text (the figment extraction
/// reads numbers and booleans from text, so passwords survive verbatim); lists are
/// comma-separated or `[a, b]`; lists of mappings use figment's `[{key=value, ...}]` syntax.
fn env_value(
    raw: &str,
    path: &[String],
    root: &Json,
    origin: &Origin,
) -> Result<Value, ConfigError> {
    let schema = path.iter().try_fold(root, |at, key| at.get(key));
    match schema.map(schema::node) {
        Some(Node::Table(template)) => {
            let Ok(parsed) = raw.parse::<Value>();
            let Value::Array(_, items) = &parsed else {
                return Err(ConfigError::Invalid {
                    key: join_path(path),
                    message: "expected a list like [{key=\"value\", ...}]".to_owned(),
                    origin: Some(origin.clone()),
                });
            };
            for (i, item) in items.iter().enumerate() {
                let mut at: Vec<String> = path.to_vec();
                at.push(i.to_string());
                schema::check_keys(item, template, &mut at, origin)?;
            }
            Ok(parsed)
        }
        Some(Node::List) if raw.trim_start().starts_with('[') => {
            let Ok(parsed) = raw.parse::<Value>();
            Ok(parsed)
        }
        Some(Node::List) => Ok(Value::from(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::from(s.to_owned()))
                .collect::<Vec<_>>(),
        )),
        _ => Ok(Value::from(raw.to_owned())),
    }
}

/// `["a", "b"]` + value → `{a: {b: value}}`.
pub(crate) fn nest(path: &[String], value: Value) -> Dict {
    let mut value = value;
    for key in path.iter().rev() {
        let mut dict = Dict::new();
        dict.insert(key.clone(), value);
        value = Value::from(dict);
    }
    match value {
        Value::Dict(_, dict) => dict,
        _ => Dict::new(),
    }
}
