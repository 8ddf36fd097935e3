//! The key schema: every key the config accepts, taken from the serialized defaults, so it can
//! never drift from the types. Owns unknown-key detection and key-name matching; decides no values.

use figment::value::Value;
use serde_json::{Map, Value as Json};

use super::error::{join_path, ConfigError, Origin};
use super::gateway::Route;
use super::services::McpServer;
use super::Config;

/// The top-level alias of `consumers.auditLogger` (the seeds' production guide writes it there).
pub(crate) const AUDIT_ALIAS: &str = "auditLogger";

/// Keys of the Helm chart's values that are deployment settings, not application config.
const CHART_ONLY: &[&str] = &[
    "replicaCount",
    "resources",
    "autoscaling",
    "persistence",
    "secretName",
    "signingKeySecretName",
    "auth",
    "type",
    "enabled",
    "affinity",
    "nodeSelector",
    "tolerations",
    "image",
    "imagePullSecrets",
    "global",
];

/// What a schema node is.
pub(crate) enum Node<'a> {
    /// A mapping of known keys.
    Section(&'a Map<String, Json>),
    /// A list of mappings; the element is the template of one item.
    Table(&'a Json),
    /// A list of scalars.
    List,
    /// One value.
    Scalar,
}

pub(crate) fn node(schema: &Json) -> Node<'_> {
    match schema {
        Json::Object(map) => Node::Section(map),
        Json::Array(items) => match items.first() {
            Some(first @ Json::Object(_)) => Node::Table(first),
            _ => Node::List,
        },
        _ => Node::Scalar,
    }
}

/// Builds the schema: the defaults serialized, with one template item in each list of mappings
/// and the top-level `auditLogger` alias.
pub(crate) fn build() -> Result<Json, ConfigError> {
    let internal = |e: serde_json::Error| ConfigError::invalid("", format!("internal: {e}"));
    let mut root = serde_json::to_value(Config::default()).map_err(internal)?;
    let route = serde_json::to_value(Route::template()).map_err(internal)?;
    let server = serde_json::to_value(McpServer::template()).map_err(internal)?;
    if let Some(routes) = root.pointer_mut("/gateway/routes") {
        *routes = Json::Array(vec![route]);
    }
    if let Some(servers) = root.pointer_mut("/mcpAdapter/servers") {
        *servers = Json::Array(vec![server]);
    }
    let audit = root.pointer("/consumers/auditLogger").cloned();
    if let (Json::Object(top), Some(audit)) = (&mut root, audit) {
        top.insert(AUDIT_ALIAS.to_owned(), audit);
    }
    Ok(root)
}

/// A key reduced for env matching: lower case, without `_` and `-`.
pub(crate) fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The known key of `section` that `segment` names, ignoring case and underscores.
pub(crate) fn match_key<'a>(section: &'a Map<String, Json>, segment: &str) -> Option<&'a str> {
    let wanted = normalize(segment);
    section
        .keys()
        .find(|k| normalize(k) == wanted)
        .map(String::as_str)
}

/// Rejects every key of `value` that `schema` does not know, naming its full path.
pub(crate) fn check_keys(
    value: &Value,
    schema: &Json,
    path: &mut Vec<String>,
    origin: &Origin,
) -> Result<(), ConfigError> {
    match (value, node(schema)) {
        (Value::Dict(_, dict), Node::Section(section)) => {
            for (key, child) in dict {
                let Some(child_schema) = section.get(key) else {
                    path.push(key.clone());
                    return Err(ConfigError::UnknownKey {
                        key: join_path(path),
                        origin: origin.clone(),
                        hint: hint(key, section),
                    });
                };
                path.push(key.clone());
                check_keys(child, child_schema, path, origin)?;
                path.pop();
            }
            Ok(())
        }
        (Value::Array(_, items), Node::Table(template)) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                check_keys(item, template, path, origin)?;
                path.pop();
            }
            Ok(())
        }
        // A type mismatch is reported by deserialization, with the expected type.
        _ => Ok(()),
    }
}

fn hint(key: &str, section: &Map<String, Json>) -> String {
    if let Some(known) = match_key(section, key) {
        format!(" (did you mean \"{known}\"?)")
    } else if CHART_ONLY.contains(&key) {
        " (a Helm chart value, not application config)".to_owned()
    } else {
        String::new()
    }
}
